"""Early stopping, class weights and trackers, through the real CLI on tiny models."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest
import yaml

from conftest import make_sentence, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def data_args(files: dict[str, Path]) -> list:
    return ["--train", files["train"], "--validation", files["validation"], "--test", files["test"]]


def records(run: Path, kind: str, split: str | None = None) -> list[dict]:
    out = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r for r in out if r["type"] == kind and (split is None or r.get("split") == split)]


# ------------------------------------------------------------------------------ early stopping

PLATEAU = ["--max-steps", "40", "--batch-size", "16", "--set", "train.eval_steps=2", "--set", "train.logging_steps=2", "--quiet"]


def test_early_stopping_stops_after_patience_and_keeps_the_schedule(tiny_models, sentiment_files, cli, tmp_path):
    """A learning rate too small to change any prediction: the metric never improves after the
    first evaluation, so patience 2 stops at the third. Up to there, every logged loss and
    learning rate equals a run without early stopping: same schedule, same optimization."""
    model = tiny_models["bert"]
    args = ["finetune", "sentiment", "--model", model, *data_args(sentiment_files), "--learning-rate", "1e-9", *PLATEAU]
    code, _, err = cli(*args, "-o", tmp_path / "stopped", "--early-stopping-patience", "2")
    assert code == 0, err
    code, _, err = cli(*args, "-o", tmp_path / "full")
    assert code == 0, err
    stopped = json.loads((tmp_path / "stopped" / "metrics.json").read_text())
    assert stopped["train"]["stopped_early"] is True and stopped["train"]["steps"] == 6
    assert [r["step"] for r in records(tmp_path / "stopped", "eval", "validation")] == [2, 4, 6]
    assert stopped["validation"]["step"] == 2  # the first evaluation stayed the best
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert full["train"]["steps"] == 40 and "stopped_early" not in full["train"]
    def schedule(run: Path) -> list[tuple]:  # what was optimized: step, loss, learning rate (not speed)
        return [(r["step"], r["epoch"], r["loss"], r["learning_rate"]) for r in records(run, "train")]

    assert schedule(tmp_path / "stopped") == schedule(tmp_path / "full")[:3]


def test_early_stopping_restores_the_best_model(tiny_models, sentiment_files, cli, tmp_path):
    """Patience 1 on a learning run: it stops at the first evaluation that is not better, and
    the saved model scores what the best evaluation scored."""
    run = tmp_path / "run"
    code, _, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], *data_args(sentiment_files), "-o", run,
                       "--learning-rate", "3e-3", *PLATEAU, "--early-stopping-patience", "1")
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    evals = records(run, "eval", "validation")
    values = [e["accuracy"] for e in evals]
    assert metrics["train"]["stopped_early"] and metrics["train"]["steps"] == evals[-1]["step"] < 40
    assert values[-1] <= max(values[:-1]) and all(b > a for a, b in zip(values[:-2], values[1:-1]))  # stopped at the first stall
    assert metrics["validation"]["accuracy"] == max(values)
    code, _, err = cli("evaluate", run, "--data", sentiment_files["validation"], "--output", tmp_path / "val.json")
    assert code == 0, err
    assert json.loads((tmp_path / "val.json").read_text())["accuracy"] == metrics["validation"]["accuracy"]


# ------------------------------------------------------------------------------ class weights


@pytest.fixture(scope="module")
def imbalanced_files(tmp_path_factory) -> dict[str, Path]:
    """Nine negative reviews to each positive one (like ham and spam)."""
    root = tmp_path_factory.mktemp("imbalanced")
    rng = random.Random(2)
    files = {}
    for split, n in (("train", 160), ("validation", 40), ("test", 40)):
        labels = ["positive" if i % 10 == 0 else "negative" for i in range(n)]
        files[split] = write_jsonl(root / f"{split}.jsonl", [{"text": make_sentence(rng, label), "label": label} for label in labels])
    return files


WEIGHTS = ["--max-steps", "6", "--batch-size", "16", "--learning-rate", "3e-3", "--set", "train.logging_steps=1", "--quiet"]


def test_balanced_class_weights_are_sklearns(tiny_models, imbalanced_files, cli, tmp_path):
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    base = ["finetune", "sentiment", "--model", tiny_models["bert"], *data_args(imbalanced_files), *WEIGHTS]
    code, _, err = cli(*base, "-o", tmp_path / "weighted", "--class-weights", "balanced")
    assert code == 0, err
    code, _, err = cli(*base, "-o", tmp_path / "plain")
    assert code == 0, err
    labels = [json.loads(line)["label"] for line in imbalanced_files["train"].read_text().splitlines()]
    expected = compute_class_weight("balanced", classes=np.array(["negative", "positive"]), y=np.array(labels))
    weights = json.loads((tmp_path / "weighted" / "metrics.json").read_text())["train"]["class_weights"]
    assert weights == pytest.approx({"negative": expected[0], "positive": expected[1]}, rel=1e-12)
    assert weights["positive"] == pytest.approx(5.0) and weights["negative"] == pytest.approx(160 / 288)
    weighted, plain = records(tmp_path / "weighted", "train"), records(tmp_path / "plain", "train")
    assert weighted[0]["loss"] != pytest.approx(plain[0]["loss"], abs=1e-4), "the weights change the loss from step 1"
    assert yaml.safe_load((tmp_path / "weighted" / "config.yaml").read_text())["train"]["class_weights"] == "balanced"


def test_class_weights_on_balanced_data_change_nothing(tiny_models, sentiment_files, cli, tmp_path):
    """Both classes equally common: every weight is 1, and the weighted loss is the plain one."""
    base = ["finetune", "sentiment", "--model", tiny_models["bert"], *data_args(sentiment_files), *WEIGHTS]
    code, _, err = cli(*base, "-o", tmp_path / "weighted", "--class-weights", "balanced")
    assert code == 0, err
    code, _, err = cli(*base, "-o", tmp_path / "plain")
    assert code == 0, err
    assert json.loads((tmp_path / "weighted" / "metrics.json").read_text())["train"]["class_weights"] == {"negative": 1.0, "positive": 1.0}
    weighted, plain = records(tmp_path / "weighted", "train"), records(tmp_path / "plain", "train")
    assert [r["step"] for r in weighted] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(weighted, plain):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_class_weights_only_for_classification(tiny_models, ner_files, cli, tmp_path):
    code, out, err = cli("finetune", "ner", "--model", tiny_models["bert"], *data_args(ner_files), "-o", tmp_path / "run", "--class-weights", "balanced")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "'train.class_weights' applies to sequence-classification" in err and not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ trackers


@pytest.fixture(scope="module")
def tensorboard_run(tiny_models, sentiment_files, tmp_path_factory) -> Path:
    from ftkit.cli import main

    run = tmp_path_factory.mktemp("tb") / "run"
    try:
        main([str(a) for a in ("finetune", "sentiment", "--model", tiny_models["bert"], *data_args(sentiment_files), "-o", run,
                               "--epochs", "2", "--batch-size", "16", "--learning-rate", "3e-3", "--report-to", "tensorboard",
                               "--set", "train.logging_steps=2", "--quiet")])
    except SystemExit as exit_:
        assert exit_.code in (0, None)
    return run


def test_tensorboard_logs_what_log_jsonl_holds(tensorboard_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tensorboard_run / "tensorboard" / "sentiment"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "validation/accuracy", "validation/per_class.positive.f1", "test/accuracy"} <= tags
    train = records(tensorboard_run, "train")
    logged = events.Scalars("train/loss")
    assert [e.step for e in logged] == [r["step"] for r in train] == list(range(2, 21, 2))
    assert [e.value for e in logged] == pytest.approx([r["loss"] for r in train], rel=1e-6)
    assert [e.value for e in events.Scalars("train/learning_rate")] == pytest.approx([r["learning_rate"] for r in train], rel=1e-6)
    evals = records(tensorboard_run, "eval", "validation")
    assert [(e.step, e.value) for e in events.Scalars("validation/accuracy")] == [(r["step"], pytest.approx(r["accuracy"])) for r in evals]
    test = json.loads((tensorboard_run / "metrics.json").read_text())["test"]
    assert events.Scalars("test/accuracy")[0].value == pytest.approx(test["accuracy"])
    hparams = yaml.safe_load(next((tensorboard_run / "tensorboard" / "sentiment").glob("*/hparams.yml")).read_text())
    assert hparams["train.learning_rate"] == 3e-3 and hparams["train.report_to"] == "['tensorboard']"


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_missing_tracker_package_is_named(tiny_models, sentiment_files, cli, tmp_path):
    code, out, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], *data_args(sentiment_files), "-o", tmp_path / "run", "--report-to", "wandb")
    assert code == 2 and out == "" and err.strip() == "error: --report-to wandb: the wandb package is not installed; pip install wandb (or drop --report-to wandb)"
    assert not (tmp_path / "run").exists()


def test_unknown_tracker_lists_the_choices(tiny_models, sentiment_files, cli, tmp_path):
    code, out, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], *data_args(sentiment_files), "-o", tmp_path / "run", "--report-to", "tensorbored")
    assert code == 2 and "'train.report_to[0]' must be one of none, tensorboard, wandb, mlflow" in err and "tensorboard" in err
