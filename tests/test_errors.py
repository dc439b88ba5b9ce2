"""Error analysis: RUN/errors.jsonl (the test split's wrong rows, worst first) and
`ftkit evaluate --errors FILE` (the same rows for any labelled file), through the real CLI.

A tiny sentiment run with a few test labels flipped (so some rows are surely wrong) is checked
against `ftkit predict` on the test file; NER and summarization once each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import call, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--max-steps", "12", "--batch-size", "8", "--quiet"]
FLIPPED = 6  # test rows whose label is the other class: a model that learned anything gets them wrong


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def one_line_error(code: int, err: str, expected_code: int = 2) -> str:
    assert code == expected_code, err
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def sentiment(tiny_models, sentiment_files, tmp_path_factory) -> dict[str, Path]:
    """A finished sentiment run whose test file has FLIPPED labels flipped; its files."""
    root = tmp_path_factory.mktemp("errors-sentiment")
    rows = read_jsonl(sentiment_files["test"])
    for row in rows[:FLIPPED]:
        row["label"] = "negative" if row["label"] == "positive" else "positive"
    test = write_jsonl(root / "test.jsonl", rows)
    run = root / "run"
    code = call(["finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"],
                 "--validation", sentiment_files["validation"], "--test", test, "-o", run, *FAST])
    assert code == 0
    return {"run": run, "test": test, "root": root}


def test_errors_jsonl_holds_exactly_the_wrong_test_predictions_most_confident_first(sentiment):
    errors = read_jsonl(sentiment["run"] / "errors.jsonl")
    predictions = sentiment["root"] / "predictions.jsonl"
    assert call(["predict", sentiment["run"], sentiment["test"], "--output", predictions]) == 0
    gold = {r["text"]: r["label"] for r in read_jsonl(sentiment["test"])}
    wrong = {p["text"]: p for p in read_jsonl(predictions) if p["label"] != gold[p["text"]]}
    assert len(wrong) >= 1
    assert [set(row) for row in errors] == [{"text", "gold", "predicted", "score"}] * len(errors)
    assert sorted(row["text"] for row in errors) == sorted(wrong)  # every wrong row, and only those
    for row in errors:
        assert row["gold"] == gold[row["text"]] and row["predicted"] == wrong[row["text"]]["label"] != row["gold"]
        assert row["score"] == pytest.approx(wrong[row["text"]]["score"], abs=1e-4)
    scores = [row["score"] for row in errors]
    assert scores == sorted(scores, reverse=True)
    metrics = json.loads((sentiment["run"] / "metrics.json").read_text())
    assert len(errors) == round((1 - metrics["test"]["accuracy"]) * len(gold))


def test_evaluate_errors_writes_the_same_rows_and_guards_its_file(sentiment, cli):
    out = sentiment["root"] / "holdout-errors.jsonl"
    code, _, err = cli("evaluate", sentiment["run"], "--data", sentiment["test"], "--errors", out)
    assert code == 0, err
    run_rows, file_rows = read_jsonl(sentiment["run"] / "errors.jsonl"), read_jsonl(out)
    assert [(r["text"], r["gold"], r["predicted"]) for r in file_rows] == [(r["text"], r["gold"], r["predicted"]) for r in run_rows]
    assert [r["score"] for r in file_rows] == pytest.approx([r["score"] for r in run_rows], abs=1e-4)
    assert f"wrote {len(file_rows)} wrong" in err

    before = out.read_bytes()  # an existing file is replaced only with --overwrite
    line = one_line_error(*cli("evaluate", sentiment["run"], "--data", sentiment["test"], "--errors", out)[::2])
    assert "already exists" in line and "--overwrite" in line and out.read_bytes() == before
    line = one_line_error(*cli("evaluate", sentiment["run"], "--data", sentiment["test"], "--errors", sentiment["test"])[::2])
    assert "--errors" in line and "destroy the input" in line  # never over what it reads
    both = out.with_suffix(".json")
    line = one_line_error(*cli("evaluate", sentiment["run"], "--data", sentiment["test"], "--output", both, "--errors", both, "--overwrite")[::2])
    assert "is the --output file too" in line and not both.exists()
    out.write_text("stale\n")
    code, _, err = cli("evaluate", sentiment["run"], "--data", sentiment["test"], "--errors", out, "--overwrite")
    assert code == 0, err
    assert read_jsonl(out) == file_rows


def test_a_run_without_a_test_split_lists_its_validation_rows(tiny_models, sentiment_files, tmp_path, cli):
    run = tmp_path / "run"
    code, _, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"],
                       "--validation", sentiment_files["validation"], "-o", run, "--max-steps", "2", "--batch-size", "8")
    assert code == 0, err
    errors = read_jsonl(run / "errors.jsonl")
    assert "errors.jsonl" in err and "validation split" in err
    validation = {r["text"]: r["label"] for r in read_jsonl(sentiment_files["validation"])}
    assert errors and all(validation[r["text"]] == r["gold"] != r["predicted"] for r in errors)
    accuracy = json.loads((run / "metrics.json").read_text())["validation"]["accuracy"]  # the best model's: the same one
    assert len(errors) == round((1 - accuracy) * len(validation))


def test_ner_errors_are_the_sentences_with_wrong_entities(tiny_models, ner_files, tmp_path):
    from seqeval.metrics.sequence_labeling import get_entities

    run = tmp_path / "ner"
    assert call(["finetune", "ner", "--model", tiny_models["bert"], "--train", ner_files["train"], "--validation", ner_files["validation"],
                 "--test", ner_files["test"], "-o", run, *FAST]) == 0
    errors = read_jsonl(run / "errors.jsonl")
    gold_tags = {tuple(r["tokens"]): r["ner_tags"] for r in read_jsonl(ner_files["test"])}
    assert errors and len(errors) <= len(gold_tags)
    wrong_counts = []
    for row in errors:
        assert set(row) == {"tokens", "gold", "predicted"}
        spans = lambda side: {(e["type"], e["start"], e["end"]) for e in row[side]}  # noqa: E731
        expected = {(kind, start, end + 1) for kind, start, end in get_entities(gold_tags[tuple(row["tokens"])])}
        assert spans("gold") == expected != spans("predicted")
        assert all(e["text"] == " ".join(row["tokens"][e["start"]:e["end"]]) for e in row["gold"] + row["predicted"])
        wrong_counts.append(len(spans("gold") ^ spans("predicted")))
    assert wrong_counts == sorted(wrong_counts, reverse=True)
    f1 = json.loads((run / "metrics.json").read_text())["test"]["f1"]
    assert f1 < 1.0  # sentences are listed only when some entity is wrong


def test_summarization_errors_are_the_worst_scored_rows(tiny_models, tmp_path):
    from rouge_score import rouge_scorer

    rows = [{"document": f"the film was {w} and the plot was dull.", "summary": f"the film was {w}."}
            for w in ("great", "moving", "superb", "boring", "tedious", "bland", "charming", "awful")]
    data = write_jsonl(tmp_path / "docs.jsonl", rows)
    run = tmp_path / "summaries"
    assert call(["finetune", "summarization", "--model", tiny_models["t5"], "--train", data, "--validation", data, "--test", data,
                 "-o", run, "--max-steps", "2", "--batch-size", "4", "--quiet", "--set", "generation.max_new_tokens=8"]) == 0
    errors = read_jsonl(run / "errors.jsonl")
    by_source = {r["document"]: r["summary"] for r in rows}
    assert errors and len(errors) <= len(rows)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    for row in errors:
        assert set(row) == {"source", "reference", "prediction", "score"}
        assert row["reference"] == by_source[row["source"]] != row["prediction"]
        assert row["score"] == pytest.approx(scorer.score(row["reference"], row["prediction"])["rougeL"].fmeasure)
    scores = [row["score"] for row in errors]
    assert scores == sorted(scores)
