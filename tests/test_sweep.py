"""`ftkit sweep`: trials as run folders under one parent, pruning, a sweep continued after an
interruption (the running trial resumes from its checkpoint), best.yaml rerunnable, and a bad
search space refused in one line before any training. One sweep is shared by the module.

The sweep's metric is `samples` (the validation rows scored) and data.max_eval_samples is
searched: a trial's value is then known before it trains, so which trial is pruned does not
hang on what a tiny random model happens to learn. Optuna's TPE sampler, seeded by train.seed,
draws 24 rows for trial-000 and 8 for trial-001 and trial-002 (the continued sweep's).
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
from pathlib import Path

import pytest
import yaml

from tests.conftest import call

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def recipe(folder: Path, tiny_models, sentiment_files, **sweep) -> Path:
    """A tiny sentiment recipe with a sweep: section; `sweep` replaces its keys."""
    data = {
        "name": "tiny-sweep", "task": "sequence-classification", "model": str(tiny_models["bert"]),
        "data": {"train": str(sentiment_files["train"]), "validation": str(sentiment_files["validation"]),
                 "labels": ["negative", "positive"], "max_train_samples": 32},
        # a checkpoint every step: the interrupted trial has one before its first evaluation
        "train": {"epochs": 2, "batch_size": 8, "keep_checkpoints": 1},
        "metrics": {"primary": "samples"},  # more rows scored is "better": known before training
        "sweep": {"trials": 3, "startup_trials": 1, "space": {
            "data.max_eval_samples": {"choices": [8, 24]},
            "train.learning_rate": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
        }, **sweep},
    }
    path = folder / "tiny-sweep.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path



def run(*args) -> tuple[int, str, str]:
    """`ftkit ARGS` in-process (module fixtures cannot use capsys): (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = call(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tiny_models, sentiment_files):
    """A sweep of 2 trials; continued to 3 with trial-002 interrupted (Ctrl-C) right after its first
    checkpoint, before any evaluation; then continued again, to the end."""
    from ftkit.loop import Run

    root = tmp_path_factory.mktemp("sweep")
    path, parent = recipe(root, tiny_models, sentiment_files), root / "sweep"
    first = run("sweep", path, "--trials", "2", "-o", parent, "--quiet")
    assert first[0] == 0, first[2]
    before = json.loads((parent / "sweep.json").read_text())
    saving = Run.checkpoint

    def checkpoint_then_ctrl_c(self):
        saved = saving(self)
        if self.out.name == "trial-002":
            signal.raise_signal(signal.SIGINT)  # as Ctrl-C: the loop stops at this step
        return saved

    # every 2 steps: trial-002 has a checkpoint before its first evaluation (4 steps an epoch);
    # checkpoint_every may change between the parts of a sweep, as for --resume
    more = ("--trials", "3", "-o", parent, "--set", "train.checkpoint_every=2", "--quiet")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Run, "checkpoint", checkpoint_then_ctrl_c)
        stopped = run("sweep", path, *more)
    interrupted = json.loads((parent / "sweep.json").read_text())
    left = sorted(p.name for p in (parent / "trial-002").iterdir())
    last = run("sweep", path, *more[:-1])  # not --quiet: it says what it resumes
    assert last[0] == 0, last[2]
    return {"parent": parent, "recipe": path, "first": first, "before": before, "stopped": stopped,
            "interrupted": interrupted, "left": left, "last": last, "summary": json.loads((parent / "sweep.json").read_text())}


def states(summary: dict) -> dict[str, str]:
    return {t["trial"]: t["state"] for t in summary["trials"]}


def test_each_trial_is_a_finished_run_folder(swept):
    parent, summary = swept["parent"], swept["summary"]
    assert sorted(p.name for p in parent.iterdir()) == ["best.yaml", "sweep.journal", "sweep.json", "sweep.yaml", "trial-000", "trial-001", "trial-002"]
    assert states(summary) == {"trial-000": "complete", "trial-001": "pruned", "trial-002": "pruned"}
    for trial in summary["trials"]:
        folder = parent / trial["trial"]
        config = yaml.safe_load((folder / "config.yaml").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        assert (folder / "model" / "config.json").is_file() and not (folder / "checkpoints").exists()
        assert config["data"]["max_eval_samples"] == trial["params"]["data.max_eval_samples"]
        assert config["train"]["learning_rate"] == pytest.approx(trial["params"]["train.learning_rate"])
        assert metrics["validation"]["samples"] == trial["params"]["data.max_eval_samples"] == (24 if trial["state"] == "complete" else 8)
    assert summary["best"]["trial"] == "trial-000" and summary["best"]["value"] == 24


def test_a_trial_behind_the_median_stops_at_its_first_evaluation(swept):
    """Pruned like early stopping: one epoch of two, the run folder complete, metrics.json says so."""
    for name in ("trial-001", "trial-002"):
        metrics = json.loads((swept["parent"] / name / "metrics.json").read_text())
        assert metrics["train"]["pruned"] is True and metrics["train"]["pruned_at_epoch"] == 1
        assert metrics["train"]["steps"] == 4  # of 8
    log = (swept["parent"] / "trial-000" / "log.jsonl").read_text()
    assert json.loads((swept["parent"] / "trial-000" / "metrics.json").read_text())["train"]["steps"] == 8
    assert "pruned" not in log


def test_progress_says_which_trial_and_the_best_so_far(swept):
    code, out, err = swept["first"]
    assert "trial-000 (1/2) max_eval_samples=24 learning_rate=" in err and "-> samples 24.0000 (best: trial-000, 24.0000)" in err
    assert "trial-001 (2/2) max_eval_samples=8" in err and "-> pruned at epoch 1 (samples 8.0000) (best: trial-000, 24.0000)" in err
    rows = [line for line in out.splitlines() if line.startswith("│ trial-00")]
    assert len(rows) == 2 and "complete" in rows[0] and "pruned" in rows[1]
    assert f"its config: {swept['parent'] / 'best.yaml'}" in out.replace("\n", "")


def test_an_interrupted_sweep_continues_where_it_stopped(swept):
    code, _, err = swept["stopped"]
    parent = swept["parent"]
    assert code == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted in trial-002; 2 of 3 trial(s) finished") and "Continue the sweep with: ftkit sweep " in line
    assert line.endswith(f"--trials 3 -o {parent} --set train.checkpoint_every=2 --quiet"), line
    # the interrupted trial kept its checkpoint and stays running; the finished trials are untouched
    assert "checkpoints" in swept["left"] and "metrics.json" not in swept["left"]
    assert states(swept["interrupted"]) == {"trial-000": "complete", "trial-001": "pruned", "trial-002": "running"}
    assert swept["interrupted"]["trials"][:2] == swept["before"]["trials"]
    # continued: the same trial (same parameters, no trial-003) resumed from that checkpoint
    assert f"resuming from {parent / 'trial-002' / 'checkpoints' / 'step-2'}" in swept["last"][2]
    assert swept["summary"]["trials"][2]["params"] == swept["interrupted"]["trials"][2]["params"]


def test_best_yaml_trains_again_with_the_best_settings(swept, tmp_path):
    best = yaml.safe_load((swept["parent"] / "best.yaml").read_text())
    assert best["train"]["learning_rate"] == pytest.approx(swept["summary"]["best"]["params"]["train.learning_rate"])
    assert best["data"]["max_eval_samples"] == 24
    code, _, err = run("finetune", swept["parent"] / "best.yaml", "-o", tmp_path / "again", "--max-steps", "1", "--quiet")
    assert code == 0, err
    assert yaml.safe_load((tmp_path / "again" / "config.yaml").read_text())["train"]["learning_rate"] == best["train"]["learning_rate"]


def test_runs_compare_shows_the_trials(swept):
    code, out, err = run("runs", "compare", swept["parent"], "--split", "validation", "--markdown")
    assert code == 0, err
    header = out.splitlines()[0]
    assert all(name in header for name in ("trial-000", "trial-001", "trial-002")), header
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in out.splitlines()}
    assert rows["status"] == ["finished", "finished (pruned at epoch 1)", "finished (pruned at epoch 1) |"]
    assert rows["data.max_eval_samples"] == ["24", "8", "8 |"]  # a setting that differs


def test_a_continued_sweep_must_keep_its_settings(swept):
    code, _, err = run("sweep", swept["recipe"], "-o", swept["parent"], "--max-train-samples", "16")
    assert code == 2
    assert "the sweep was started with other settings (data.max_train_samples: 32 -> 16)" in err and "only --trials may change" in err
    code, _, err = run("sweep", swept["recipe"], "-o", swept["parent"], "--trials", "2")
    assert code == 0 and "3 trial(s) already finished (--trials 2); nothing to run" in err


@pytest.mark.parametrize("entry, expected", [
    ({"train.learnin_rate": {"low": 1e-5, "high": 1e-4}}, "'sweep.space.train.learnin_rate': 'train.learnin_rate' is not a config key a sweep can search. Did you mean 'train.learning_rate'?"),
    ({"train.learning_rate": {"low": 1e-4, "high": 1e-5}}, "low (0.0001) must be below high (1e-05)"),
    ({"train.warmup_ratio": {"low": 0.0, "high": 0.2, "log": True}}, "log: true needs low above 0, got 0.0"),
    ({"train.learning_rate": {"low": -1.0, "high": 1e-4}}, "'sweep.space.train.learning_rate.low' must be positive (the range of train.learning_rate), got -1.0"),
    ({"train.warmup_ratio": {"low": 0.0, "high": 1.5}}, "'sweep.space.train.warmup_ratio.high' must be below 1"),
    ({"train.epochs": {"low": 1, "high": 2.5}}, "'sweep.space.train.epochs.high' must be an integer, got 2.5"),
    ({"train.batch_size": {"choices": [16, "sixteen"]}}, "'sweep.space.train.batch_size.choices[1]' must be an integer"),
    ({"train.batch_size": {"choices": [16, 16]}}, "repeats a value"),
    ({"train.batch_size": {"choices": []}}, "is empty"),
    ({"train.mixed_precision": {"choices": ["no", "fp17"]}}, "must be one of auto, no, fp16, bf16; got 'fp17'"),
    ({"train.mixed_precision": {"low": 1, "high": 2}}, "train.mixed_precision is not a number, so it has no low/high"),
    ({"train.report_to": {"choices": ["none"]}}, "holds a list or mapping, which a sweep cannot search"),
    ({"train.learning_rate": {"low": 1e-5}}, "needs low and high"),
    ({"train.learning_rate": {"lo": 1e-5}}, "unknown key 'sweep.space.train.learning_rate.lo'"),
    ({"lora.merge": {"choices": [True]}}, "--merge merges a LoRA adapter into the model"),  # valid alone, not with the recipe
    ({}, "has no sweep.space to search"),
])
def test_a_bad_space_is_one_line_before_any_training(entry, expected, tmp_path, tiny_models, sentiment_files, cli):
    path = recipe(tmp_path, tiny_models, sentiment_files, space=entry)
    code, out, err = cli("sweep", str(path), "-o", str(tmp_path / "sw"))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize("code", [1, 2])
def test_a_failed_trial_is_recorded_and_the_sweep_goes_on_unless_the_input_is_bad(code, tmp_path, tiny_models, sentiment_files, cli, monkeypatch):
    """A run-time failure (exit 1: diverged at a high learning rate) fails that trial and the next
    one starts; bad input (exit 2) would fail every trial: the sweep stops, naming the trial."""
    from ftkit.cli import sweep
    from ftkit.errors import FtkitError

    def fail(config, out, checkpoint, quiet):
        raise FtkitError("training diverged: the validation loss is nan", exit_code=code) if code == 1 else FtkitError("bad column")

    monkeypatch.setattr(sweep, "train_trial", fail)
    parent = tmp_path / "sw"
    exit_code, _, err = cli("sweep", str(recipe(tmp_path, tiny_models, sentiment_files)), "--trials", "2", "-o", str(parent))
    summary = json.loads((parent / "sweep.json").read_text())
    assert exit_code == code and [t["state"] for t in summary["trials"]] == ["fail"] * (3 - code), err
    assert summary["trials"][0]["error"] == ("training diverged: the validation loss is nan" if code == 1 else "bad column")
    last = err.strip().splitlines()[-1]
    if code == 1:
        assert "trial-001 (2/2) max_eval_samples=8 learning_rate=0.0002051 -> failed: training diverged" in err
        assert last == f"error: no trial of the sweep completed; {parent / 'sweep.json'} holds each trial's error"
    else:
        assert last.startswith("error: trial-000 (1/2) max_eval_samples=24 learning_rate=0.002911: bad column")
