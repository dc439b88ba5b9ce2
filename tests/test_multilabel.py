"""Multi-label classification (ftkit finetune multilabel): labels per row as a jsonl list or a
csv string joined by --label-separator; thresholds tuned on validation, saved in config.json and
used by the test split, evaluate and predict; metrics recomputed from predict's output; the
pipeline's scores; --class-weights as per-label positive weights; sentence pairs; bad inputs as
one line; a bare model folder told apart from a single-label classifier."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from conftest import FILLER, NEGATIVE, POSITIVE, call, save_classifier, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Each label is carried by its own cue words (in the tiny tokenizer's vocabulary); a row holds any
# subset of them, none included.
CUES = {"joy": POSITIVE, "anger": NEGATIVE, "travel": ["paris", "berlin", "tokyo", "york"]}
NAMES = sorted(CUES)  # names sorted from the data: the recipe's GoEmotions labels do not fit "travel"
QUICK = ["--batch-size", "8", "--learning-rate", "3e-3", "--max-length", "32", "--set", "warmup_ratio=0", "--seed", "0"]


def make_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        labels = [name for name in NAMES if rng.random() < 0.45] if i % 6 else []  # some rows have no label
        words = rng.sample(FILLER, rng.randint(2, 4)) + [rng.choice(CUES[name]) for name in labels]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": labels, "reply": " ".join(rng.sample(FILLER, 3))})
    return rows


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict]]:
    rng = random.Random(5)
    return {split: make_rows(rng, n) for split, n in (("train", 200), ("validation", 30), ("test", 30))}


@pytest.fixture(scope="module")
def files(splits, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("multilabel-jsonl")
    return {split: write_jsonl(root / f"{split}.jsonl", rows) for split, rows in splits.items()}


@pytest.fixture(scope="module")
def csv_files(splits, tmp_path_factory) -> dict[str, Path]:
    """The same rows as csv, the labels of a row joined by '|' in a 'tags' cell ('' for none)."""
    root = tmp_path_factory.mktemp("multilabel-csv")
    out = {}
    for split, rows in splits.items():
        path = root / f"{split}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "tags"])
            writer.writerows([r["text"], "|".join(r["labels"])] for r in rows)
        out[split] = path
    return out


def finetune(model: Path, files: dict[str, Path], out: Path, *extra) -> list:
    return ["finetune", "multilabel", "--model", model, "--train", files["train"], "--validation", files["validation"],
            "--test", files["test"], "-o", out, "--quiet", *QUICK, *extra]


@pytest.fixture(scope="module")
def run(tiny_models, files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("multilabel-run") / "run"
    assert call(finetune(tiny_models["bert"], files, out, "--epochs", "25")) == 0
    return out


def metrics_of(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def model_config(run: Path) -> dict:
    return json.loads((run / "model" / "config.json").read_text(encoding="utf-8"))


def predicted(cli, run: Path, data: Path, tmp_path: Path, *extra) -> list[dict]:
    out_file = tmp_path / "pred.jsonl"
    code, _, err = cli("predict", run, data, "--output", out_file, *extra)
    assert code == 0, err
    return [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]


def scores_from(gold: list[list[str]], chosen: list[list[str]]) -> dict:
    """The metrics recomputed with scikit-learn from label lists."""
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss
    from sklearn.preprocessing import MultiLabelBinarizer

    binarize = MultiLabelBinarizer(classes=NAMES)
    y, p = binarize.fit_transform(gold), binarize.transform(chosen)
    return {
        "f1_micro": f1_score(y, p, average="micro", zero_division=0), "f1_macro": f1_score(y, p, average="macro", zero_division=0),
        "subset_accuracy": accuracy_score(y, p), "hamming_loss": hamming_loss(y, p),
    }


# ------------------------------------------------------------------------------ a run on jsonl lists


def test_thresholds_tuned_on_validation_land_in_config_json_and_metrics(run):
    metrics, config = metrics_of(run), model_config(run)
    assert config["problem_type"] == "multi_label_classification"
    assert [config["id2label"][str(i)] for i in range(3)] == NAMES
    tuned = metrics["validation"]["thresholds"]
    assert set(tuned) == set(NAMES) and len(set(tuned.values())) == 1  # `tune`: one for every label
    assert config["label_thresholds"] == tuned == metrics["train"]["thresholds"] == metrics["test"]["thresholds"]
    assert 0.05 <= tuned["joy"] <= 0.95
    assert metrics["test"]["samples"] == 30 and metrics["test"]["f1_micro"] > 0.75  # it learned the cues (chance: about 0.5)
    for key in ("f1_macro", "precision_micro", "recall_macro", "subset_accuracy", "hamming_loss", "loss"):
        assert isinstance(metrics["test"][key], float), key
    assert set(metrics["test"]["per_label"]) == set(NAMES)


def test_test_metrics_are_those_of_predicts_labels_at_the_saved_thresholds(run, files, splits, cli, tmp_path):
    rows = predicted(cli, run, files["test"], tmp_path, "--batch-size", "7")
    thresholds = model_config(run)["label_thresholds"]
    assert len(rows) == 30
    for row in rows:
        scores = row["scores"]
        assert set(scores) == set(NAMES) and list(scores.values()) == sorted(scores.values(), reverse=True)
        assert row["labels"] == [n for n in scores if scores[n] >= thresholds[n]]  # best first, over threshold
    test = metrics_of(run)["test"]
    again = scores_from([r["labels"] for r in splits["test"]], [r["labels"] for r in rows])
    for key, value in again.items():
        assert test[key] == pytest.approx(value, abs=1e-9), key


def test_pipeline_gives_predicts_scores(run, files, cli, tmp_path):
    from transformers import pipeline

    rows = predicted(cli, run, files["validation"], tmp_path)[:6]
    pipe = pipeline("text-classification", model=str(run / "model"), top_k=None)
    for row, piped in zip(rows, pipe([r["text"] for r in rows])):
        assert {p["label"]: p["score"] for p in piped} == pytest.approx(row["scores"], abs=1e-5)


def test_evaluate_of_the_run_equals_its_test_metrics(run, files, cli, tmp_path):
    out_file = tmp_path / "eval.json"
    code, _, err = cli("evaluate", run, "--data", files["test"], "--output", out_file)
    assert code == 0, err
    scored, test = json.loads(out_file.read_text(encoding="utf-8")), metrics_of(run)["test"]
    assert scored["thresholds"] == test["thresholds"]  # the model's, never tuned on the file
    for key in ("f1_micro", "f1_macro", "subset_accuracy", "hamming_loss", "loss", "samples"):
        assert scored[key] == pytest.approx(test[key], rel=1e-5, abs=1e-6), key


def test_card_and_plot(run):
    from ftkit.tasks import multilabel

    card = (run / "model" / "README.md").read_text(encoding="utf-8")
    assert "Tags a text with any" in card  # the label names too once card.py reads per_label (see the report)
    assert multilabel.describe(None, NAMES) == "Tags a text with any of: anger, joy, travel."
    assert "top_k=None" in card and "label column `labels`" in card
    assert (run / "plots" / "label_f1.png").is_file() or (run / "model" / "plots" / "label_f1.png").is_file()


def test_a_bare_model_folder_is_told_apart_from_a_single_label_classifier(run, tiny_models, tmp_path):
    from transformers import AutoConfig

    from ftkit.inference import family_of

    assert family_of(AutoConfig.from_pretrained(run / "model"), None) == "multi-label-classification"
    single = save_classifier(tiny_models["bert"], tmp_path / "single")
    assert family_of(AutoConfig.from_pretrained(single), None) == "sequence-classification"


def test_predict_on_the_bare_model_folder_uses_its_thresholds(run, cli):
    code, out, err = cli("predict", run / "model", "--text", "great paris the film")
    assert code == 0, err
    row = json.loads(out)
    assert row["labels"] == [n for n, s in row["scores"].items() if s >= model_config(run)["label_thresholds"][n]]


# ------------------------------------------------------------------------------ csv, pairs, settings


def test_csv_with_a_separator_tunes_per_label_with_positive_weights(tiny_models, csv_files, splits, tmp_path):
    out = tmp_path / "run"
    code = call(finetune(tiny_models["bert"], csv_files, out, "--label-column", "tags", "--label-separator", "|", "--epochs", "15",
                         "--class-weights", "balanced", "--set", "metrics.threshold=tune-per-label"))
    assert code == 0
    metrics = metrics_of(out)
    train = splits["train"]
    for name in NAMES:  # negatives / positives of each label in train
        positives = sum(name in r["labels"] for r in train)
        assert metrics["train"]["pos_weights"][name] == pytest.approx((len(train) - positives) / positives)
    assert model_config(out)["label_thresholds"] == metrics["validation"]["thresholds"] == metrics["test"]["thresholds"]
    assert metrics["test"]["f1_micro"] > 0.5


def test_pairs_with_a_fixed_threshold(tiny_models, files, cli, tmp_path):
    out = tmp_path / "run"
    code = call(finetune(tiny_models["bert"], files, out, "--text-pair-column", "reply", "--max-steps", "3", "--set", "metrics.threshold=0.3"))
    assert code == 0
    assert model_config(out)["label_thresholds"] == dict.fromkeys(NAMES, 0.3)
    assert metrics_of(out)["validation"]["thresholds"] == dict.fromkeys(NAMES, 0.3)  # nothing tuned
    rows = predicted(cli, out, files["test"], tmp_path)
    assert rows[0]["text_pair"] == json.loads(files["test"].read_text().splitlines()[0])["reply"]
    code, _, err = cli(*finetune(tiny_models["bert"], files, tmp_path / "no", "--text-pair-column", "answer"))
    assert code == 2 and "answer" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("value", ["2", "0", "best", "nan"])
def test_the_threshold_choice_is_validated(tiny_models, files, cli, tmp_path, value):
    code, _, err = cli(*finetune(tiny_models["bert"], files, tmp_path / "run", "--set", f"metrics.threshold={value}"))
    assert code == 2 and "--set metrics.threshold=" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("split", "label", "said"), [
    ("train", None, "None/NaN"),
    ("train", {"joy": 1}, "object"),
    ("train", [["joy"]], "a label inside the list is a list"),
    ("validation", ["joy", "sadness"], "'sadness'"),
])
def test_bad_labels_are_one_line_naming_the_row(tiny_models, files, splits, cli, tmp_path, split, label, said):
    rows = [dict(r) for r in splits[split]]
    rows[3]["labels"] = label
    bad = dict(files, **{split: write_jsonl(tmp_path / f"{split}.jsonl", rows)})
    code, _, err = cli(*finetune(tiny_models["bert"], bad, tmp_path / "run"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert said in err and f"{split}.jsonl" in err and "line/row 4" in err
