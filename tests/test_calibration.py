"""Calibration (issue 18): the expected calibration error and reliability diagram of classification
runs, and --calibrate's temperature scaling, fitted on validation and folded into the saved head.

Two tiny runs on the same seed, one with --calibrate: the labels (accuracy, F1, confusion matrix)
are identical, the calibrated run's uncalibrated test ECE is the plain run's, predict and
pipeline() give softmax(logits / T), and a family with nothing to calibrate refuses the flag."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import call

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def finetune(model: Path, files: dict[str, Path], out: Path, *extra) -> list:
    return ["finetune", "sentiment", "--model", model, "--train", files["train"], "--validation", files["validation"], "--test", files["test"],
            "--epochs", "4", "--batch-size", "16", "--learning-rate", "3e-3", "--max-length", "32", "-o", out, "--quiet", *extra]


@pytest.fixture(scope="module")
def runs(tiny_models, sentiment_files, tmp_path_factory) -> dict[str, Path]:
    """{"plain": run, "calibrated": run}: the same training (same seed), --calibrate or not."""
    root = tmp_path_factory.mktemp("calibration")
    out = {"plain": root / "plain", "calibrated": root / "calibrated"}
    assert call(finetune(tiny_models["bert"], sentiment_files, out["plain"])) == 0
    assert call(finetune(tiny_models["bert"], sentiment_files, out["calibrated"], "--calibrate")) == 0
    return out


def metrics_of(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def predicted(cli, run: Path, data: Path, out_file: Path) -> list[dict]:
    code, _, err = cli("predict", run, data, "--output", out_file)
    assert code == 0, err
    return [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]


def test_ece_of_a_known_case():
    """Guo et al.'s ECE, by hand: 15 bins; confidences .9 (right), .9 (wrong) share the bin
    (.867, .933]: |0.5 - 0.9| * 2/4; .6 and .55 (both right) share (.533, .6]: |1 - .575| * 2/4."""
    from ftkit.metrics import calibration

    result = calibration([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.55, 0.45]], [0, 1, 1, 0])
    assert result["ece"] == pytest.approx(0.4 * 0.5 + 0.425 * 0.5)
    bins = result["reliability"]
    assert bins["count"] == [0] * 8 + [2] + [0] * 4 + [2, 0]
    assert bins["accuracy"][8] == 1.0 and bins["accuracy"][13] == 0.5 and bins["accuracy"][0] is None
    assert bins["confidence"][8] == pytest.approx(0.575) and bins["confidence"][13] == pytest.approx(0.9)
    assert calibration([[0.2, 0.8]] * 5, [1] * 4 + [0])["ece"] == pytest.approx(0.0)  # 80% right at 0.8


def test_the_fit_finds_a_known_temperature():
    """Labels drawn from softmax(z), logits given as 3z: the NLL is least at T = 3."""
    import torch

    from ftkit.tasks.calibration import fit_temperature

    generator = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 4, generator=generator)
    labels = torch.multinomial(z.softmax(-1), 1, generator=generator).squeeze(-1)
    assert fit_temperature(3 * z, labels) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(z, labels) == pytest.approx(1.0, rel=0.05)


def test_every_classification_run_reports_ece_and_draws_the_reliability_diagram(runs):
    plain = metrics_of(runs["plain"])
    for split in ("validation", "test"):
        assert 0 <= plain[split]["ece"] <= 1
        assert sum(plain[split]["reliability"]["count"]) == plain[split]["samples"]
        assert "ece_uncalibrated" not in plain[split]
    assert "calibration" not in plain["train"]
    assert "calibration_temperature" not in json.loads((runs["plain"] / "model" / "config.json").read_text())
    for run in runs.values():
        assert (run / "plots" / "reliability.png").stat().st_size > 1000


def test_calibrate_records_the_temperature_and_lowers_the_validation_nll(runs):
    m = metrics_of(runs["calibrated"])
    fitted = m["train"]["calibration"]
    t = fitted["temperature"]
    assert 0.05 <= t <= 20 and t != 1.0
    assert json.loads((runs["calibrated"] / "model" / "config.json").read_text())["calibration_temperature"] == pytest.approx(t)
    # the fit minimises NLL (not ECE): that is what must drop
    assert fitted["validation_nll_after"] <= fitted["validation_nll_before"]
    assert fitted["validation_samples"] == m["validation"]["samples"]
    assert fitted["validation_ece_before"] == pytest.approx(m["validation"]["ece"], abs=1e-6)  # the best model's, as validated
    assert 0 <= m["test"]["ece"] <= 1 and 0 <= m["test"]["ece_uncalibrated"] <= 1


def test_calibration_changes_no_label(runs):
    """Dividing the logits by T > 0 keeps their order: the same predictions, the same scores of
    them; the calibrated run's uncalibrated ECE is the plain run's ECE."""
    plain, calibrated = metrics_of(runs["plain"])["test"], metrics_of(runs["calibrated"])["test"]
    for key in ("accuracy", "f1", "precision", "recall", "confusion_matrix", "per_class"):
        assert calibrated[key] == plain[key], key
    assert calibrated["ece_uncalibrated"] == pytest.approx(plain["ece"], abs=1e-6)
    assert calibrated["ece"] != pytest.approx(plain["ece"], abs=1e-6)


def test_predict_and_pipeline_give_the_calibrated_scores(runs, sentiment_files, cli, tmp_path):
    """predict's score of the calibrated model is softmax(z / T) of the plain model's logits z:
    with two classes, sigmoid(margin / T), the margin being logit(p) of the plain model's score."""
    from transformers import pipeline

    t = metrics_of(runs["calibrated"])["train"]["calibration"]["temperature"]
    plain = predicted(cli, runs["plain"], sentiment_files["test"], tmp_path / "plain.jsonl")
    calibrated = predicted(cli, runs["calibrated"], sentiment_files["test"], tmp_path / "calibrated.jsonl")
    assert [r["label"] for r in calibrated] == [r["label"] for r in plain]
    expected = [1 / (1 + math.exp(-math.log(r["score"] / (1 - r["score"])) / t)) for r in plain]
    assert [r["score"] for r in calibrated] == pytest.approx(expected, abs=1e-5)
    pipe = pipeline("text-classification", model=str(runs["calibrated"] / "model"))
    texts = [r["text"] for r in calibrated[:4]]
    assert [out["score"] for out in pipe(texts)] == pytest.approx([r["score"] for r in calibrated[:4]], abs=1e-5)


def evaluated_ece(cli, run: Path, data: Path, out_file: Path) -> float:
    code, _, err = cli("evaluate", run, "--data", data, "--output", out_file)
    assert code == 0, err
    return json.loads(out_file.read_text(encoding="utf-8"))["ece"]


def test_the_saved_model_carries_the_temperature_lora_too(runs, tiny_models, sentiment_files, cli, tmp_path):
    """`ftkit evaluate` of the saved model (its folded head) scores the validation split as the fit
    said softmax(logits / T) would; under LoRA the head folded is the one the adapter saves."""
    fitted = metrics_of(runs["calibrated"])["train"]["calibration"]
    assert evaluated_ece(cli, runs["calibrated"], sentiment_files["validation"], tmp_path / "e.json") == pytest.approx(fitted["validation_ece_after"], abs=1e-6)
    lora = tmp_path / "lora"
    assert call(finetune(tiny_models["bert"], sentiment_files, lora, "--calibrate", "--lora")) == 0
    fitted = metrics_of(lora)["train"]["calibration"]
    assert json.loads((lora / "adapter" / "model_config.json").read_text())["calibration_temperature"] == pytest.approx(fitted["temperature"])
    assert evaluated_ece(cli, lora, sentiment_files["validation"], tmp_path / "lora.json") == pytest.approx(fitted["validation_ece_after"], abs=1e-6)
    assert fitted["validation_ece_after"] != pytest.approx(fitted["validation_ece_before"], abs=1e-6)


def test_calibrate_is_refused_where_there_is_nothing_to_calibrate(cli, tiny_models, sentiment_files):
    code, _, err = cli("finetune", "regression", "--model", tiny_models["bert"], "--train", sentiment_files["train"], "--calibrate")
    assert code != 0
    assert "--calibrate" in err and "regression" in err and len(err.strip().splitlines()) == 1
