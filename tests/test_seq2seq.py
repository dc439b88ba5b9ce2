"""Sequence to sequence (summarization, translation): ROUGE/BLEU against the libraries, and the
`summarization` and `translation` recipes end to end through the real entry point (finetune ->
predict -> evaluate) with tiny T5, BART and Marian checkpoints whose tokenizers are built here,
every translation data form, and the errors a user meets first.

transformers 5 removed the summarization/translation pipelines: the saved model/ is checked
with AutoModelForSeq2SeqLM + AutoTokenizer and generate(), which must give exactly the text
`ftkit predict` printed. A `real` test trains a tiny T5 on real en->de pairs.
"""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import pytest
import yaml

from conftest import FILLER, NEGATIVE, POSITIVE, SHARED, write_jsonl

pytestmark = [
    pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses"),  # Marian's tokenizer
    pytest.mark.usefixtures("one_torch_thread"),  # tiny models: one torch thread (conftest)
]

VOCAB = sorted(set(FILLER + POSITIVE + NEGATIVE))  # one piece each in conftest's T5 tokenizer
# The fixture pairs use ten of them: few enough that a tiny model learns to copy a little.
WORDS = "the film plot cast was great dull moving poor story".split()
SIZES = {"train": 160, "validation": 10, "test": 21}  # test: two evaluation batches of 16, the last uneven
EPOCHS = 10
EVAL_CAP = 4  # train.eval_max_samples: validation rows generated during training
# A few epochs at a high learning rate; short generation keeps evaluation quick.
FAST = [
    "--epochs", str(EPOCHS), "--batch-size", "8", "--learning-rate", "1e-2", "--max-length", "64", "--quiet",
    "--set", "generation.max_new_tokens=12", "--set", f"train.eval_max_samples={EVAL_CAP}",
]
ONE_STEP = ["--max-steps", "1", "--batch-size", "8", "--max-length", "64", "--quiet", "--set", "generation.max_new_tokens=4"]
LANGS = ["--source-lang", "en", "--target-lang", "de"]
INPUTS = [  # very different lengths: predict sorts by length, and must write in input order
    "the plot was very dull and the acting was clumsy. this movie is quite tedious with the cast. it is poor",
    "a film",
    "the story was moving and truly charming. great cast",
    "it",
]


def sentence(rng: random.Random, words: list[str] = WORDS) -> str:
    return " ".join(rng.sample(words, rng.randint(3, 4)))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def error_line(code: int, err: str) -> str:
    """The one `error:` line of an exit-2 failure."""
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, dict[str, Path | str]]:
    """Per data form, per split: summaries ("summary = the first sentence") and translations
    ("German" = the English words reversed) as {"translation": {...}} rows, two language
    columns, and line-aligned .txt pairs ('SRC:TGT')."""
    root = tmp_path_factory.mktemp("seq2seq-data")
    rng = random.Random(0)
    out: dict[str, dict] = {"summary": {}, "rows": {}, "columns": {}, "aligned": {}}
    for split, n in SIZES.items():
        summaries, pairs = [], []
        for _ in range(n):
            sentences = [sentence(rng) for _ in range(rng.randint(2, 3))]
            summaries.append({"document": ". ".join(sentences) + ".", "summary": sentences[0] + "."})
            en = sentence(rng)
            pairs.append({"en": en, "de": " ".join(reversed(en.split()))})
        out["summary"][split] = write_jsonl(root / f"summary-{split}.jsonl", summaries)
        out["rows"][split] = write_jsonl(root / f"rows-{split}.jsonl", [{"translation": p} for p in pairs])
        out["columns"][split] = write_jsonl(root / f"columns-{split}.jsonl", pairs)
        for lang in ("en", "de"):
            (root / f"{split}.{lang}.txt").write_text("".join(p[lang] + "\n" for p in pairs), encoding="utf-8")
        out["aligned"][split] = f"{root / f'{split}.en.txt'}:{root / f'{split}.de.txt'}"
    return out


def data_args(split_files: dict) -> list:
    return ["--train", split_files["train"], "--validation", split_files["validation"], "--test", split_files["test"]]


# ================================================================ tiny BART and Marian


def fixture_sentences(n: int = 400) -> list[str]:
    rng = random.Random(11)  # the wider vocabulary: the words of INPUTS are whole tokens too
    return [sentence(rng, VOCAB) for _ in range(n)]


@pytest.fixture(scope="module")
def bart_model(tmp_path_factory) -> Path:
    """A tiny BART with a byte-level BPE trained here (BART's scheme: <s> ... </s>, tiny vocab)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import BartConfig, BartForConditionalGeneration, BartTokenizer

    root = tmp_path_factory.mktemp("bart")
    bpe = ByteLevelBPETokenizer()
    texts = fixture_sentences()
    # with and without a leading space, so a text's first word is one token too
    bpe.train_from_iterator(texts + [" " + t for t in texts], vocab_size=400, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(root))
    tokenizer = BartTokenizer(vocab=str(root / "vocab.json"), merges=str(root / "merges.txt"))
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=tokenizer.eos_token_id,
    )
    folder = root / "model"
    BartForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def marian_model(tmp_path_factory) -> Path:
    """A tiny Marian with a SentencePiece model trained here (source = target model, one vocab.json)."""
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    root = tmp_path_factory.mktemp("marian")
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(fixture_sentences()), model_writer=proto, vocab_size=80, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    for name in ("source.spm", "target.spm"):
        (root / name).write_bytes(proto.getvalue())
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    (root / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = MarianTokenizer(str(root / "source.spm"), str(root / "target.spm"), str(root / "vocab.json"))
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=len(vocab), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id, forced_eos_token_id=tokenizer.eos_token_id,
    )
    folder = root / "model"
    MarianMTModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ================================================================ metrics against the libraries


ROUGE_CASES = {
    "one line": (
        ["the cats were sitting on the mat", "a quick brown fox", "nothing in common"],
        ["the cat sat on the mat", "the quick brown fox jumps", "completely different words here"],
    ),
    # Lsum splits at newlines: the sentences match, in another order than one long LCS allows
    "sentences": (
        ["the film was moving.\nthe cast was superb.", "a dull plot.\nthe acting was poor."],
        ["the cast was superb.\nthe film was moving.", "the acting was poor and clumsy.\na dull plot."],
    ),
}


@pytest.mark.parametrize("case", list(ROUGE_CASES))
def test_rouge_equals_rouge_score(case):
    from rouge_score import rouge_scorer

    from ftkit.metrics import rouge

    predictions, references = ROUGE_CASES[case]
    keys = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(keys, use_stemmer=True)
    scores = [scorer.score(r, p) for p, r in zip(predictions, references)]
    expected = {k: sum(s[k].fmeasure for s in scores) / len(scores) for k in keys}
    assert rouge(predictions, references) == pytest.approx(expected, abs=1e-12)
    if case == "sentences":
        assert expected["rougeLsum"] > expected["rougeL"] + 0.1  # the case shows what Lsum is for
    else:
        assert expected["rougeLsum"] == pytest.approx(expected["rougeL"])
        assert expected["rouge1"] > expected["rouge2"] > 0  # stemming: cats/cat, sitting/sat differ only partly


def test_bleu_equals_sacrebleu():
    import sacrebleu

    from ftkit.metrics import bleu

    predictions = ["Die Katze sitzt auf der Matte.", "Datei nicht gefunden", "Ein ganz anderer Satz hier"]
    references = ["Die Katze saß auf der Matte.", "Datei nicht gefunden", "Keine Übereinstimmung"]
    result = bleu(predictions, references)
    assert result == {
        "bleu": pytest.approx(sacrebleu.corpus_bleu(predictions, [references]).score, abs=1e-9),
        "chrf": pytest.approx(sacrebleu.corpus_chrf(predictions, [references]).score, abs=1e-9),
    }
    assert 0 < result["bleu"] < 100 and 0 < result["chrf"] < 100  # 0-100 scale, as sacreBLEU reports
    assert bleu(references, references) == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}


# ================================================================ preparing examples


def test_prepare_tokenizes_targets_and_skips_empty_rows(tiny_models):
    from ftkit.config import DataConfig, RunConfig
    from ftkit.data import Split
    from ftkit.models import load_tokenizer
    from ftkit.tasks import seq2seq

    tokenizer = load_tokenizer(str(tiny_models["t5"]))
    config = RunConfig(name="s", task="seq2seq", model="t5", data=DataConfig(target_column="summary", prefix="summarize: "))
    split = Split({"text": ["the film was great", "a plot", " "], "target": ["great film", "", "the cast"]}, [1, 2, 3], "f.jsonl")
    prepared = seq2seq.prepare({"test": split}, config, tokenizer)
    assert prepared.notes == ["f.jsonl: skipped 2 row(s) with an empty source or target"]
    assert prepared.extra.texts == {"test": ["great film"]}
    row = prepared.features["test"][0]
    assert row["input_ids"] == tokenizer("summarize: the film was great")["input_ids"]
    assert row["labels"] == tokenizer(text_target="great film")["input_ids"]
    assert row["labels"][-1] == tokenizer.eos_token_id and row["example_id"] == 0

    long = Split({"text": ["the film was great and moving", "a"], "target": ["the cast", "a very dull plot"]}, [1, 2], "g")
    features = seq2seq.prepare({"test": long}, config, tokenizer).features["test"]
    batch = seq2seq.collator(tokenizer, None)([features[0], features[1]])
    labels = [tokenizer(text_target=t)["input_ids"] for t in ("the cast", "a very dull plot")]
    width = max(map(len, labels))
    assert batch["labels"].tolist() == [l + [-100] * (width - len(l)) for l in labels]  # padded with -100, not pad ids
    assert batch["example_id"].tolist() == [0, 1] and "decoder_input_ids" not in batch


def test_targets_end_with_eos_even_when_the_tokenizer_adds_none(tiny_models):
    """GPT-2's tokenizer appends no EOS: ftkit adds it, within max_target_length."""
    from ftkit.config import DataConfig, RunConfig, TrainConfig
    from ftkit.data import Split
    from ftkit.models import load_tokenizer
    from ftkit.tasks import seq2seq

    tokenizer = load_tokenizer(str(tiny_models["gpt2"]))
    plain = tokenizer(text_target="the film was great")["input_ids"]
    assert plain[-1] != tokenizer.eos_token_id
    config = RunConfig(name="s", task="seq2seq", model="gpt2", data=DataConfig(target_column="summary"), train=TrainConfig(max_target_length=3))
    split = Split({"text": ["a plot", "the cast"], "target": ["the film was great", "dull"]}, [1, 2], "f.jsonl")
    labels = seq2seq.prepare({"test": split}, config, tokenizer).features["test"]["labels"]
    short = tokenizer(text_target="dull")["input_ids"]
    assert labels == [plain[:2] + [tokenizer.eos_token_id], short + [tokenizer.eos_token_id]]


# ================================================================ the recipes end to end


def finetune(recipe: str, *args) -> None:
    """Fine-tune through the real entry point for a module fixture (no capsys there)."""
    from ftkit.cli import main

    try:
        main(["finetune", recipe, *map(str, args)])
    except SystemExit as exit_:
        assert exit_.code in (0, None), f"finetune {recipe} {args} exited {exit_.code}"


# run name -> (recipe, model fixture, data form, extra flags)
RUNS = {
    "t5-summary": ("summarization", "t5", "summary", []),
    "bart-summary": ("summarization", "bart", "summary", ["--set", "data.prefix=''"]),  # BART needs no prefix
    "t5-translation": ("translation", "t5", "rows", LANGS),
    "marian-translation": ("translation", "marian", "aligned", LANGS),
}
SUMMARY_KEYS = {"rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len", "lengths", "loss", "samples"}
TRANSLATION_KEYS = {"bleu", "chrf", "gen_len", "lengths", "loss", "samples"}


@pytest.fixture(scope="module")
def models(tiny_models, bart_model, marian_model) -> dict[str, Path]:
    return {"t5": tiny_models["t5"], "bart": bart_model, "marian": marian_model}


@pytest.fixture(scope="module")
def runs(models, files, tmp_path_factory) -> dict[str, Path]:
    """One fine-tuned run folder per RUNS entry, shared by the tests."""
    root = tmp_path_factory.mktemp("seq2seq-runs")
    for name, (recipe, model, form, extra) in RUNS.items():
        finetune(recipe, "--model", models[model], *data_args(files[form]), "--output-dir", root / name, *FAST, *extra)
    return {name: root / name for name in RUNS}


def sources_and_targets(files: dict, name: str, split: str) -> tuple[list[str], list[str]]:
    form = RUNS[name][2]
    if form == "summary":
        rows = read_jsonl(files["summary"][split])
        return [r["document"] for r in rows], [r["summary"] for r in rows]
    rows = read_jsonl(files["rows"][split])
    return [r["translation"]["en"] for r in rows], [r["translation"]["de"] for r in rows]


def generate(model_dir: Path, texts: list[str], prefix: str = "", **overrides) -> list[list[int]]:
    """The saved model/ as a user loads it: AutoModelForSeq2SeqLM + AutoTokenizer, one text at a time."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    out = []
    with torch.inference_mode():
        for text in texts:
            out.append(model.generate(**tokenizer(prefix + text, return_tensors="pt"), **overrides)[0].tolist())
    return out


def decode(model_dir: Path, ids: list[list[int]]) -> list[str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def new_tokens(model_dir: Path, ids: list[int]) -> int:
    """Generated tokens that are not special (decoder start, EOS, padding)."""
    from transformers import AutoTokenizer

    special = set(AutoTokenizer.from_pretrained(model_dir).all_special_ids)
    return sum(1 for t in ids if t not in special)


@pytest.mark.parametrize("name", list(RUNS))
def test_output_folder_contract(runs, files, name):
    recipe, _, form, _ = RUNS[name]
    run = runs[name]
    for file in ("config.json", "model.safetensors", "generation_config.json", "tokenizer_config.json", "README.md"):
        assert (run / "model" / file).is_file(), file
    assert not (run / "model.tmp").exists()

    metrics = json.loads((run / "metrics.json").read_text())
    keys = SUMMARY_KEYS if recipe == "summarization" else TRANSLATION_KEYS
    assert set(metrics) == {"train", "validation", "test"}
    assert keys <= set(metrics["validation"]) and set(metrics["test"]) == keys
    assert metrics["test"]["samples"] == SIZES["test"], "every test row is scored once"
    assert metrics["validation"]["samples"] == EVAL_CAP, "train.eval_max_samples caps validation during training"
    assert metrics["train"]["samples"] == EPOCHS * SIZES["train"]  # every row once per epoch
    for split in ("validation", "test"):
        assert 0 < metrics[split]["gen_len"] <= 12  # generation.max_new_tokens
        assert all(0 <= metrics[split][k] <= (1 if recipe == "summarization" else 100) for k in keys - {"gen_len", "lengths", "loss", "samples"})
    vocab_size = json.loads((run / "model" / "config.json").read_text())["vocab_size"]
    assert metrics["test"]["loss"] < 0.6 * math.log(vocab_size), "the tiny model should learn the fixture a little"
    evals = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["type"] == "eval"]
    assert [r["samples"] for r in evals] == [EVAL_CAP] * (len(evals) - 1) + [SIZES["test"]] and evals[-1]["split"] == "test"

    # lengths: every example once, references counted in target tokens (specials left out)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    _, references = sources_and_targets(files, name, "test")
    lengths = metrics["test"]["lengths"]
    assert lengths["unit"] == "tokens" and sum(c for _, c in lengths["generated"]) == SIZES["test"]
    expected = sorted(len(tokenizer(text_target=r, add_special_tokens=False)["input_ids"]) for r in references)
    assert [length for length, count in lengths["reference"] for _ in range(count)] == expected
    mean = sum(length * count for length, count in lengths["generated"]) / SIZES["test"]
    assert mean == pytest.approx(metrics["test"]["gen_len"])
    assert {"loss.png", "metric.png", "lengths.png"} <= {p.name for p in (run / "plots").glob("*.png")}

    generation = json.loads((run / "model" / "generation_config.json").read_text())
    assert (generation["num_beams"], generation["max_new_tokens"]) == (4, 12)  # the recipe's beams, our --set
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    if recipe == "summarization":
        assert (resolved["data"]["text_column"], resolved["data"]["target_column"]) == ("document", "summary")
        assert resolved["data"]["prefix"] == ("summarize: " if name.startswith("t5") else "")
    else:
        assert (resolved["data"]["source_lang"], resolved["data"]["target_lang"]) == ("en", "de")
    card = (run / "model" / "README.md").read_text()
    assert f"pipeline_tag: {recipe}" in card


def card_snippet(model_dir: Path) -> str:
    """The Python block under '## Use' in the model card, pointed at this folder."""
    card = (model_dir / "README.md").read_text(encoding="utf-8")
    code = card.split("## Use", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    return code.replace("path/to/this/folder", str(model_dir))


@pytest.mark.parametrize("name", list(RUNS))
def test_model_card_usage_runs(runs, capsys, name):
    """The card's snippet works with transformers 5 (no summarization/translation pipeline) and
    prints what generate() gives for the example with the run's prefix."""
    model_dir = runs[name] / "model"
    code = card_snippet(model_dir)
    assert "pipeline(" not in code
    capsys.readouterr()
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip()
    prefix = "summarize: " if name == "t5-summary" else ""
    assert prefix + "Some text." in code
    assert printed == decode(model_dir, generate(model_dir, ["Some text."], prefix))[0]


@pytest.mark.parametrize("name", list(RUNS))
def test_loss_is_the_mean_over_target_tokens(runs, files, name):
    """metrics.json's test loss = total target-token loss / target tokens, by hand with transformers' loss."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    run = runs[name]
    prefix = yaml.safe_load((run / "config.yaml").read_text())["data"]["prefix"]
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    model = AutoModelForSeq2SeqLM.from_pretrained(run / "model").eval()
    total = tokens = 0
    with torch.inference_mode():
        for source, target in zip(*sources_and_targets(files, name, "test")):
            labels = tokenizer(text_target=target, return_tensors="pt")["input_ids"]
            loss = model(**tokenizer(prefix + source, return_tensors="pt"), labels=labels).loss
            total, tokens = total + float(loss) * labels.shape[1], tokens + labels.shape[1]
    assert json.loads((run / "metrics.json").read_text())["test"]["loss"] == pytest.approx(total / tokens, rel=1e-5)


@pytest.mark.parametrize("name", list(RUNS))
def test_saved_model_generates_what_predict_printed(runs, cli, tmp_path, name):
    """`predict` on inputs of very different lengths: input order kept, and each text exactly
    what generate() with the saved generation_config gives for it alone."""
    recipe = RUNS[name][0]
    key = {"summarization": "summary_text", "translation": "translation_text"}[recipe]
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("\n".join(INPUTS) + "\n\n", encoding="utf-8")  # blank lines are skipped
    code, out, err = cli("predict", runs[name], inputs, "--batch-size", "3")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [set(r) for r in records] == [{"text", key}] * len(INPUTS)
    assert [r["text"] for r in records] == INPUTS

    prefix = "summarize: " if name == "t5-summary" else ""
    model_dir = runs[name] / "model"
    assert [r[key] for r in records] == decode(model_dir, generate(model_dir, INPUTS, prefix))


def test_predict_generation_flags(runs, cli, tmp_path):
    run, model_dir = runs["t5-summary"], runs["t5-summary"] / "model"
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("\n".join(INPUTS) + "\n", encoding="utf-8")

    def predict(*flags: str) -> list[str]:
        code, out, err = cli("predict", run, inputs, *flags)
        assert code == 0, err
        return [json.loads(line)["summary_text"] for line in out.splitlines()]

    default = generate(model_dir, INPUTS, "summarize: ")
    short = generate(model_dir, INPUTS, "summarize: ", max_new_tokens=2)
    assert max(new_tokens(model_dir, ids) for ids in default) > 2, "the saved setting generates more than 2 tokens"
    assert all(len(ids) <= 1 + 2 for ids in short)  # the decoder start token, then at most 2
    assert predict("--max-new-tokens", "2") == decode(model_dir, short)
    assert predict("--num-beams", "1") == decode(model_dir, generate(model_dir, INPUTS, "summarize: ", num_beams=1))

    sampled = predict("--temperature", "0.9", "--seed", "3")
    assert predict("--temperature", "0.9", "--seed", "3") == sampled
    assert predict("--temperature", "5.0", "--top-p", "1.0", "--seed", "4") != predict("--num-beams", "1"), "sampling changes the output"


@pytest.mark.parametrize("name", list(RUNS))
def test_evaluate_equals_the_test_metrics(runs, files, cli, tmp_path, name):
    """`ftkit evaluate RUN --data TEST` (in the form the run trained on, aligned 'SRC:TGT' pairs
    included) reproduces metrics.json's test numbers."""
    data = files[RUNS[name][2]]["test"]
    out = tmp_path / "eval.json"
    code, _, err = cli("evaluate", runs[name], "--data", data, "--output", out)
    assert code == 0, err
    expected = json.loads((runs[name] / "metrics.json").read_text())["test"]
    result = json.loads(out.read_text())
    assert set(result) == set(expected) and result["samples"] == SIZES["test"]
    assert result.pop("lengths") == expected.pop("lengths")  # the same generations, token for token
    assert result == pytest.approx(expected, rel=1e-5, abs=1e-9)


# ================================================================ translation data forms and errors


def test_predict_reads_every_translation_form(runs, files, cli, tmp_path):
    """predict takes the source language from {"translation"} rows, from its column, or lines of a .txt."""
    outputs = {}
    for form, path in (("rows", files["rows"]["test"]), ("columns", files["columns"]["test"]), ("txt", files["aligned"]["test"].split(":")[0])):
        code, out, err = cli("predict", runs["t5-translation"], path)
        assert code == 0, f"{form}: {err}"
        outputs[form] = [json.loads(line) for line in out.splitlines()]
    sources = [r["translation"]["en"] for r in read_jsonl(files["rows"]["test"])]
    assert [r["text"] for r in outputs["rows"]] == sources
    assert outputs["rows"] == outputs["columns"] == outputs["txt"]



def test_every_translation_form_trains_the_same(models, files, cli, tmp_path):
    """{"translation"} rows, two language columns and aligned .txt pairs of the same pairs give
    the same examples: after one seeded step, the very same test loss and generations."""
    results = {}
    for form in ("rows", "columns", "aligned"):
        code, _, err = cli("finetune", "translation", "--model", models["t5"], *data_args(files[form]), *LANGS, "--output-dir", tmp_path / form, *ONE_STEP)
        assert code == 0, f"{form}: {err}"
        results[form] = json.loads((tmp_path / form / "metrics.json").read_text())
        assert results[form]["test"]["samples"] == SIZES["test"] and results[form]["validation"]["samples"] == SIZES["validation"]
        assert results[form]["train"]["steps"] == 1
    for split in ("validation", "test"):
        assert results["columns"][split] == results["rows"][split] == results["aligned"][split]


def test_aligned_files_with_different_line_counts_are_refused(tiny_models, files, cli, tmp_path):
    source, target = files["aligned"]["train"].split(":")
    short = tmp_path / "short.de.txt"
    lines = Path(target).read_text(encoding="utf-8").splitlines()
    short.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    code, _, err = cli("finetune", "translation", "--model", tiny_models["t5"], "--train", f"{source}:{short}", *LANGS, "--output-dir", tmp_path / "run")
    line = error_line(code, err)
    assert source in line and str(short) in line
    assert f"has {SIZES['train']} lines" in line and f"has {SIZES['train'] - 1}" in line
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.parametrize("form", ["rows", "columns"])
def test_missing_language_is_refused_with_the_languages_present(tiny_models, files, cli, tmp_path, form):
    code, _, err = cli(
        "finetune", "translation", "--model", tiny_models["t5"], "--train", files[form]["train"],
        "--source-lang", "en", "--target-lang", "fr", "--output-dir", tmp_path / "run",
    )
    line = error_line(code, err)
    assert "no 'fr' text" in line and "Languages present: en, de." in line and "--target-lang" in line, line


def test_wrong_model_family_is_refused(tiny_models, files, cli, tmp_path):
    code, _, err = cli("finetune", "summarization", "--model", tiny_models["bert"], *data_args(files["summary"]), "--output-dir", tmp_path / "run")
    line = error_line(code, err)
    assert "sequence to sequence" in line and "'bert'" in line
    assert not (tmp_path / "run" / "model").exists()


# ================================================================ real learning


REAL_DATA = SHARED / "translation-en-de"
REAL_TOKENIZER = SHARED / "tokenizers" / "gpt2"


def short_pairs(path: Path, tokenizer, n: int) -> list[dict]:
    """The first n pairs with at most 6 English words and 24 German tokens: learnable in minutes."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            en, de = row["translation"]["en"], row["translation"]["de"]
            if len(en.split()) <= 6 and len(tokenizer(de)["input_ids"]) <= 24:
                rows.append(row)
                if len(rows) == n:
                    break
    return rows


@pytest.mark.real
def test_tiny_t5_learns_to_translate_en_de(cli, tmp_path):
    """A tiny random T5 with GPT-2's real tokenizer, fine-tuned on real en->de pairs (gettext
    messages) for two epochs (250 steps), must clearly beat the same untrained model on test BLEU, both
    scored through the CLI on the same rows. About 3 minutes on two CPU cores."""
    import shutil

    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    if not (REAL_DATA / "train.jsonl").is_file() or not (REAL_TOKENIZER / "vocab.json").is_file():
        pytest.skip(f"{REAL_DATA} or {REAL_TOKENIZER} not present")
    # GPT-2 has no pad token and adds no EOS: the targets need an EOS for the model to learn to
    # stop; padding is masked (inputs) or -100 (labels), so EOS can pad too.
    tokenizer = AutoTokenizer.from_pretrained(REAL_TOKENIZER, add_eos_token=True)
    tokenizer.pad_token = tokenizer.eos_token
    files = {}
    for split, n in (("train", 4000), ("validation", 64), ("test", 200)):
        files[split] = write_jsonl(tmp_path / f"{split}.jsonl", short_pairs(REAL_DATA / f"{split}.jsonl", tokenizer, n))

    untrained = tmp_path / "untrained"
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    config = T5Config(
        vocab_size=len(tokenizer), d_model=128, d_kv=32, d_ff=512, num_layers=2, num_heads=4,
        pad_token_id=eos, eos_token_id=eos, decoder_start_token_id=eos,
    )
    T5ForConditionalGeneration(config).save_pretrained(untrained / "model")
    tokenizer.save_pretrained(untrained / "model")

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # this model is big enough for two threads to pay (the module runs on one)
    try:
        run = tmp_path / "run"
        code, out, err = cli(
            "finetune", "translation", "--model", untrained / "model", *data_args(files), *LANGS,
            "--epochs", "2", "--batch-size", "32", "--learning-rate", "5e-3", "--max-length", "48",
            "--set", "train.warmup_ratio=0.05", "--set", "generation.num_beams=1", "--set", "generation.max_new_tokens=32",
            "--output-dir", run, "--quiet",
        )
        assert code == 0, out + err
        # The untrained model as a run folder: the run's config (languages) and decoding settings.
        shutil.copy(run / "config.yaml", untrained / "config.yaml")
        shutil.copy(run / "model" / "generation_config.json", untrained / "model" / "generation_config.json")
        baseline_file = tmp_path / "untrained.json"
        code, out, err = cli("evaluate", untrained, "--data", files["test"], "--output", baseline_file)
        assert code == 0, out + err
    finally:
        torch.set_num_threads(threads)

    tuned = json.loads((run / "metrics.json").read_text())["test"]
    baseline = json.loads(baseline_file.read_text())
    print(f"\ntest BLEU: fine-tuned {tuned['bleu']:.2f} (chrF {tuned['chrf']:.2f}), untrained {baseline['bleu']:.2f} (chrF {baseline['chrf']:.2f})")
    assert tuned["samples"] == baseline["samples"] == 200
    assert tuned["bleu"] >= 2.0 and tuned["bleu"] >= baseline["bleu"] + 2.0
    assert tuned["chrf"] > baseline["chrf"] + 4.0 and tuned["loss"] < baseline["loss"] - 3.0
