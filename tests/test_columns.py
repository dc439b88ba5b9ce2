"""Which column is the text and which the label (issue 14, item 5), through the real entry point.

A missing column's suggestion fits its role, judged by the values of the rows read (the text
column is not the one with two values, however it is spelled), and one column named for two
roles is refused in one line naming both flags, for finetune and evaluate alike.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from conftest import make_ner_sentence, make_sentence, write_jsonl
from test_data_safety import classifier_dir, one_line, stop_at_model, stopped  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reviews(n: int = 40) -> list[dict]:
    """The issue's file: a 'review' text and a 'sentiment' label, no 'sentence' or 'label'."""
    rng = random.Random(3)
    labels = ["positive", "negative"] * (n // 2)
    return [{"review": make_sentence(rng, label), "sentiment": label} for label in labels]


def finetune(models: dict, recipe: str, train: Path, out: Path, *args: object, model: str = "bert") -> list[object]:
    return ["finetune", recipe, "--model", models[model], "--train", train, "--output-dir", out, "--quiet", *args]


@pytest.mark.parametrize(
    "args, advice",
    [
        # the case: 'sentiment' is spelled like 'sentence' but holds the labels
        ([], ("no columns 'sentence', 'label' (line/row 1). Columns present: review, sentiment. Pass --text-column review "
              "--label-column sentiment ('review' looks like text, 'sentiment' like labels).")),
        (["--label-column", "sentiment"], ("no column 'sentence' (line/row 1). Columns present: review, sentiment. "
                                           "For the text column, 'review' looks like text: pass --text-column review.")),
    ],
)
def test_the_text_column_suggested_holds_text(cli, tiny_models, tmp_path, stop_at_model, args, advice):  # noqa: F811
    train = write_jsonl(tmp_path / "train.jsonl", reviews())
    line = one_line(cli(*finetune(tiny_models, "sentiment", train, tmp_path / "run", *args)))
    assert line == f"error: {train}: {advice}"
    assert not (tmp_path / "run").exists()
    # the advice taken, the data is accepted: the run gets as far as the model
    stopped(cli(*finetune(tiny_models, "sentiment", train, tmp_path / "run", "--text-column", "review", "--label-column", "sentiment")))
    assert stop_at_model["prepared"].names == ["negative", "positive"]


def test_a_missing_label_column_suggests_the_one_with_few_values(cli, tiny_models, tmp_path):
    """'label_text' is spelled like 'label' but holds free text; 'stars' holds five values."""
    rows = [{"review": r["review"], "label_text": f"rater {i} read it as {r['sentiment']}", "stars": 1 + i % 5} for i, r in enumerate(reviews())]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    line = one_line(cli(*finetune(tiny_models, "sentiment", train, tmp_path / "run", "--text-column", "review")))
    assert line.endswith(f"{train}: no column 'label' (line/row 1). Columns present: review, label_text, stars. "
                         "For the label column, 'stars' looks like labels: pass --label-column stars.")


def test_a_typo_still_gets_its_name(cli, tiny_models, sentiment_files, tmp_path):
    """A name close to one whose values fit the role is suggested by name, as before."""
    line = one_line(cli(*finetune(tiny_models, "sentiment", sentiment_files["train"], tmp_path / "run", "--text-column", "txet")))
    assert line.endswith("no column 'txet' (line/row 1). Did you mean 'text'? Columns present: text, label. Choose one with --text-column.")


@pytest.mark.parametrize(
    "recipe, args, refusal",
    [
        ("sentiment", ["--text-column", "text", "--label-column", "text"], "--text-column and --label-column both name the column 'text'"),
        ("sentiment", ["--set", "data.text_column=label"], "--text-column and --label-column both name the column 'label'"),
        # the recipe's 'sentence' is absent, so the file's 'text' would be the text: and the label
        ("sentiment", ["--label-column", "text"], "--text-column and --label-column both name the column 'text'"),
        ("summarization", ["--text-column", "text", "--set", "data.target_column=text"], "--text-column and --set data.target_column both name the column 'text'"),
        ("translation", ["--source-lang", "en", "--target-lang", "en"], "--source-lang and --target-lang are both 'en'"),
    ],
)
def test_one_column_for_two_roles_is_refused(cli, tiny_models, sentiment_files, tmp_path, recipe, args, refusal):
    line = one_line(cli(*finetune(tiny_models, recipe, sentiment_files["train"], tmp_path / "run", *args)), refusal)
    assert not (tmp_path / "run").exists()
    assert len(line) < 300


def test_evaluate_refuses_one_column_for_two_roles(cli, classifier_dir, sentiment_files):  # noqa: F811
    one_line(
        cli("evaluate", classifier_dir, "--data", sentiment_files["test"], "--text-column", "label", "--label-column", "label"),
        "--text-column and --label-column both name the column 'label'",
    )


def test_predict_suggests_the_column_that_holds_text(cli, classifier_dir, tmp_path):  # noqa: F811
    source = write_jsonl(tmp_path / "in.jsonl", reviews(4))
    line = one_line(cli("predict", classifier_dir, source))
    assert line == (f"error: {source}: no column 'text' (line/row 1). Columns present: review, sentiment. "
                    "For the text column, 'review' looks like text: pass --text-column review.")


def test_ner_columns_are_suggested_as_words_and_tags(cli, tiny_models, tmp_path, stop_at_model):  # noqa: F811
    rng = random.Random(5)
    rows = [dict(zip(("words", "iob"), make_ner_sentence(rng)), id=i) for i in range(40)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    line = one_line(cli(*finetune(tiny_models, "ner", train, tmp_path / "run")))
    assert line.endswith(f"{train}: no columns 'tokens', 'ner_tags' (line/row 1). Columns present: words, iob, id. Pass --text-column "
                         "words --label-column iob ('words' looks like lists of words, 'iob' like lists of tags).")
    stopped(cli(*finetune(tiny_models, "ner", train, tmp_path / "run", "--text-column", "words", "--label-column", "iob")))
    assert "B-PER" in stop_at_model["prepared"].names


def test_seq2seq_columns_are_suggested_source_first(cli, tiny_models, tmp_path, stop_at_model):  # noqa: F811
    """Both the story and its title are text: the longer is the source, the other the target."""
    rng = random.Random(7)
    rows = []
    for i in range(40):
        sentences = [make_sentence(rng, rng.choice(["positive", "negative"])) for _ in range(3)]
        rows.append({"id": i, "title": sentences[0], "story": ". ".join(sentences)})
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    line = one_line(cli(*finetune(tiny_models, "summarization", train, tmp_path / "run", model="t5")))
    assert line.endswith(f"{train}: no columns 'article', 'highlights' (line/row 1). Columns present: id, title, story. Pass "
                         "--text-column story --set data.target_column=title ('story' looks like text, 'title' like text).")
    stopped(cli(*finetune(tiny_models, "summarization", train, tmp_path / "run", "--text-column", "story", "--set", "data.target_column=title", model="t5")))
