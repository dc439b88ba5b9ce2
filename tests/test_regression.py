"""The regression family (issue 17): a number per text or text pair, trained through the real CLI
on a tiny BERT. The target scale is folded into the saved head (predict, evaluate and pipeline()
give the data's units), metrics are those of the predictions, pairs and csv read as the recipe
says, bad targets and settings are refused in one line, and a bare folder is told from a classifier."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import pytest
from conftest import FILLER, NEGATIVE, POSITIVE, call, save_classifier, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE, STEP = 100.0, 100.0  # targets 100..400: far from a new head's ~0, so an unfolded scale shows


def sentence(rng: random.Random, positives: int) -> str:
    words = rng.sample(FILLER, rng.randint(2, 5)) + rng.sample(POSITIVE, positives)
    rng.shuffle(words)
    return " ".join(words)


def rows_of(seed: int, n: int) -> list[dict]:
    """{"text", "label"}: the label follows from the number of positive words (learnable)."""
    rng = random.Random(seed)
    return [{"text": sentence(rng, i % 4), "label": BASE + STEP * (i % 4)} for i in range(n)]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("regression-data")
    return {split: write_jsonl(root / f"{split}.jsonl", rows_of(seed, n)) for split, seed, n in (("train", 1, 48), ("validation", 2, 16), ("test", 3, 16))}


def finetune(model: Path, files: dict[str, Path], out: Path, *extra) -> list:
    """The shipped recipe on one text per row (the recipe reads pairs: the pair column is unset)."""
    return ["finetune", "regression", "--model", model, "--train", files["train"], "--validation", files["validation"], "--test", files["test"],
            "--text-column", "text", "--set", "data.text_pair_column=null", "--batch-size", "4", "--learning-rate", "3e-3",
            "--set", "train.warmup_ratio=0", "--max-length", "32", "-o", out, "--quiet", *extra]


@pytest.fixture(scope="module")
def run(tiny_models, files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("regression-run") / "run"
    assert call(finetune(tiny_models["bert"], files, out, "--epochs", "10")) == 0
    return out


def metrics_of(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def targets_of(path: Path, column: str = "label") -> list[float]:
    if path.suffix == ".csv":
        return [float(r[column]) for r in csv.DictReader(path.open(encoding="utf-8"))]
    return [json.loads(line)[column] for line in path.read_text(encoding="utf-8").splitlines()]


def predicted(cli, model: Path, data: Path, tmp_path: Path, *extra) -> list[dict]:
    out_file = tmp_path / f"pred-{model.name}.jsonl"
    code, _, err = cli("predict", model, data, "--output", out_file, *extra)
    assert code == 0, err
    return [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]


def recomputed(scores: list[float], true: list[float]) -> dict[str, float]:
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    p, t = np.array(scores), np.array(true)
    mse = float(np.mean((p - t) ** 2))
    return {"mse": mse, "rmse": mse**0.5, "mae": float(np.mean(np.abs(p - t))),
            "pearson": float(pearsonr(p, t)[0]), "spearman": float(spearmanr(p, t)[0])}


def assert_metrics_match(split: dict, rows: list[dict], true: list[float]) -> None:
    expected = recomputed([r["score"] for r in rows], true)
    assert split["samples"] == len(true)
    for key, value in expected.items():
        assert split[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


# ------------------------------------------------------------------------------ train, metrics, scale


def test_metrics_are_those_of_the_predictions_and_the_model_learned(run, files, cli, tmp_path):
    import numpy as np

    test = metrics_of(run)["test"]
    rows = predicted(cli, run, files["test"], tmp_path, "--batch-size", "5")
    assert all(set(r) == {"text", "score"} and isinstance(r["score"], float) for r in rows)
    true = targets_of(files["test"])
    assert_metrics_match(test, rows, true)
    assert test["mse"] < float(np.var(true)) and test["pearson"] > 0.5  # better than predicting the mean


def test_the_target_scale_is_folded_into_the_saved_head(run, files, cli, tmp_path):
    """Trained on standardised targets, yet the saved model outputs the data's units: its raw
    output, predict and pipeline() (function_to_apply none, and by default) agree, in 100..400."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    train = np.array(targets_of(files["train"]))
    scale = metrics_of(run)["train"]["target_scale"]
    assert scale == pytest.approx({"mean": float(train.mean()), "std": float(train.std())})
    model = AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    assert model.config.target_scale == pytest.approx(scale)
    assert model.config.problem_type == "regression" and model.config.num_labels == 1
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    texts = [json.loads(line)["text"] for line in files["validation"].read_text(encoding="utf-8").splitlines()]
    with torch.inference_mode():
        raw = [model(**tokenizer(t, truncation=True, max_length=32, return_tensors="pt")).logits.item() for t in texts]
    assert abs(float(np.mean(raw)) - float(np.mean(targets_of(files["validation"])))) < STEP  # data units: an unfolded head gives ~0
    rows = predicted(cli, run, files["validation"], tmp_path)
    assert [r["score"] for r in rows] == pytest.approx(raw, abs=1e-3)
    for pipe in (pipeline("text-classification", model=str(run / "model"), function_to_apply="none"),
                 pipeline("text-classification", model=str(run / "model"))):
        assert [r["score"] for r in pipe(texts)] == pytest.approx(raw, abs=1e-3)
    # the validation loss is the MSE on the scale trained on; mse is in the data's units
    validation = metrics_of(run)["validation"]
    assert validation["loss"] == pytest.approx(validation["mse"] / scale["std"] ** 2)


def test_evaluate_gives_the_test_metrics(run, files, cli, tmp_path):
    out_file = tmp_path / "eval.json"
    code, _, err = cli("evaluate", run, "--data", files["test"], "--output", out_file)
    assert code == 0, err
    scored, test = json.loads(out_file.read_text(encoding="utf-8")), metrics_of(run)["test"]
    for key in ("samples", "mse", "rmse", "mae", "pearson", "spearman", "loss"):
        assert scored[key] == pytest.approx(test[key], rel=1e-4, abs=1e-6), key


def test_the_scatter_plot_is_drawn_from_the_test_predictions(run, files):
    test = metrics_of(run)["test"]
    assert test["scatter"]["true"] == targets_of(files["test"]) and len(test["scatter"]["predicted"]) == test["samples"]
    for folder in (run / "plots", run / "model" / "plots"):
        png = folder / "regression_scatter.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (run / "model" / "README.md").read_text(encoding="utf-8")
    assert "plots/regression_scatter.png" in card and "Predicts a number (`label`) from a text." in card
    assert 'function_to_apply="none"' in card and "pearsonr" in card


def test_a_bare_regression_folder_is_told_from_a_classifier(run, tiny_models, files, cli, tmp_path):
    from ftkit.inference import family_of
    from ftkit.models import load_model_config

    bare = shutil.copytree(run / "model", tmp_path / "bare")  # no run config beside it
    classifier = save_classifier(tiny_models["bert"], tmp_path / "classifier")
    assert family_of(load_model_config(str(bare)), None) == "regression"
    assert family_of(load_model_config(str(classifier)), None) == "sequence-classification"
    from_bare = predicted(cli, bare, files["test"], tmp_path)
    from_run = predicted(cli, run, files["test"], tmp_path)
    assert [r["score"] for r in from_bare] == pytest.approx([r["score"] for r in from_run], abs=1e-4)


# ------------------------------------------------------------------------------ pairs, csv, no scaling


def pair_rows(seed: int, n: int) -> list[dict]:
    """sentence1 is noise; the label counts the positive words of sentence2, spelled as csv
    numbers are (" 2 " with spaces, "3.0")."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = i % 4
        noise = " ".join(rng.sample(FILLER + NEGATIVE, 4))
        rows.append({"sentence1": noise, "sentence2": sentence(rng, k), "label": f" {k} " if i % 3 else f"{k}.0"})
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pairs")
    return {split: write_csv(root / f"{split}.csv", pair_rows(seed, n)) for split, seed, n in (("train", 4, 48), ("validation", 5, 12), ("test", 6, 12))}


@pytest.fixture(scope="module")
def pair_run(tiny_models, pair_files, tmp_path_factory) -> Path:
    """The shipped recipe as it is (sentence1, sentence2, label) on csv files."""
    out = tmp_path_factory.mktemp("pair-run") / "run"
    assert call(["finetune", "regression", "--model", tiny_models["bert"], "--train", pair_files["train"], "--validation", pair_files["validation"],
                 "--test", pair_files["test"], "--max-steps", "24", "--batch-size", "8", "--learning-rate", "3e-3", "--max-length", "32",
                 "-o", out, "--quiet"]) == 0
    return out


def test_pairs_from_csv_train_predict_and_match_the_pipeline(pair_run, pair_files, cli, tmp_path):
    from transformers import pipeline

    assert "text_pair_column: sentence2" in (pair_run / "config.yaml").read_text()
    rows = predicted(cli, pair_run, pair_files["test"], tmp_path)
    table = list(csv.DictReader(pair_files["test"].open(encoding="utf-8")))
    assert [(r["text"], r["text_pair"]) for r in rows] == [(t["sentence1"], t["sentence2"]) for t in table]
    assert_metrics_match(metrics_of(pair_run)["test"], rows, targets_of(pair_files["test"]))
    pipe = pipeline("text-classification", model=str(pair_run / "model"), function_to_apply="none")
    piped = [pipe({"text": t["sentence1"], "text_pair": t["sentence2"]}) for t in table[:4]]
    piped = [p[0] if isinstance(p, list) else p for p in piped]
    assert [p["score"] for p in piped] == pytest.approx([r["score"] for r in rows[:4]], abs=1e-4)
    card = (pair_run / "model" / "README.md").read_text(encoding="utf-8")
    assert "from a text pair" in card and "text pair column `sentence2`" in card


def test_a_missing_pair_column_is_refused_before_training(tiny_models, pair_files, cli, tmp_path):
    code, out, err = cli("finetune", "regression", "--model", tiny_models["bert"], "--train", pair_files["train"],
                         "--text-pair-column", "reply", "--max-steps", "1", "-o", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "'reply'" in err, err
    assert not (tmp_path / "run").exists()


def test_target_scaling_none_trains_on_the_raw_targets(tiny_models, files, cli, tmp_path):
    from transformers import AutoConfig

    small = {s: write_jsonl(tmp_path / f"{s}.jsonl", [{**r, "label": (r["label"] - BASE) / STEP} for r in rows_of(seed, 16)])
             for s, seed in (("train", 1), ("validation", 2), ("test", 3))}
    out = tmp_path / "raw"
    code, _, err = cli(*finetune(tiny_models["bert"], small, out, "--max-steps", "8", "--set", "train.target_scaling=none"))
    assert code == 0, err
    assert "target_scale" not in metrics_of(out)["train"] and AutoConfig.from_pretrained(out / "model").target_scale is None
    test = metrics_of(out)["test"]
    assert test["loss"] == pytest.approx(test["mse"])  # no scale: the loss is in the data's units
    assert_metrics_match(test, predicted(cli, out, small["test"], tmp_path), targets_of(small["test"]))


def test_lora_folds_the_scale_into_the_head_it_trains(tiny_models, files, cli, tmp_path):
    """Under LoRA the head is PEFT's modules_to_save copy: the one folded; adapter and merged model agree."""
    import numpy as np

    out = tmp_path / "lora"
    code, _, err = cli(*finetune(tiny_models["bert"], files, out, "--max-steps", "12", "--lora", "--merge", "--lora-r", "4", "--lora-dropout", "0.0"))
    assert code == 0, err
    from_adapter = predicted(cli, out / "adapter", files["test"], tmp_path)
    from_model = predicted(cli, out, files["test"], tmp_path)
    scores = [r["score"] for r in from_adapter]
    assert scores == pytest.approx([r["score"] for r in from_model], abs=1e-3)
    assert abs(float(np.mean(scores)) - float(np.mean(targets_of(files["test"])))) < STEP  # data units, not ~0
    assert_metrics_match(metrics_of(out)["test"], from_model, targets_of(files["test"]))


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("value", ["abc", "", None, True, [1.0], {"v": 1}, "nan", "inf", "1,5"])
def test_a_bad_target_is_one_line_naming_its_row(value, tiny_models, files, cli, tmp_path):
    rows = rows_of(1, 8)
    rows[2]["label"] = value
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    code, out, err = cli("finetune", "regression", "--model", tiny_models["bert"], "--train", train, "--text-column", "text",
                         "--set", "data.text_pair_column=null", "--max-steps", "1", "-o", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "line/row 3" in err and "regression needs one number per row; check --label-column" in err
    assert not (tmp_path / "run").exists()


def test_equal_targets_are_refused(tiny_models, cli, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{**r, "label": 2.5} for r in rows_of(1, 8)])
    code, _, err = cli("finetune", "regression", "--model", tiny_models["bert"], "--train", train, "--text-column", "text",
                       "--set", "data.text_pair_column=null", "--max-steps", "1", "-o", tmp_path / "run")
    assert code == 2 and "every training target is 2.5" in err, err


@pytest.mark.parametrize(("extra", "message"), [
    (["--set", "data.labels=[low,high]"], "'data.labels' names classes"),
    (["--class-weights", "balanced"], "'train.class_weights' applies to"),
    (["--set", "metrics.primary=mse"], "set --set metrics.greater_is_better=false"),
    (["--set", "metrics.primary=accuracy"], "metric 'accuracy' is not reported for regression. Metrics available: mse, rmse, mae, pearson, spearman"),
])
def test_settings_that_do_not_fit_are_refused(extra, message, tiny_models, files, cli, tmp_path):
    code, _, err = cli(*finetune(tiny_models["bert"], files, tmp_path / "run", "--max-steps", "1", *extra))
    assert code == 2 and message in err, err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ the pieces


def test_targets_read_numbers_however_spelled():
    from ftkit.tasks.regression import target

    assert [target(v, "f", 1) for v in (3, 2.5, " 2 ", "3.5e1", "-1")] == [3.0, 2.5, 2.0, 35.0, -1.0]


def test_constant_predictions_correlate_zero_not_nan():
    from ftkit.tasks.regression import scores

    result = scores([1.0, 1.0, 1.0], [0.0, 1.0, 2.0])
    assert result["pearson"] == result["spearman"] == 0.0 and result["mse"] == pytest.approx(2 / 3)


def test_finalize_folds_the_scale_and_refuses_an_unclear_head():
    import torch

    from ftkit.errors import FtkitError
    from ftkit.tasks.family import Prepared
    from ftkit.tasks.regression import TargetScale, finalize

    class Head(torch.nn.Module):
        def __init__(self, heads: int) -> None:
            super().__init__()
            self.config = type("Config", (), {})()
            self.body = torch.nn.Linear(3, 4)
            self.heads = torch.nn.ModuleList(torch.nn.Linear(4, 1) for _ in range(heads))

        def forward(self, x):
            return self.heads[0](self.body(x))

    torch.manual_seed(0)
    model, x = Head(1), torch.randn(5, 3)
    prepared = Prepared({}, extra=TargetScale(250.0, 100.0, in_model=False))
    before = model(x).detach() * 100.0 + 250.0
    assert finalize(model, prepared, None, {}) == {"target_scale": {"mean": 250.0, "std": 100.0}}
    assert torch.allclose(model(x), before, atol=1e-4) and prepared.extra.in_model
    assert finalize(model, prepared, None, {}) == {}  # folded once only
    with pytest.raises(FtkitError, match="2 single-output linear layers.*--set train.target_scaling=none"):
        finalize(Head(2), Prepared({}, extra=TargetScale(1.0, 2.0, in_model=False)), None, {})
