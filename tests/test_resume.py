"""Checkpoints and resume: a killed or stopped run, resumed, ends exactly where an
uninterrupted run ends (metrics.json and weights bit-identical on CPU); determinism.

Runs go through `python -m ftkit` in a subprocess so that they can really be killed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftkit import checkpoints

TIMING_KEYS = {"runtime_s", "samples_per_second", "eval_runtime_s"}
TOTAL_STEPS = 80  # 160 training rows / batch 8 * 4 epochs


def env() -> dict[str, str]:
    # One thread: the same arithmetic in every run, and no oversubscription on a small machine.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "FTKIT_DEBUG": ""}


def train_args(tiny_models, sentiment_files, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "ftkit", "finetune", "sentiment", "--model", str(tiny_models["bert"]),
        "--train", str(sentiment_files["train"]), "--validation", str(sentiment_files["validation"]),
        "--test", str(sentiment_files["test"]), "--epochs", "4", "--batch-size", "8", "--learning-rate", "3e-3",
        "--set", "train.logging_steps=1", "--output-dir", str(out), *extra,
    ]


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env(), capture_output=True, text=True, timeout=600)


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_step(proc: subprocess.Popen, log: Path, step: int) -> None:
    """Poll the run's log until it has logged `step` (one record per step)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if log.exists() and any(json.loads(l).get("step", 0) >= step for l in log.read_text().splitlines() if l.endswith("}")):
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before step {step}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.002)
    pytest.fail(f"step {step} never came")


def killed_at(args: list[str], out: Path, step: int) -> None:
    """Run, then SIGKILL the process once its log shows `step`."""
    proc = start(args)
    wait_for_step(proc, out / "log.jsonl", step)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL


def outcome(run_dir: Path) -> tuple[dict, dict]:
    """(metrics.json without timings, model weights)."""
    from safetensors.torch import load_file

    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["train"] = {k: v for k, v in metrics["train"].items() if k not in TIMING_KEYS}
    return metrics, load_file(str(run_dir / "model" / "model.safetensors"))


def assert_same(a: Path, b: Path) -> None:
    metrics_a, weights_a = outcome(a)
    metrics_b, weights_b = outcome(b)
    assert metrics_a == metrics_b
    assert weights_a.keys() == weights_b.keys()
    different = [k for k in weights_a if not bool((weights_a[k] == weights_b[k]).all())]
    assert not different, f"weights differ: {different}"
    log = lambda d: [{k: v for k, v in json.loads(l).items() if k not in TIMING_KEYS} for l in (d / "log.jsonl").read_text().splitlines()]  # noqa: E731
    assert log(a) == log(b)


@pytest.fixture(scope="module")
def reference(tiny_models, sentiment_files, tmp_path_factory) -> Path:
    """An uninterrupted run with the same seed, checkpointing as the interrupted ones do."""
    out = tmp_path_factory.mktemp("reference") / "run"
    done = run(train_args(tiny_models, sentiment_files, out, "--set", "train.checkpoint_every=5"))
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_same_seed_same_metrics_and_checkpoints_removed(reference, tiny_models, sentiment_files, tmp_path):
    """Determinism on CPU: same seed, same data -> identical metrics.json and weights; a finished
    run keeps model/ and drops its checkpoints. Checkpointing itself changes nothing."""
    again = tmp_path / "again"
    done = run(train_args(tiny_models, sentiment_files, again, "--set", "train.checkpoint_every=null"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same(reference, again)
    assert not (reference / "checkpoints").exists()
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.9  # it learned: the best model is a real one, not the initial weights


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(reference, tiny_models, sentiment_files, tmp_path):
    seed = int(os.environ.get("FTKIT_KILL_SEED", time.time_ns() % 10**6))
    kill_at = random.Random(seed).randint(6, TOTAL_STEPS - 30)  # margin: a busy machine polls late
    out = tmp_path / "run"
    args = train_args(tiny_models, sentiment_files, out, "--set", "train.checkpoint_every=5")
    killed_at(args, out, kill_at)
    assert not (out / "metrics.json").exists() and not (out / "model").exists()
    latest = checkpoints.latest(out)  # the kill may also have cut a checkpoint write (a step-N.tmp)
    assert latest is not None, f"seed {seed}: no complete checkpoint after a kill at step {kill_at}"
    cut = [p.name for p in (out / "checkpoints").glob("*.tmp")]

    resumed = run([*args, "--resume"])
    assert resumed.returncode == 0, f"seed {seed}: {resumed.stderr[-2000:]}"
    assert f"resuming from {latest}" in " ".join(resumed.stderr.split())
    print(f"killed near step {kill_at} (seed {seed}); resumed from {latest.name}; cut writes: {cut}")
    assert_same(reference, out)


def test_kill_after_an_epoch_end_evaluation_resumes_without_a_second_one(reference, tiny_models, sentiment_files, tmp_path):
    """step-20 is saved before epoch 1's evaluation at step 20; a kill after that evaluation
    resumes from step-20 and evaluates again: log.jsonl must hold that evaluation once."""
    out = tmp_path / "run"
    args = train_args(tiny_models, sentiment_files, out, "--set", "train.checkpoint_every=5")
    killed_at(args, out, 21)  # the log shows step 21: the evaluation at step 20 is written
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.endswith("}")]
    assert any(r["type"] == "eval" and r["step"] == 20 for r in records)
    assert checkpoints.latest(out) is not None
    resumed = run([*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same(reference, out)


def test_kill_during_a_checkpoint_write_uses_the_previous_one(reference, tiny_models, sentiment_files, tmp_path):
    """A kill mid-save leaves a `.tmp` folder (the rename never happened): it is ignored."""
    out = tmp_path / "run"
    args = train_args(tiny_models, sentiment_files, out, "--set", "train.checkpoint_every=5")
    killed_at(args, out, 33)
    root = out / "checkpoints"
    last = max(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    # What a kill inside save() leaves: a half-written next checkpoint and a half-written best model.
    half = root / f"step-{int(last.name.split('-')[1]) + 5}.tmp"
    shutil.copytree(last, half)
    (half / "trainer_state.json").unlink()
    (half / "optimizer.bin").write_bytes(b"\0" * 10)
    (root / "best-step-999.tmp").mkdir()
    (root / "best-step-999.tmp" / "model.safetensors").write_bytes(b"partial")

    resumed = run([*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {last}" in " ".join(resumed.stderr.split())
    assert_same(reference, out)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_checkpoint_and_exit_130(reference, tiny_models, sentiment_files, tmp_path, sig):
    out = tmp_path / "run"
    args = train_args(tiny_models, sentiment_files, out, "--set", "train.checkpoint_every=5")
    proc = start(args)
    wait_for_step(proc, out / "log.jsonl", 23)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == 130
    last = proc.stderr.read().strip().splitlines()[-1]
    assert last.startswith(f"stopped by {signal.Signals(sig).name} at step ") and "--resume" in last
    step = int(last.split(" at step ")[1].split(";")[0])
    assert 23 <= step < TOTAL_STEPS
    assert (out / "checkpoints" / f"step-{step}" / "trainer_state.json").is_file()  # saved at the step it stopped
    assert not (out / "metrics.json").exists()
    if sig == signal.SIGINT:  # resuming is the same path for both; once is enough
        resumed = run([*args, "--resume"])
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert_same(reference, out)


def test_resume_refusals(reference, tiny_models, sentiment_files, tmp_path, cli):
    """Each refusal: one line naming the folder and what to do."""
    base = [a for a in train_args(tiny_models, sentiment_files, reference)[3:]]  # without python -m ftkit
    code, _, err = cli(*base, "--resume")
    assert code == 2 and "finished" in err and "--overwrite" in err
    code, _, err = cli(*base, "--resume", "--overwrite")
    assert code == 2 and "one of them" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(*train_args(tiny_models, sentiment_files, empty)[3:], "--resume")
    assert code == 2 and "no complete checkpoint" in err and str(empty) in err

    # A stopped run resumed with other settings: refused, naming what changed.
    out = tmp_path / "run"
    args = train_args(tiny_models, sentiment_files, out, "--set", "train.checkpoint_every=5")
    killed_at(args, out, 7)
    code, _, err = cli(*args[3:], "--learning-rate", "1e-4", "--resume")
    assert code == 2 and "train.learning_rate" in err and "0.003" in err and len(err.strip().splitlines()) == 1
    # `--resume PATH` names the run folder (or one of its step-N checkpoints) explicitly.
    code, _, err = cli(*[a for a in args[3:]], "--resume", str(out / "checkpoints"), "--quiet")
    assert code == 2 and "no complete checkpoint" in err  # the checkpoints/ folder itself is neither
    checkpoint = min((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    resumed = run([*args, "--resume", str(checkpoint)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same(reference, out)


def test_keep_checkpoints_prunes_old_ones_but_keeps_the_best(tiny_models, sentiment_files, tmp_path):
    out = tmp_path / "run"
    args = train_args(tiny_models, sentiment_files, out, "--set", "train.checkpoint_every=3", "--set", "train.keep_checkpoints=1")
    killed_at(args, out, 50)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    steps = [n for n in names if n.startswith("step-")]
    assert len(steps) == 1, names
    state = checkpoints.read_state(out / "checkpoints" / steps[0])
    assert state["best_step"] is not None and f"best-step-{state['best_step']}" in names
    assert len(names) == 2, names  # older best models are gone too


def test_full_disk_while_saving_is_one_clear_line(tiny_models, sentiment_files, tmp_path, cli, monkeypatch):
    """ENOSPC while checkpointing or writing the result: exit 1, one line naming the folder; no
    half-written checkpoint or model left behind."""
    import errno

    import accelerate
    import transformers

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    common = ["finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"], "--max-steps", "4", "--quiet"]
    with monkeypatch.context() as m:
        m.setattr(accelerate.Accelerator, "save_state", full)
        code, _, err = cli(*common, "-o", tmp_path / "a", "--set", "train.checkpoint_every=2")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "cannot save a checkpoint (No space left on device)" in err and "checkpoint_every=null" in err
    assert not [*(tmp_path / "a" / "checkpoints").glob("*.tmp"), *(tmp_path / "a" / "checkpoints").glob("*.ftkit-tmp")] and not (tmp_path / "a" / "model").exists()

    def full_midway(self, folder, *args, **kwargs):  # the disk fills up after part of the weights
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_bytes(b"partial")
        full()

    with monkeypatch.context() as m:
        m.setattr(transformers.PreTrainedModel, "save_pretrained", full_midway)
        code, _, err = cli(*common, "-o", tmp_path / "b")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"{tmp_path / 'b'}: cannot write the finished run (No space left on device)" in err
    # It failed before its first checkpoint: the folder it made is removed, nothing half-written stays.
    assert not (tmp_path / "b").exists()
