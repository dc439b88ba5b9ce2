"""Masked-LM pre-training: run_mlm's blocks, BERT's masking drawn from (seed, epoch, row),
fixed validation masks, whole-word masking, perplexity over masked tokens, and the `mlm` recipe
end to end with the tiny BERT of conftest (finetune -> evaluate -> predict == pipeline("fill-mask")
-> a sentiment run that starts from the saved model)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from conftest import FILLER, NEGATIVE, POSITIVE, WORDS, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one torch thread (conftest)

BLOCK = 16  # --max-length: the block size
FAST = ["--epochs", "4", "--batch-size", "8", "--learning-rate", "3e-3", "--max-length", str(BLOCK), "--quiet"]
# Words the whole-word tokenizer below splits into two pieces each.
SPLIT_WORDS = {"superbly": ["superb", "##ly"], "boringness": ["boring", "##ness"], "dullness": ["dull", "##ness"], "films": ["film", "##s"]}


def make_document(rng: random.Random) -> str:
    """1-3 short lines of fixture words: some documents longer than a block, most shorter."""
    vocab = FILLER + POSITIVE + NEGATIVE
    return "\n".join(" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 12))) for _ in range(rng.randint(1, 3)))


@pytest.fixture(scope="module")
def text_files(tmp_path_factory) -> dict[str, Path]:
    """Each split as JSONL {"text"} and as a .txt of blank-line-separated documents (the same documents)."""
    root = tmp_path_factory.mktemp("mlm-text")
    rng = random.Random(7)
    files = {}
    for split, n in (("train", 80), ("validation", 12), ("test", 12)):
        docs = [make_document(rng) for _ in range(n)]
        files[split] = write_jsonl(root / f"{split}.jsonl", [{"text": d} for d in docs])
        (root / f"{split}.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
        files[f"{split}_txt"] = root / f"{split}.txt"
    return files


@pytest.fixture(scope="module")
def bert_tokenizer(tiny_models):
    from ftkit.tasks import mlm

    return mlm.load_processor(str(tiny_models["bert"]))


@pytest.fixture(scope="module")
def wwm_tokenizer():
    """conftest's BERT vocabulary plus word pieces, so that a few words are split in two."""
    from transformers import BertTokenizer

    pieces = sorted({p for split in SPLIT_WORDS.values() for p in split})
    vocab = dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *pieces])
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})
    assert all(tokenizer.tokenize(w) == p for w, p in SPLIT_WORDS.items()), "the fixture words must split"
    return tokenizer


def mlm_config(block: int = BLOCK, **train):
    from ftkit.config import RunConfig, TrainConfig

    return RunConfig(name="mlm", task="masked-lm", model="tiny", train=TrainConfig(max_length=block, **train))


def split_of(docs: list[str], source: str = "docs"):
    from ftkit.data import Split

    return Split({"text": docs}, list(range(1, len(docs) + 1)), source)


def documents(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ================================================================ blocks


def test_blocks_are_max_length_and_cover_the_stream(bert_tokenizer):
    """Documents with [CLS] ... [SEP], concatenated, cut every BLOCK tokens; only the last
    partial block is dropped (a stream shorter than a block is kept whole)."""
    from ftkit.tasks import mlm

    rng = random.Random(1)
    docs = [make_document(rng) for _ in range(20)]
    prepared = mlm.prepare({"train": split_of(docs + ["  "])}, mlm_config(), bert_tokenizer)
    blocks = prepared.features["train"]["input_ids"].tolist()
    stream = [t for d in docs for t in bert_tokenizer(d)["input_ids"]]
    assert stream.count(bert_tokenizer.cls_token_id) == len(docs) == stream.count(bert_tokenizer.sep_token_id)
    assert all(len(b) == BLOCK for b in blocks)
    assert len(blocks) == len(stream) // BLOCK and len(stream) % BLOCK, "the fixture leaves a partial block to drop"
    assert [t for b in blocks for t in b] == stream[: len(blocks) * BLOCK]
    assert prepared.notes == ["docs: skipped 1 empty document(s)"]

    short = mlm.prepare({"train": split_of(["the film"])}, mlm_config(), bert_tokenizer)
    assert short.features["train"]["input_ids"].tolist() == [bert_tokenizer("the film")["input_ids"]]

    # the collator pads a short block: pad id, attention 0, labels -100
    batch = mlm.collator(bert_tokenizer, 8)([short.features["train"][0], prepared.features["train"][0]])
    n = len(short.features["train"]["input_ids"][0])
    assert batch["input_ids"].shape == (2, BLOCK)
    assert batch["input_ids"][0, n:].tolist() == [bert_tokenizer.pad_token_id] * (BLOCK - n)
    assert batch["attention_mask"].tolist() == [[1] * n + [0] * (BLOCK - n), [1] * BLOCK]
    assert batch["labels"][0, n:].tolist() == [-100] * (BLOCK - n)


# ================================================================ masking


def draw_all(features) -> list[dict]:
    return [features[i] for i in range(len(features))]


def test_masking_rate_and_bert_rule(bert_tokenizer):
    """~15% of non-special tokens chosen, no special one; of those ~80% [MASK], ~10% random,
    ~10% kept; labels hold the original id where chosen, -100 elsewhere."""
    from ftkit.tasks import mlm

    rng = random.Random(2)
    docs = [make_document(rng) for _ in range(1000)]
    features = mlm.prepare({"train": split_of(docs)}, mlm_config(32), bert_tokenizer).features["train"]
    chosen = candidates = as_mask = as_original = 0
    for row, drawn in enumerate(draw_all(features)):
        original, special = features["input_ids"][row], features["special"][row]
        for token, masked, label, is_special in zip(original, drawn["input_ids"], drawn["labels"], special):
            if is_special:
                assert label == -100 and masked == token, "a special token is never masked"
                continue
            candidates += 1
            if label == -100:
                assert masked == token, "a token not chosen is left as it is"
                continue
            chosen += 1
            assert label == token
            as_mask += masked == bert_tokenizer.mask_token_id
            as_original += masked == token
    assert candidates > 10_000
    assert 0.14 < chosen / candidates < 0.16
    assert 0.77 < as_mask / chosen < 0.83
    # kept: the 10% left alone, plus the random draws that hit the same token (1 in ~100 here)
    assert 0.08 < as_original / chosen < 0.125


def test_masks_follow_seed_epoch_and_row(bert_tokenizer):
    """The same (seed, epoch, row) draws the same masks (a resumed run sees what an uninterrupted
    one would), another epoch or seed draws others."""
    from ftkit.tasks import mlm

    rng = random.Random(3)
    docs = [make_document(rng) for _ in range(60)]
    first = mlm.prepare({"train": split_of(docs)}, mlm_config(), bert_tokenizer).features["train"]
    again = mlm.prepare({"train": split_of(docs)}, mlm_config(), bert_tokenizer).features["train"]
    epoch0 = draw_all(first)
    assert draw_all(first) == epoch0 == draw_all(again)
    first.start_epoch(1)
    epoch1 = draw_all(first)
    assert epoch1 != epoch0 and sum(a != b for a, b in zip(epoch0, epoch1)) > len(epoch0) // 2
    again.start_epoch(1)
    assert draw_all(again) == epoch1
    first.start_epoch(0)
    assert draw_all(first) == epoch0
    assert first.select([3, 1])[0] != epoch0[3], "a row's masks follow its position in the loader's features"
    other = mlm.prepare({"train": split_of(docs)}, mlm_config(seed=7), bert_tokenizer).features["train"]
    assert draw_all(other) != epoch0


def test_validation_masks_are_drawn_once_and_repeat(bert_tokenizer):
    """Validation and test blocks are masked at prepare time: the same masks every evaluation and
    every run with the same data and seed (before/after perplexity compares alike)."""
    from ftkit.tasks import mlm

    rng = random.Random(4)
    docs = [make_document(rng) for _ in range(40)]
    splits = {"train": split_of(docs[:20]), "validation": split_of(docs[20:])}
    one = mlm.prepare(splits, mlm_config(), bert_tokenizer).features["validation"]
    two = mlm.prepare(splits, mlm_config(), bert_tokenizer).features["validation"]
    assert one[:] == two[:]
    assert set(one.column_names) == {"input_ids", "labels"}
    assert all(any(label != -100 for label in row) for row in one["labels"]), "every block has a masked token to score"
    assert bert_tokenizer.mask_token_id in {t for row in one["input_ids"] for t in row}
    assert mlm.prepare(splits, mlm_config(seed=1), bert_tokenizer).features["validation"]["labels"] != one["labels"]


def test_whole_word_masking_masks_every_piece_of_a_word(wwm_tokenizer):
    """With whole_word_mask, a chosen word's sub-tokens are all chosen (within a block), and
    words, not tokens, are chosen at the rate."""
    from ftkit.tasks import mlm

    rng = random.Random(5)
    vocab = FILLER + list(SPLIT_WORDS)
    docs = [" ".join(rng.choice(vocab) for _ in range(rng.randint(4, 14))) for _ in range(400)]
    features = mlm.prepare({"train": split_of(docs)}, mlm_config(32, whole_word_mask=True), wwm_tokenizer).features["train"]
    words = chosen_words = split_chosen = 0
    for row, drawn in enumerate(draw_all(features)):
        by_word: dict[int, set[bool]] = {}
        for word, label in zip(features["word"][row], drawn["labels"]):
            if word >= 0:
                by_word.setdefault(word, set()).add(label != -100)
        for word, states in by_word.items():
            assert len(states) == 1, f"row {row}: word {word} was partly masked"
        pieces = [sum(1 for w in features["word"][row] if w == word) for word in by_word]
        words += len(by_word)
        chosen_words += sum(states == {True} for states in by_word.values())
        split_chosen += sum(states == {True} and n > 1 for states, n in zip(by_word.values(), pieces))
    assert split_chosen > 50, "words of two pieces were masked whole"
    assert 0.13 < chosen_words / words < 0.17


# ================================================================ perplexity


def test_perplexity_is_exp_of_mean_masked_loss(tiny_models, bert_tokenizer):
    """exp(total masked-token loss / masked tokens), with the loss transformers' model computes,
    over an uneven last batch; the loss is not a mean of batch means."""
    import torch
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from transformers import AutoModelForMaskedLM

    from ftkit.tasks import mlm
    from ftkit.train import run_evaluation

    rng = random.Random(6)
    docs = [make_document(rng) for _ in range(30)]
    prepared = mlm.prepare({"train": split_of(docs[:5]), "test": split_of(docs)}, mlm_config(), bert_tokenizer)
    rows = prepared.features["test"]
    assert len(rows) % 4
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_pretrained(tiny_models["bert"]).eval()
    total = masked = 0
    with torch.inference_mode():
        for ids, labels in zip(rows["input_ids"], rows["labels"]):
            n = sum(label != -100 for label in labels)
            total += float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss) * n
            masked += n
    accelerator = Accelerator(cpu=True)
    loader = DataLoader(rows, batch_size=4, collate_fn=mlm.collator(bert_tokenizer, None))
    model, loader = accelerator.prepare(model, loader)
    result = run_evaluation(model, loader, accelerator, mlm, prepared, "test")
    assert result["masked_tokens"] == masked and result["samples"] == len(rows)
    assert result["loss"] == pytest.approx(total / masked, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(total / masked), rel=1e-5)


# ================================================================ config checks


@pytest.mark.parametrize("setting, key", [
    (["--set", "mlm_probability=0"], "train.mlm_probability"),
    (["--set", "mlm_probability=1"], "train.mlm_probability"),
    (["--set", "mlm_probability=1.5"], "train.mlm_probability"),
    (["--set", "data.labels=[a,b]"], "data.labels"),
    (["--set", "data.text_pair_column=other"], "data.text_pair_column"),
    (["--set", "class_weights=balanced"], "train.class_weights"),
])
def test_config_keys_that_do_not_apply_are_refused(tiny_models, text_files, cli, tmp_path, setting, key):
    code, _, err = cli("finetune", "mlm", "--model", tiny_models["bert"], "--train", text_files["train"], "-o", tmp_path / "run", *setting)
    assert code == 2, err
    assert key in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


# ================================================================ the recipe end to end


def finetune(*args) -> None:
    """Fine-tune through the real entry point for a module fixture (no capsys there)."""
    from conftest import call

    code = call(["finetune", "mlm", *args])
    assert code == 0, f"finetune mlm {args} exited {code}"


@pytest.fixture(scope="module")
def mlm_runs(tiny_models, text_files, tmp_path_factory) -> dict[str, Path]:
    """'jsonl' and 'txt' (--format text, whole-word masking): the same documents."""
    root = tmp_path_factory.mktemp("mlm-runs")
    f = text_files
    finetune("--model", tiny_models["bert"], "--train", f["train"], "--validation", f["validation"], "--test", f["test"],
             "--output-dir", root / "jsonl", *FAST)
    finetune("--model", tiny_models["bert"], "--train", f["train_txt"], "--validation", f["validation_txt"], "--test", f["test_txt"],
             "--format", "text", "--output-dir", root / "txt", *FAST, "--set", "whole_word_mask=true")
    return {"jsonl": root / "jsonl", "txt": root / "txt"}


@pytest.mark.parametrize("form", ["jsonl", "txt"])
def test_run_folder_metrics_and_card(mlm_runs, text_files, bert_tokenizer, form):
    """A *ForMaskedLM model, perplexity on validation and test that fell below the untrained
    model's on the same masks, and a card that says what the model does."""
    run = mlm_runs[form]
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"]
    metrics = json.loads((run / "metrics.json").read_text())
    stream = sum(len(bert_tokenizer(d)["input_ids"]) for d in documents(text_files["test"]))
    for split in ("validation", "test"):
        assert metrics[split]["perplexity"] == pytest.approx(math.exp(metrics[split]["loss"]))
        assert metrics[split]["masked_tokens"] > 0
    assert metrics["test"]["samples"] == stream // BLOCK
    assert metrics["validation"]["perplexity"] < before(run, text_files, form) / 2, "training should lower perplexity (to about the words' unigram spread)"
    card = (run / "model" / "README.md").read_text(encoding="utf-8")
    assert "pipeline_tag: fill-mask" in card and "Fills in masked words" in card
    assert "The film was [MASK]." in card and "perplexity" in card


def before(run: Path, text_files: dict[str, Path], form: str) -> float:
    """The validation perplexity of the untrained model, on the masks the run scored."""
    import torch
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from transformers import AutoModelForMaskedLM

    from ftkit.recipes import load_config
    from ftkit.tasks import mlm
    from ftkit.train import run_evaluation

    config, _ = load_config(str(run / "config.yaml"))
    tokenizer = mlm.load_processor(config.model)
    split = split_of(documents(text_files["validation"]))
    prepared = mlm.prepare({"train": split, "validation": split}, config, tokenizer)
    torch.manual_seed(config.train.seed)
    model = AutoModelForMaskedLM.from_pretrained(config.model).eval()
    loader = DataLoader(prepared.features["validation"], batch_size=8, collate_fn=mlm.collator(tokenizer, None))
    accelerator = Accelerator(cpu=True)
    model, loader = accelerator.prepare(model, loader)
    return run_evaluation(model, loader, accelerator, mlm, prepared, "validation")["perplexity"]


def test_evaluate_scores_the_masks_the_run_scored(mlm_runs, text_files, cli, tmp_path):
    """`ftkit evaluate RUN` masks with the run's seed: the validation file scores as in metrics.json."""
    out = tmp_path / "eval.json"
    code, _, err = cli("evaluate", mlm_runs["jsonl"], "--data", text_files["validation"], "--output", out)
    assert code == 0, err
    expected = json.loads((mlm_runs["jsonl"] / "metrics.json").read_text())["validation"]
    result = json.loads(out.read_text())
    assert result["masked_tokens"] == expected["masked_tokens"]
    assert result["perplexity"] == pytest.approx(expected["perplexity"], rel=1e-5)


def test_a_stopped_run_resumes_to_the_uninterrupted_metrics(mlm_runs, tiny_models, text_files, cli, tmp_path, monkeypatch):
    """Ctrl-C mid-epoch, then --resume: the masks of the epoch's remaining batches follow from
    (seed, epoch, row), so the run ends with the uninterrupted one's metrics and weights."""
    import signal

    from safetensors.torch import load_file

    from ftkit.tasks import mlm
    from ftkit.tasks.family import Loss

    whole = mlm_runs["jsonl"]
    steps = json.loads((whole / "metrics.json").read_text())["train"]["steps"]
    stop_at = steps // 2 + 1  # past the second epoch's checkpoint, before the third's end
    model_loss = mlm.training_loss

    def stopping(prepared, config):
        loss, calls = model_loss(prepared, config), []

        def compute(forward, batch):
            calls.append(1)
            if len(calls) == stop_at:
                signal.raise_signal(signal.SIGINT)  # as Ctrl-C during this step
            return loss.compute(forward, batch)

        return Loss(compute)

    f, out = text_files, tmp_path / "run"
    args = ["finetune", "mlm", "--model", tiny_models["bert"], "--train", f["train"], "--validation", f["validation"], "--test", f["test"],
            "--output-dir", out, *FAST]
    with monkeypatch.context() as patch:
        patch.setattr(mlm, "training_loss", stopping)
        code, _, err = cli(*args)
    assert code == 130 and f"at step {stop_at}" in err, err
    code, _, err = cli(*args, "--resume")
    assert code == 0, err
    timing = {"runtime_s", "samples_per_second", "eval_runtime_s"}
    strip = lambda m: {**m, "train": {k: v for k, v in m["train"].items() if k not in timing}}  # noqa: E731
    assert strip(json.loads((out / "metrics.json").read_text())) == strip(json.loads((whole / "metrics.json").read_text()))
    resumed, uninterrupted = (load_file(str(r / "model" / "model.safetensors")) for r in (out, whole))
    assert all(bool((resumed[k] == uninterrupted[k]).all()) for k in uninterrupted)


TEXTS = ["the film was [MASK] .", "a <mask> plot and a dull cast", "the [MASK] was [MASK] and moving", "it"]


def test_predict_matches_the_fill_mask_pipeline(mlm_runs, cli, tmp_path):
    """[MASK] and <mask> read as the mask token; tokens, scores and sequences as pipeline()'s,
    its default 5 guesses (several masks: a list per mask)."""
    from transformers import pipeline

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS[:3]) + "\n", encoding="utf-8")
    code, out, err = cli("predict", mlm_runs["jsonl"], texts, "--batch-size", "2")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == TEXTS[:3]
    filler = pipeline("fill-mask", model=str(mlm_runs["jsonl"] / "model"))
    for record in records:
        expected = filler(record["text"].replace("<mask>", "[MASK]"))
        got = record["predictions"]
        assert len(got) == len(expected)
        pairs = zip(got, expected) if isinstance(got[0], dict) else ((g, e) for gs, es in zip(got, expected) for g, e in zip(gs, es))
        for mine, theirs in pairs:
            assert mine["token"] == theirs["token_str"] and mine["sequence"] == theirs["sequence"]
            assert mine["score"] == pytest.approx(theirs["score"], rel=1e-4, abs=1e-6)
    assert len(records[0]["predictions"]) == 5 and len(records[2]["predictions"]) == 2

    code, out, err = cli("predict", mlm_runs["jsonl"], "--text", TEXTS[0], "--top-k", "3")
    assert code == 0, err
    assert [p["token"] for p in json.loads(out)["predictions"]] == [p["token_str"] for p in filler(TEXTS[0], top_k=3)]


def test_model_card_usage_runs(mlm_runs, capsys):
    model_dir = mlm_runs["jsonl"] / "model"
    card = (model_dir / "README.md").read_text(encoding="utf-8")
    code = card.split("## Use", 1)[1].split("```python\n", 1)[1].split("```", 1)[0].replace("path/to/this/folder", str(model_dir))
    assert 'pipeline("fill-mask"' in code
    capsys.readouterr()
    exec(compile(code, "README.md", "exec"), {})
    assert "'sequence': 'the film was " in capsys.readouterr().out


def test_the_saved_model_starts_a_classification_run(mlm_runs, tiny_models, cli, tmp_path):
    """The chain of the issue: `ftkit finetune sentiment --model RUN/model`."""
    from conftest import make_sentence

    rng = random.Random(8)
    rows = [{"text": make_sentence(rng, label), "label": label} for label in ["positive", "negative"] * 20]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    code, _, err = cli("finetune", "sentiment", "--model", mlm_runs["jsonl"] / "model", "--train", train,
                       "--max-steps", "2", "--batch-size", "8", "-o", tmp_path / "cls", "--quiet")
    assert code == 0, err
    config = json.loads((tmp_path / "cls" / "model" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert "accuracy" in json.loads((tmp_path / "cls" / "metrics.json").read_text())["validation"]


# ================================================================ bad inputs


def test_predict_refuses_a_text_without_a_mask(mlm_runs, cli):
    code, out, err = cli("predict", mlm_runs["jsonl"], "--text", TEXTS[3])
    assert code == 2 and not out
    assert "no mask token" in err and "[MASK]" in err and len(err.strip().splitlines()) == 1, err


def test_no_text_is_refused(tiny_models, cli, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": " "}, {"text": ""}])
    code, _, err = cli("finetune", "mlm", "--model", tiny_models["bert"], "--train", train, "-o", tmp_path / "run")
    assert code == 2 and "no text" in err and len(err.strip().splitlines()) == 1, err


def test_a_model_without_a_mask_token_is_refused(tiny_models, text_files, cli, tmp_path):
    """GPT-2 (no masked-LM head, no mask token), and a BERT whose tokenizer has no mask token."""
    from transformers import BertModel, BertTokenizer

    code, _, err = cli("finetune", "mlm", "--model", tiny_models["gpt2"], "--train", text_files["train"], "-o", tmp_path / "gpt2")
    assert code == 2 and "masked language modelling" in err and len(err.strip().splitlines()) == 1, err

    folder = tmp_path / "no-mask"
    BertModel.from_pretrained(tiny_models["bert"]).save_pretrained(folder)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS]
    BertTokenizer(vocab={t: i for i, t in enumerate(dict.fromkeys(vocab))}, mask_token=None).save_pretrained(folder)
    code, _, err = cli("finetune", "mlm", "--model", folder, "--train", text_files["train"], "-o", tmp_path / "run")
    assert code == 2 and "no mask token" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
