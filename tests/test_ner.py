"""Token classification (NER): word/sub-token alignment, word-level metrics over windows, and
the `ner` recipe end to end through the real entry point (finetune -> predict -> evaluate),
with every data format it reads and the errors a user meets first."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import yaml

from conftest import NER_FILLER, make_ner_sentence, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one torch thread (conftest)

# The fixture data is learnable in a few seconds with these settings (tiny models, high LR).
FAST = ["--epochs", "8", "--batch-size", "16", "--learning-rate", "3e-3", "--quiet"]
# Enough to check that data is read and scored: one optimizer step, then evaluation.
ONE_STEP = ["--max-steps", "1", "--batch-size", "16", "--quiet"]
NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]  # a tag set for the unit tests


def data_args(files: dict[str, Path]) -> list[str]:
    return ["--train", files["train"], "--validation", files["validation"], "--test", files["test"]]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def entity_counts(tag_rows: list[list[str]]) -> dict[str, int]:
    """Gold entities per type, as seqeval counts them."""
    from seqeval.metrics.sequence_labeling import get_entities

    counts: dict[str, int] = {}
    for tags in tag_rows:
        for kind, _, _ in get_entities(tags):
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def finetune(*args) -> None:
    """Fine-tune through the real entry point for a module fixture (no capsys there)."""
    from ftkit.cli import main

    try:
        main(["finetune", "ner", *map(str, args)])
    except SystemExit as exit_:
        assert exit_.code in (0, None), f"finetune {args} exited {exit_.code}"


def one_line_error(code: int, err: str, expected_code: int = 2) -> str:
    assert code == expected_code, err
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def recipe_labels() -> list[str]:
    from ftkit.recipes import get_recipe

    return get_recipe("ner").config.data.labels


# ================================================================ alignment: tokens.encode


@pytest.fixture(scope="module")
def bert_tokenizer(tiny_models):
    from ftkit.models import load_tokenizer

    return load_tokenizer(str(tiny_models["bert"]), prefix_space=True)


def test_first_sub_token_carries_the_tag(bert_tokenizer):
    from ftkit.tasks.tokens import encode

    words = [["Bob's", "met", "New", "York.", "today!"]]
    tags = [[1, 0, 3, 4, 0]]  # B-PER O B-LOC I-LOC O
    enc = encode(bert_tokenizer, words, tags, [7], 64, 4, False, NAMES)
    assert bert_tokenizer.convert_ids_to_tokens(enc["input_ids"][0]) == [
        "[CLS]", "bob", "'", "s", "met", "new", "york", ".", "today", "!", "[SEP]"
    ]
    assert enc["labels"] == [[-100, 1, -100, -100, 0, 3, 4, -100, 0, -100, -100]]
    assert enc["word_index"] == [[-100, 0, -100, -100, 1, 2, 3, -100, 4, -100, -100]]
    assert enc["example_id"] == [7]
    assert enc["attention_mask"] == [[1] * 11] and len(enc["token_type_ids"][0]) == 11


def test_label_all_tokens_continues_with_i_tags(bert_tokenizer):
    from ftkit.tasks.tokens import encode

    words = [["Bob's", "met", "New", "York.", "today!"]]
    enc = encode(bert_tokenizer, words, [[1, 0, 3, 4, 0]], [0], 64, 4, True, NAMES)
    # B-PER's pieces become I-PER (2), I-LOC's stay I-LOC (4), O's stay O; specials stay -100
    assert enc["labels"] == [[-100, 1, 2, 2, 0, 3, 4, 4, 0, 0, -100]]
    # predictions are still read at first sub-tokens only
    assert enc["word_index"] == [[-100, 0, -100, -100, 1, 2, 3, -100, 4, -100, -100]]


def test_windows_overlap_and_every_word_starts_in_one(bert_tokenizer):
    from ftkit.tasks.tokens import encode

    words = ["Alice", "met", "Carol", "Smith's", "friend", "in", "New", "York", "with", "Bob's", "team", "today"]
    tags = [1, 0, 1, 2, 0, 0, 3, 4, 0, 1, 0, 0]
    max_length, stride = 8, 2
    enc = encode(bert_tokenizer, [words], [tags], [0], max_length, stride, False, NAMES)
    full = bert_tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    first_ids = {w: full["input_ids"][full.word_ids().index(w)] for w in range(len(words))}

    windows = enc["input_ids"]
    assert len(windows) > 2 and all(len(ids) <= max_length for ids in windows)
    assert enc["example_id"] == [0] * len(windows)
    content = [ids[1:-1] for ids in windows]  # without [CLS] / [SEP]
    for left, right in zip(content, content[1:]):
        assert left[-stride:] == right[:stride]  # neighbours share `stride` tokens
    assert [t for ids in [content[0]] + [c[stride:] for c in content[1:]] for t in ids] == full["input_ids"]

    starts: dict[int, int] = {}
    for ids, labels, word_index in zip(windows, enc["labels"], enc["word_index"]):
        for position, w in enumerate(word_index):
            if w < 0:
                assert labels[position] == -100
                continue
            assert ids[position] == first_ids[w], "a word is read at its first sub-token only"
            assert labels[position] == tags[w]
            starts[w] = starts.get(w, 0) + 1
    assert sorted(starts) == list(range(len(words)))
    # A window may open inside a word ("Smith's" -> smith ' s): its pieces there are not a start.
    assert any(bert_tokenizer.convert_ids_to_tokens(ids[1]) in ("'", "s") for ids in windows[1:])
    assert max(starts.values()) == 2  # words in an overlap are read twice


def test_gpt2_tokenizer_reads_words_with_a_prefix_space(tiny_models):
    from ftkit.models import load_tokenizer
    from ftkit.tasks.tokens import encode

    plain = load_tokenizer(str(tiny_models["gpt2"]))
    assert plain.add_prefix_space is False
    tokenizer = load_tokenizer(str(tiny_models["gpt2"]), prefix_space=True)
    assert tokenizer.add_prefix_space is True
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    words = [["Alice", "met", "Bob's"]]
    assert tokenizer(words[0], is_split_into_words=True).tokens() == ["ĠAlice", "Ġmet", "ĠBob", "'", "s"]
    enc = encode(tokenizer, words, [[1, 0, 1]], [0], 64, 4, False, NAMES)
    assert enc["labels"] == [[1, 0, 1, -100, -100]]  # no special tokens in GPT-2
    assert enc["word_index"] == [[0, 1, 2, -100, -100]]


# ================================================================ metrics over windows


def logits_for(tag: str, confidence: float, names: list[str] = NAMES) -> list[float]:
    """Scores whose softmax gives `confidence` to `tag` and shares the rest equally."""
    rest = (1 - confidence) / (len(names) - 1)
    return [math.log(confidence) if n == tag else math.log(rest) for n in names]


def gathered(windows: list[tuple[int, list]], gold: list[list[str]], names: list[str] = NAMES) -> dict:
    """Tensors as the evaluation loop gathers them: one row per window, padded with -100.
    Each window is (example id, tokens); a token is None (special) or (word or -1 for a
    continuation piece, predicted tag, confidence)."""
    import torch

    width = max(len(tokens) for _, tokens in windows)
    logits, labels, word_index = [], [], []
    for example, tokens in windows:
        row_logits, row_labels, row_words = [], [], []
        for token in tokens:
            word, tag, confidence = token if token is not None else (-1, "O", 0.5)
            row_logits.append(logits_for(tag, confidence, names))
            row_labels.append(names.index(gold[example][word]) if word >= 0 else -100)
            row_words.append(word if word >= 0 else -100)
        pad = width - len(tokens)
        logits.append(row_logits + [[-100.0] * len(names)] * pad)
        labels.append(row_labels + [-100] * pad)
        word_index.append(row_words + [-100] * pad)
    return {
        "logits": torch.tensor(logits),
        "labels": torch.tensor(labels),
        "word_index": torch.tensor(word_index),
        "example_id": torch.tensor([example for example, _ in windows]),
    }


GOLD = [
    ["B-PER", "O", "B-LOC", "I-LOC"],  # "Bob's met New York": Bob's is three sub-tokens
    ["B-PER", "O", "B-LOC", "O"],  # "Alice visited Paris today": read in two overlapping windows
    ["B-PER", "I-PER", "O", "B-PER"],  # "Carol Smith met Bob": the only window stops before Bob
]
WINDOWS = [
    (0, [None, (0, "B-PER", 0.9), (-1, "B-LOC", 0.99), (-1, "I-LOC", 0.99), (1, "O", 0.8), (2, "B-LOC", 0.7), (3, "I-LOC", 0.7), None]),
    # example 1, second window first: word 1 is right in the first window (0.9 > 0.5),
    # word 2 in the second (0.9 > 0.6): neither "first window wins" nor "last wins" gets both.
    (1, [None, (1, "B-PER", 0.5), (2, "B-LOC", 0.9), (3, "O", 0.8), None]),
    (1, [None, (0, "B-PER", 0.8), (1, "O", 0.9), (2, "O", 0.6), None]),
    (2, [None, (0, "B-PER", 0.9), (1, "I-PER", 0.9), (2, "O", 0.9), None]),
]
EXPECTED = [
    ["B-PER", "O", "B-LOC", "I-LOC"],  # the pieces' B-LOC/I-LOC are ignored
    ["B-PER", "O", "B-LOC", "O"],  # the more confident window wins, word by word
    ["B-PER", "I-PER", "O", "O"],  # Bob was never scored: 'O', a missed entity
]


def test_word_level_metrics_equal_seqeval():
    import torch
    import torch.nn.functional as F
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    from ftkit.tasks.family import Prepared
    from ftkit.tasks.tokens import Gold, compute_metrics

    prepared = Prepared(features={}, names=NAMES, extra=Gold({"test": GOLD}))
    tensors = gathered(WINDOWS, GOLD)
    result = compute_metrics(tensors, prepared, "test")

    assert result["precision"] == pytest.approx(precision_score(GOLD, EXPECTED)) == pytest.approx(1.0)
    assert result["recall"] == pytest.approx(recall_score(GOLD, EXPECTED)) == pytest.approx(5 / 6)
    assert result["f1"] == pytest.approx(f1_score(GOLD, EXPECTED)) == pytest.approx(10 / 11)
    assert result["accuracy"] == pytest.approx(accuracy_score(GOLD, EXPECTED)) == pytest.approx(11 / 12)
    assert result["per_type"]["PER"] == {"precision": 1.0, "recall": pytest.approx(3 / 4), "f1": pytest.approx(6 / 7), "support": 4}
    assert result["per_type"]["LOC"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert result["words_unscored"] == 1
    assert result["samples"] == 3 and result["entities"] == 6

    mask = tensors["labels"] != -100
    assert mask.sum() == 4 + 3 + 3 + 3  # one label per word read in each window
    expected_loss = F.cross_entropy(tensors["logits"][mask], tensors["labels"][mask])
    assert result["loss"] == pytest.approx(float(expected_loss))
    # the order windows arrive in does not matter
    shuffled = gathered([WINDOWS[i] for i in (3, 2, 0, 1)], GOLD)
    assert compute_metrics(shuffled, prepared, "test")["f1"] == result["f1"]
    assert torch.equal(tensors["example_id"], torch.tensor([0, 1, 1, 2]))


def test_word_predictions_keep_the_most_confident_window():
    from ftkit.tasks.tokens import word_predictions

    tensors = gathered(WINDOWS, GOLD)
    best = word_predictions(tensors["logits"], tensors["word_index"], tensors["example_id"])
    assert {key: NAMES[tag] for key, (_, tag) in best.items()} == {
        (0, 0): "B-PER", (0, 1): "O", (0, 2): "B-LOC", (0, 3): "I-LOC",
        (1, 0): "B-PER", (1, 1): "O", (1, 2): "B-LOC", (1, 3): "O",
        (2, 0): "B-PER", (2, 1): "I-PER", (2, 2): "O",
    }
    assert best[(1, 1)][0] == pytest.approx(0.9) and best[(1, 2)][0] == pytest.approx(0.9)


# An I- that opens an entity: conlleval matching accepts it, strict IOB2 does not.
MODE_GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O", "O"]]
MODE_PRED = [["I-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O", "I-LOC"]]


def test_strict_mode_equals_seqeval_strict_iob2():
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    from ftkit import metrics

    default = metrics.entities(MODE_GOLD, MODE_PRED)
    strict = metrics.entities(MODE_GOLD, MODE_PRED, "strict")
    for name, score in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        assert default[name] == pytest.approx(score(MODE_GOLD, MODE_PRED))
        assert strict[name] == pytest.approx(score(MODE_GOLD, MODE_PRED, mode="strict", scheme=IOB2))
    assert (default["precision"], default["recall"]) == (pytest.approx(3 / 4), 1.0)
    assert (strict["precision"], strict["recall"]) == (1.0, pytest.approx(2 / 3))
    assert default["per_type"]["PER"]["f1"] == 1.0 and strict["per_type"]["PER"]["f1"] == 0.0


def test_compute_metrics_honours_the_mode():
    from ftkit import metrics
    from ftkit.tasks.family import Prepared
    from ftkit.tasks.tokens import Gold, compute_metrics

    names = NAMES + ["B-ORG", "I-ORG"]
    windows = [(example, [None, *[(w, tag, 0.9) for w, tag in enumerate(tags)], None]) for example, tags in enumerate(MODE_PRED)]
    tensors = gathered(windows, MODE_GOLD, names)
    scores = {}
    for mode in ("default", "strict"):
        result = compute_metrics(tensors, Prepared(features={}, names=names, extra=Gold({"test": MODE_GOLD}, mode)), "test")
        assert result["f1"] == pytest.approx(metrics.entities(MODE_GOLD, MODE_PRED, mode)["f1"])
        scores[mode] = result["f1"]
    assert scores == {"default": pytest.approx(6 / 7), "strict": pytest.approx(0.8)}


# ================================================================ end to end: bert, gpt2, t5


@pytest.fixture(scope="module")
def ner_runs(tiny_models, ner_files, tmp_path_factory) -> dict[str, Path]:
    """One fine-tuned `ner` run folder per architecture, shared by the tests below."""
    out = {}
    for arch, model in tiny_models.items():
        out[arch] = tmp_path_factory.mktemp("ner-runs") / arch
        finetune("--model", model, *data_args(ner_files), "--output-dir", out[arch], *FAST)
    return out


@pytest.mark.parametrize("arch", ["bert", "gpt2", "t5"])
def test_output_folder_contract(ner_runs, ner_files, arch):
    run = ner_runs[arch]
    model = run / "model"
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "README.md"):
        assert (model / name).is_file(), name
    assert not [*run.glob("*.tmp"), *run.glob("*.ftkit-tmp")] and not (run / "model.tmp").exists()
    config = json.loads((model / "config.json").read_text())
    labels = recipe_labels()  # the fixture's types are all in the recipe's list: its order is kept
    assert config["id2label"] == {str(i): name for i, name in enumerate(labels)}
    assert config["label2id"] == {name: i for i, name in enumerate(labels)}
    assert config["architectures"][0].endswith("ForTokenClassification")

    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"train", "validation", "test"}
    assert metrics["train"]["steps"] == 8 * math.ceil(240 / 16)
    for split in ("validation", "test"):
        gold = [r["ner_tags"] for r in read_jsonl(ner_files[split])]
        counts = entity_counts(gold)
        section = metrics[split]
        assert {"precision", "recall", "f1", "accuracy", "loss", "per_type"} <= set(section)
        assert section["samples"] == len(gold) and section["entities"] == sum(counts.values())
        assert {kind: v["support"] for kind, v in section["per_type"].items()} == counts
        assert set(section["per_type"]["PER"]) == {"precision", "recall", "f1", "support"}
        assert section["words_unscored"] == 0
    assert metrics["test"]["f1"] >= 0.9, "the tiny model should learn the fixture entities"
    assert {"loss.png", "metric.png", "entity_f1.png"} <= {p.name for p in (run / "plots").glob("*.png")}
    assert "](plots/entity_f1.png)" in (model / "README.md").read_text() and (model / "plots" / "entity_f1.png").is_file()

    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["task"] == "token-classification"
    assert (resolved["data"]["text_column"], resolved["data"]["label_column"]) == ("tokens", "ner_tags")
    evals = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines() if '"eval"' in l]
    assert [e["split"] for e in evals] == ["validation"] * 8 + ["test"] and all("f1" in e for e in evals)
    front = yaml.safe_load((model / "README.md").read_text().split("---")[1])
    assert front["pipeline_tag"] == "token-classification"


# Entities are followed by filler words, as in the fixture sentences.
RAW = [
    ("Alice met Carol Smith in New York today", [("PER", "Alice"), ("PER", "Carol Smith"), ("LOC", "New York")]),
    ("Bob visited Globex with David yesterday", [("PER", "Bob"), ("ORG", "Globex"), ("PER", "David")]),
    ("the Initech works went to Tokyo from Berlin at a", [("ORG", "Initech"), ("LOC", "Tokyo"), ("LOC", "Berlin")]),
]


@pytest.mark.parametrize("arch", ["bert", "gpt2", "t5"])
def test_pipeline_loads_the_model_and_finds_the_entities(ner_runs, arch):
    import warnings

    from transformers import pipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Tokenizer does not support real words" (GPT-2, T5)
        ner = pipeline("token-classification", model=str(ner_runs[arch] / "model"), aggregation_strategy="first")
        found = ner([text for text, _ in RAW])
    for (text, expected), entities in zip(RAW, found):
        assert [(e["entity_group"], text[e["start"] : e["end"]].strip()) for e in entities] == expected


@pytest.mark.parametrize("arch", ["bert", "gpt2", "t5"])
def test_predict_raw_text_gives_entities_with_offsets(ner_runs, cli, tmp_path, arch):
    raw = tmp_path / "raw.txt"
    raw.write_text("\n".join(text for text, _ in RAW) + "\n\n")
    code, out, err = cli("predict", ner_runs[arch], raw)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == [text for text, _ in RAW]  # blank line skipped, order kept
    for record, (text, expected) in zip(records, RAW):
        assert set(record) == {"text", "entities"}
        assert [(e["entity_group"], e["word"]) for e in record["entities"]] == expected
        for entity in record["entities"]:
            assert set(entity) == {"entity_group", "word", "start", "end", "score"}
            assert text[entity["start"] : entity["end"]] == entity["word"]
            assert isinstance(entity["score"], float) and 0 < entity["score"] <= 1


@pytest.mark.parametrize("arch", ["bert", "gpt2", "t5"])
def test_predict_pre_tokenized_reproduces_test_f1(ner_runs, ner_files, cli, tmp_path, arch):
    from seqeval.metrics import accuracy_score, f1_score

    out_file = tmp_path / "tags.jsonl"
    code, _, err = cli("predict", ner_runs[arch], ner_files["test"], "--output", out_file, "--batch-size", "7")
    assert code == 0, err
    rows = read_jsonl(ner_files["test"])
    preds = read_jsonl(out_file)
    assert [p["tokens"] for p in preds] == [r["tokens"] for r in rows]  # one per input, in order
    assert all(set(p) == {"tokens", "tags"} and len(p["tags"]) == len(p["tokens"]) for p in preds)
    gold, tags = [r["ner_tags"] for r in rows], [p["tags"] for p in preds]
    test = json.loads((ner_runs[arch] / "metrics.json").read_text())["test"]
    assert f1_score(gold, tags) == pytest.approx(test["f1"])
    assert accuracy_score(gold, tags) == pytest.approx(test["accuracy"])


@pytest.mark.parametrize("arch", ["bert", "gpt2", "t5"])
def test_evaluate_equals_training_metrics(ner_runs, ner_files, cli, tmp_path, arch):
    out_file = tmp_path / "m.json"
    code, out, err = cli("evaluate", ner_runs[arch], "--data", ner_files["test"], "--output", out_file)
    assert code == 0, err
    assert "f1" in out and "PER f1" in out
    result = json.loads(out_file.read_text())
    trained = json.loads((ner_runs[arch] / "metrics.json").read_text())["test"]
    for key in ("precision", "recall", "f1", "accuracy", "loss", "samples", "entities", "words_unscored"):
        assert result[key] == pytest.approx(trained[key]), key
    assert set(result["per_type"]) == set(trained["per_type"])
    for kind, scores in trained["per_type"].items():
        assert result["per_type"][kind] == pytest.approx(scores), kind


def write_conll(path: Path, rows: list[dict], docstart: bool = True) -> Path:
    """CoNLL-2003 layout: -DOCSTART-, token POS chunk TAG per line, blank line between sentences."""
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for i, row in enumerate(rows):
        if docstart and i == len(rows) // 2:
            lines += ["-DOCSTART- -X- -X- O", ""]
        lines += [f"{w} NNP I-NP {t}" for w, t in zip(row["tokens"], row["ner_tags"])] + [""]
    path.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")  # no blank line after the last
    return path


def test_evaluate_and_predict_read_conll(ner_runs, ner_files, cli, tmp_path):
    rows = read_jsonl(ner_files["test"])
    trained = json.loads((ner_runs["bert"] / "metrics.json").read_text())["test"]
    txt = write_conll(tmp_path / "test.txt", rows)
    code, _, err = cli("evaluate", ner_runs["bert"], "--data", txt, "--format", "conll", "--output", tmp_path / "m.json")
    assert code == 0, err
    result = json.loads((tmp_path / "m.json").read_text())
    assert (result["samples"], result["entities"]) == (trained["samples"], trained["entities"])
    assert result["f1"] == pytest.approx(trained["f1"])
    # without --format conll a .txt is not labelled data
    line = one_line_error(*cli("evaluate", ner_runs["bert"], "--data", txt)[::2])
    assert ".txt" in line

    conll = write_conll(tmp_path / "test.conll", rows)
    code, out, err = cli("predict", ner_runs["bert"], conll)
    assert code == 0, err
    preds = [json.loads(l) for l in out.splitlines()]
    assert [p["tokens"] for p in preds] == [r["tokens"] for r in rows]


def test_predict_aggregations(ner_runs, cli, tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text(RAW[0][0] + "\n")
    for aggregation in ("simple", "first", "average", "max"):
        code, out, err = cli("predict", ner_runs["bert"], raw, "--aggregation", aggregation)
        assert code == 0, (aggregation, err)
        assert [(e["entity_group"], e["word"]) for e in json.loads(out)["entities"]] == RAW[0][1], aggregation
    line = one_line_error(*cli("predict", ner_runs["bert"], raw, "--aggregation", "firts")[::2])
    assert "simple, first, average, max" in line and "Did you mean 'first'" in line


def test_evaluate_with_character_spans(ner_runs, ner_files, cli, tmp_path):
    """The same test sentences as character spans score exactly as the tokens did."""
    spans = write_jsonl(tmp_path / "spans.jsonl", [to_spans(r) for r in read_jsonl(ner_files["test"])])
    code, _, err = cli("evaluate", ner_runs["bert"], "--data", spans, "--output", tmp_path / "m.json")
    assert code == 0, err
    result = json.loads((tmp_path / "m.json").read_text())
    trained = json.loads((ner_runs["bert"] / "metrics.json").read_text())["test"]
    for key in ("precision", "recall", "f1", "accuracy", "samples", "entities"):
        assert result[key] == pytest.approx(trained[key]), key


def to_spans(row: dict) -> dict:
    """{"tokens", "ner_tags"} -> {"text", "entities": [{start, end, label}]} (words joined by spaces)."""
    from seqeval.metrics.sequence_labeling import get_entities

    starts, position = [], 0
    for word in row["tokens"]:
        starts.append(position)
        position += len(word) + 1
    text = " ".join(row["tokens"])
    entities = [
        {"start": starts[first], "end": starts[last] + len(row["tokens"][last]), "label": kind}
        for kind, first, last in get_entities(row["ner_tags"])
    ]
    return {"text": text, "entities": entities}


# ================================================================ input formats through finetune


def tiny_ner_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [dict(zip(("tokens", "ner_tags"), make_ner_sentence(rng))) for _ in range(n)]


def check_read(run: Path, splits: dict[str, list[list[str]]], labels: list[str] | None = None) -> dict:
    """The run read each split whole: sentence and entity counts per type, the tag set."""
    metrics = json.loads((run / "metrics.json").read_text())
    for split, gold in splits.items():
        counts = entity_counts(gold)
        assert metrics[split]["samples"] == len(gold), split
        assert metrics[split]["entities"] == sum(counts.values()), split
        # an untrained model may predict other types too: those have support 0
        assert {kind: v["support"] for kind, v in metrics[split]["per_type"].items() if v["support"]} == counts, split
    id2label = json.loads((run / "model" / "config.json").read_text())["id2label"]
    assert id2label == {str(i): name for i, name in enumerate(labels or recipe_labels())}
    return metrics


def test_conll_files_and_format_conll(tiny_models, cli, tmp_path):
    """.conll with -DOCSTART- and four columns (tag last); a .txt read as CoNLL because of
    --format conll; and a .jsonl beside them that --format conll leaves alone."""
    train, validation, test = tiny_ner_rows(48, 10), tiny_ner_rows(12, 11), tiny_ner_rows(10, 12)
    conll = write_conll(tmp_path / "train.conll", train)
    assert conll.read_text().count("-DOCSTART-") == 2
    txt = write_conll(tmp_path / "validation.txt", validation, docstart=False)
    jsonl = write_jsonl(tmp_path / "test.jsonl", test)
    code, _, err = cli(
        "finetune", "ner", "--model", tiny_models["bert"], "--train", conll, "--validation", txt, "--test", jsonl,
        "--format", "conll", "-o", tmp_path / "run", *ONE_STEP,
    )
    assert code == 0, err
    check_read(tmp_path / "run", {"validation": [r["ner_tags"] for r in validation], "test": [r["ner_tags"] for r in test]})
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["format"] == "conll"

    # the same .txt without --format conll is refused before any work
    line = one_line_error(*cli("finetune", "ner", "--model", tiny_models["bert"], "--train", conll, "--validation", txt, "-o", tmp_path / "o")[::2])
    assert "validation.txt" in line and ".conll" in line


def test_conll_line_without_a_tag(tiny_models, cli, tmp_path):
    bad = tmp_path / "train.conll"
    bad.write_text("-DOCSTART- O\n\nAlice B-PER\nmet O\n\nBob\n", encoding="utf-8")
    line = one_line_error(*cli("finetune", "ner", "--model", tiny_models["bert"], "--train", bad, "-o", tmp_path / "o")[::2])
    assert "line 6" in line and "'Bob'" in line and "last column" in line


def test_character_span_jsonl(tiny_models, cli, tmp_path):
    train, validation = tiny_ner_rows(48, 20), tiny_ner_rows(12, 21)
    spans = [to_spans(r) for r in train]
    assert spans[0]["entities"] and all(set(e) == {"start", "end", "label"} for s in spans for e in s["entities"])
    code, _, err = cli(
        "finetune", "ner", "--model", tiny_models["bert"], "--train", write_jsonl(tmp_path / "train.jsonl", spans),
        "--validation", write_jsonl(tmp_path / "val.jsonl", [to_spans(r) for r in validation]), "-o", tmp_path / "run", *ONE_STEP,
    )
    assert code == 0, err
    check_read(tmp_path / "run", {"validation": [r["ner_tags"] for r in validation]})


def test_integer_tags_with_data_labels(tiny_models, cli, tmp_path):
    labels = ["B-LOC", "I-LOC", "O", "B-PER", "I-PER", "B-ORG", "I-ORG"]  # not the recipe's order
    train, validation = tiny_ner_rows(48, 30), tiny_ner_rows(12, 31)

    def as_ids(rows):
        return [{"tokens": r["tokens"], "ner_tags": [labels.index(t) for t in r["ner_tags"]]} for r in rows]

    code, _, err = cli(
        "finetune", "ner", "--model", tiny_models["bert"], "--train", write_jsonl(tmp_path / "train.jsonl", as_ids(train)),
        "--validation", write_jsonl(tmp_path / "val.jsonl", as_ids(validation)), "-o", tmp_path / "run",
        "--set", f"data.labels=[{', '.join(labels)}]", *ONE_STEP,
    )
    assert code == 0, err
    check_read(tmp_path / "run", {"validation": [r["ner_tags"] for r in validation]}, labels)

    rows = as_ids(train)
    rows[3]["ner_tags"][0] = 7  # one past the end of the list
    line = one_line_error(*cli(
        "finetune", "ner", "--model", tiny_models["bert"], "--train", write_jsonl(tmp_path / "bad.jsonl", rows),
        "--validation", tmp_path / "val.jsonl", "-o", tmp_path / "o", "--set", f"data.labels=[{', '.join(labels)}]",
    )[::2])
    assert "line/row 4" in line and "integer tag 7" in line and "data.labels" in line


def to_iob1(tags: list[str]) -> list[str]:
    """IOB2 -> IOB1: B- only where an entity follows one of the same type (never in the fixture)."""
    return ["I" + t[1:] if t.startswith("B-") and (i == 0 or tags[i - 1][2:] != t[2:]) else t for i, t in enumerate(tags)]


@pytest.fixture
def iob1_train(tmp_path) -> tuple[Path, list[dict]]:
    rows = tiny_ner_rows(48, 40)
    return write_jsonl(tmp_path / "iob1.jsonl", [{"tokens": r["tokens"], "ner_tags": to_iob1(r["ner_tags"])} for r in rows]), rows


def test_iob1_is_repaired_with_a_note(tiny_models, cli, tmp_path, iob1_train):
    path, rows = iob1_train
    validation = tiny_ner_rows(12, 41)
    n_tags = sum(entity_counts([r["ner_tags"] for r in rows]).values())  # each entity opened by I-
    n_sentences = sum(any(t != "O" for t in r["ner_tags"]) for r in rows)
    first = 1 + next(i for i, r in enumerate(rows) if any(t != "O" for t in r["ner_tags"]))
    code, _, err = cli(
        "finetune", "ner", "--model", tiny_models["bert"], "--train", path, "--validation",
        write_jsonl(tmp_path / "val.jsonl", validation), "-o", tmp_path / "run", "--max-steps", "1",
    )
    assert code == 0, err
    note = " ".join(err.split())  # the console may wrap the note
    assert f"repaired {n_tags} tag(s) in {n_sentences} sentence(s) to IOB2" in note
    assert f"first at line/row {first})" in note and "--strict" in note
    check_read(tmp_path / "run", {"validation": [r["ner_tags"] for r in validation]})


def test_iob1_is_refused_with_strict(tiny_models, ner_files, cli, tmp_path, iob1_train):
    path, rows = iob1_train
    row = next(i for i, r in enumerate(rows) if any(t != "O" for t in r["ner_tags"]))
    token = next(i for i, t in enumerate(rows[row]["ner_tags"]) if t != "O")
    line = one_line_error(*cli(
        "finetune", "ner", "--model", tiny_models["bert"], "--train", path, "--validation", ner_files["validation"],
        "-o", tmp_path / "run", "--strict",
    )[::2])
    tag = "I-" + rows[row]["ner_tags"][token][2:]
    assert f"{path}: line/row {row + 1}: tag '{tag}' at token {token + 1} continues no entity" in line
    assert "drop --strict" in line
    assert not (tmp_path / "run" / "metrics.json").exists() and not (tmp_path / "run" / "log.jsonl").exists()


def test_underscore_tags_train(tiny_models, cli, tmp_path):
    train, validation = tiny_ner_rows(48, 50), tiny_ner_rows(12, 51)

    def underscored(rows):
        return [{"tokens": r["tokens"], "ner_tags": [t.replace("-", "_") for t in r["ner_tags"]]} for r in rows]

    code, _, err = cli(
        "finetune", "ner", "--model", tiny_models["bert"], "--train", write_jsonl(tmp_path / "train.jsonl", underscored(train)),
        "--validation", write_jsonl(tmp_path / "val.jsonl", underscored(validation)), "-o", tmp_path / "run", *ONE_STEP,
    )
    assert code == 0, err
    check_read(tmp_path / "run", {"validation": [r["ner_tags"] for r in validation]})


def test_validation_tags_unseen_in_training(tiny_models, ner_files, cli, tmp_path):
    rows = read_jsonl(ner_files["validation"])[:10]
    rows[2] = {"tokens": ["Monday", "met", "June", "1st"], "ner_tags": ["B-DATE", "O", "B-DATE", "I-DATE"]}
    rows[5]["ner_tags"][0] = "B-EVENT"
    val = write_jsonl(tmp_path / "val.jsonl", rows)
    line = one_line_error(*cli("finetune", "ner", "--model", tiny_models["bert"], "--train", ner_files["train"], "--validation", val, "-o", tmp_path / "o")[::2])
    assert f"{val}: validation has tag(s) the model does not know: B-DATE, B-EVENT, I-DATE." in line
    assert "Known tags: " + ", ".join(recipe_labels()) in line


@pytest.mark.parametrize("bad", ["PER", "S-LOC"])
def test_non_iob_tags(tiny_models, ner_files, cli, tmp_path, bad):
    rows = read_jsonl(ner_files["train"])[:20]
    rows[6]["ner_tags"][1] = bad
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    line = one_line_error(*cli("finetune", "ner", "--model", tiny_models["bert"], "--train", train, "--validation", ner_files["validation"], "-o", tmp_path / "o")[::2])
    assert f"line/row 7: tag '{bad}' is not IOB" in line and "IOBES/BILOU" in line


def test_words_and_tags_of_different_lengths(tiny_models, ner_files, cli, tmp_path):
    rows = read_jsonl(ner_files["train"])[:20]
    rows[1]["ner_tags"].append("O")
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    line = one_line_error(*cli("finetune", "ner", "--model", tiny_models["bert"], "--train", train, "--validation", ner_files["validation"], "-o", tmp_path / "o")[::2])
    n = len(rows[1]["tokens"])
    assert f"line/row 2: {n} words but {n + 1} tags" in line


def test_model_that_cannot_tag_tokens(ner_files, cli, tmp_path):
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37).save_pretrained(tmp_path / "vit")
    line = one_line_error(*cli("finetune", "ner", "--model", tmp_path / "vit", *data_args(ner_files), "-o", tmp_path / "o")[::2])
    assert "'vit'" in line and "token classification" in line and "bert" in line
    assert not any((tmp_path / "o").glob("*"))  # refused before any data, model or training


# ================================================================ windows over long inputs


@pytest.fixture(scope="module")
def windowed_run(tiny_models, ner_files, tmp_path_factory) -> Path:
    """BERT trained on 16-token windows overlapping by 4: most fixture sentences are cut."""
    run = tmp_path_factory.mktemp("ner-windowed") / "bert"
    finetune("--model", tiny_models["bert"], *data_args(ner_files), "--output-dir", run, *FAST, "--max-length", "16", "--set", "train.stride=4")
    return run


MAX_LENGTH, STRIDE = 16, 4
# content tokens per BERT window ([CLS] and [SEP] take two), and how far each next window starts
WINDOW, STEP = MAX_LENGTH - 2, MAX_LENGTH - 2 - STRIDE


def long_sentence() -> tuple[list[str], list[str]]:
    """Filler words with two-word entities on the last token of windows 1 and 2, and a
    one-word entity inside window 3 (every fixture word is one BERT token)."""
    filler = iter(NER_FILLER * 10)
    words: list[str] = []
    tags: list[str] = []
    for entity, kind, gap_before in (
        (["Carol", "Smith"], "PER", WINDOW - 1),  # "Carol" is token WINDOW - 1: window 1's last
        (["New", "York"], "LOC", STEP - 2),  # "New" is token WINDOW - 1 + STEP: window 2's last
        (["Paris"], "LOC", 5),
    ):
        words += [next(filler) for _ in range(gap_before)] + entity
        tags += ["O"] * gap_before + [f"B-{kind}"] + [f"I-{kind}"] * (len(entity) - 1)
    words += [next(filler) for _ in range(12)]
    return words, tags + ["O"] * 12


def test_long_sentence_puts_entities_across_window_borders(tiny_models):
    """The check behind the test below: 'Carol Smith' and 'New York' are cut by a border."""
    from ftkit.models import load_tokenizer
    from ftkit.tasks.tokens import encode

    words, tags = long_sentence()
    tokenizer = load_tokenizer(str(tiny_models["bert"]), prefix_space=True)
    text = " ".join(words)
    windows = tokenizer(text, truncation=True, max_length=MAX_LENGTH, stride=STRIDE, return_overflowing_tokens=True)
    pieces = [tokenizer.convert_ids_to_tokens(ids) for ids in windows["input_ids"]]
    assert len(pieces) >= 4
    assert pieces[0][-2] == "carol" and "smith" not in pieces[0]  # the pipeline's windows over raw text
    assert pieces[1][-2] == "new" and "york" not in pieces[1]
    enc = encode(tokenizer, [words], None, [0], MAX_LENGTH, STRIDE, False, NAMES)  # windows over words
    assert enc["word_index"][0][-2] == words.index("Carol") and words.index("Smith") not in enc["word_index"][0]
    assert enc["word_index"][1][-2] == words.index("New") and words.index("York") not in enc["word_index"][1]


def test_no_entity_is_lost_at_a_window_border(windowed_run, tiny_models, cli, tmp_path):
    words, tags = long_sentence()
    text = " ".join(words)
    metrics = json.loads((windowed_run / "metrics.json").read_text())
    assert metrics["test"]["f1"] >= 0.9 and metrics["test"]["words_unscored"] == 0
    assert yaml.safe_load((windowed_run / "config.yaml").read_text())["train"]["stride"] == STRIDE

    raw = tmp_path / "long.txt"
    raw.write_text(text + "\n")
    code, out, err = cli("predict", windowed_run, raw)  # the run's stride by default
    assert code == 0, err
    entities = json.loads(out)["entities"]
    expected = [("PER", "Carol Smith"), ("LOC", "New York"), ("LOC", "Paris")]
    assert [(e["entity_group"], e["word"]) for e in entities] == expected
    assert all(text[e["start"] : e["end"]] == e["word"] for e in entities)

    tokens = write_jsonl(tmp_path / "long.jsonl", [{"tokens": words, "ner_tags": tags}])
    code, out, err = cli("predict", windowed_run, tokens, "--stride", "6")
    assert code == 0, err
    assert json.loads(out)["tags"] == tags
    code, out, err = cli("predict", windowed_run, tokens)
    assert code == 0, err
    assert json.loads(out)["tags"] == tags

    code, _, err = cli("evaluate", windowed_run, "--data", tokens, "--output", tmp_path / "m.json")
    assert code == 0, err
    result = json.loads((tmp_path / "m.json").read_text())
    assert (result["f1"], result["entities"], result["words_unscored"]) == (1.0, 3, 0)


def test_predict_stride_must_fit_the_window(windowed_run, cli, tmp_path):
    raw = tmp_path / "in.txt"
    raw.write_text("Alice met Bob\n")
    line = one_line_error(*cli("predict", windowed_run, raw, "--stride", "8")[::2])
    assert "--stride 8" in line and "16-token window" in line
    line = one_line_error(*cli("predict", windowed_run, raw, "--stride", "-1")[::2])
    assert "--stride must not be negative" in line
