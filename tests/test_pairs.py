"""Sentence pairs for classification (NLI, paraphrase, question/answer): --text-pair-column at
training, a pair's longer side cut first, predict reading both columns of a table (and refusing
lines, which hold one text), pipeline() on {"text", "text_pair"} agreeing, and a missing pair
column refused in one line before training."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import POSITIVE, NEGATIVE, call, make_sentence, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pair_rows(rng: random.Random, n: int) -> list[dict]:
    """A premise and a reply; the label is the reply's sentiment (the premise is noise)."""
    rows = []
    for _ in range(n):
        label = rng.choice(["negative", "positive"])
        rows.append({"premise": make_sentence(rng, rng.choice(["negative", "positive"])), "reply": make_sentence(rng, label), "label": label})
    return rows


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pairs")
    rng = random.Random(7)
    return {split: write_jsonl(root / f"{split}.jsonl", pair_rows(rng, n)) for split, n in (("train", 48), ("validation", 12), ("test", 12))}


@pytest.fixture(scope="module")
def pair_run(tiny_models, pair_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pair-run") / "run"
    code = call([
        "finetune", "sentiment", "--model", tiny_models["bert"], "--train", pair_files["train"], "--validation", pair_files["validation"],
        "--test", pair_files["test"], "--text-column", "premise", "--text-pair-column", "reply", "--max-steps", "6", "-o", out, "--quiet",
    ])
    assert code == 0
    return out


def test_the_run_reads_both_columns(pair_run):
    config = (pair_run / "config.yaml").read_text()
    assert "text_pair_column: reply" in config and "text_column: premise" in config


def test_predict_reads_pairs_and_matches_the_pipeline_and_the_test_metrics(pair_run, pair_files, cli, tmp_path):
    from transformers import pipeline

    out_file = tmp_path / "pred.jsonl"
    code, _, err = cli("predict", pair_run, pair_files["test"], "--output", out_file)
    assert code == 0, err
    preds = [json.loads(line) for line in out_file.read_text().splitlines()]
    rows = [json.loads(line) for line in pair_files["test"].read_text().splitlines()]
    assert [(p["text"], p["text_pair"]) for p in preds] == [(r["premise"], r["reply"]) for r in rows]
    accuracy = sum(p["label"] == r["label"] for p, r in zip(preds, rows)) / len(rows)
    assert accuracy == pytest.approx(json.loads((pair_run / "metrics.json").read_text())["test"]["accuracy"])

    classifier = pipeline("text-classification", model=str(pair_run / "model"))
    piped = [classifier({"text": r["premise"], "text_pair": r["reply"]}) for r in rows[:6]]
    piped = [p[0] if isinstance(p, list) else p for p in piped]
    assert [p["label"] for p in piped] == [p["label"] for p in preds[:6]]
    assert [round(p["score"], 4) for p in piped] == [round(p["score"], 4) for p in preds[:6]]


def test_predict_on_one_text_per_line_is_refused_for_a_pair_model(pair_run, cli, tmp_path):
    lines = tmp_path / "in.txt"
    lines.write_text("a great film\n")
    for args in ([lines], ["--text", "a great film"]):
        code, out, err = cli("predict", pair_run, *args)
        assert code == 2 and not out and len(err.strip().splitlines()) == 1, err
        assert "text pairs" in err and "'premise'" in err and "'reply'" in err


def test_predict_names_a_missing_pair_column(pair_run, cli, tmp_path):
    table = write_jsonl(tmp_path / "one.jsonl", [{"premise": "a film", "answer": "great"}])
    code, out, err = cli("predict", pair_run, table)
    assert code == 2 and not out and len(err.strip().splitlines()) == 1, err
    assert "reply" in err


def test_a_missing_pair_column_is_one_line_before_training(tiny_models, pair_files, cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", pair_files["train"], "--text-column", "premise",
                       "--text-pair-column", "hypothesis", "--max-steps", "1", "-o", out)
    assert code == 2 and "hypothesis" in err and "--text-pair-column" in err, err
    assert not out.exists()


def test_truncation_cuts_the_longer_side_first(tiny_models):
    from transformers import AutoTokenizer

    from ftkit.tasks.classification import tokenize

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    long = " ".join(POSITIVE * 10)
    short = " ".join(NEGATIVE[:3])
    ids = tokenize(tokenizer, [long], [short], 24)["input_ids"][0]
    assert len(ids) == 24
    # the short side survives whole: its three words end the sequence before [SEP]
    assert tokenizer.decode(ids[-4:-1]) == short


def test_a_label_list_in_a_single_label_run_points_at_multilabel(tiny_models, cli, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "a fine film", "label": ["positive", "moving"]}] * 4)
    code, _, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", train, "--max-steps", "1", "-o", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "line/row 1: the label is a list" in err and "ftkit finetune multilabel" in err


def test_a_recipe_pair_column_a_local_file_lacks_is_dropped_with_a_note(tiny_models, cli, tmp_path):
    """The regression recipe reads STS-B's sentence1/sentence2; a file of single texts with a
    score trains on one text per row, and says so. Named on the command line, a missing pair
    column is an error (above)."""
    rng = random.Random(3)
    rows = [{"text": make_sentence(rng, rng.choice(["negative", "positive"])), "label": rng.uniform(0, 5)} for _ in range(30)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    code, _, err = cli("finetune", "regression", "--model", tiny_models["bert"], "--train", train, "--max-steps", "2", "-o", tmp_path / "run")
    assert code == 0, err
    assert "has no column 'sentence2'; reading one text per row (--text-pair-column names the second text of a pair)" in err
    assert "text_pair_column: null" in (tmp_path / "run" / "config.yaml").read_text()


def test_evaluate_of_a_pair_model_refuses_a_file_without_the_pair_column(pair_run, cli, tmp_path):
    table = write_jsonl(tmp_path / "single.jsonl", [{"premise": "a film", "label": "positive"}] * 3)
    code, _, err = cli("evaluate", pair_run, "--data", table)
    assert code == 2 and "reply" in err, err
