"""Failures during and after training are loud and clean, through the real entry point:

- a diverged run (non-finite loss, non-finite weights) stops with one line and saves no model;
- a write that fails in any library (disk full: a real small tmpfs, and each library's error
  type patched in) is one line naming the folder and the cause, exit 1, no `*.tmp` left, and the
  resume hint when a checkpoint exists;
- a tampered or damaged checkpoint is refused on --resume (exit 2), naming the file and field;
- an interrupt during the final save keeps the checkpoints, so --resume finishes the run.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftkit import checkpoints

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENOSPC = "No space left on device"


def finetune(tiny_models, sentiment_files, out: Path, *extra: object) -> list[object]:
    """A short run: 160 rows, batch 8 (20 steps an epoch), a checkpoint every 2 steps."""
    return ["finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"],
            "--validation", sentiment_files["validation"], "--text-column", "text", "--label-column", "label",
            "--batch-size", "8", "--max-steps", "4", "--set", "train.checkpoint_every=2", "-o", out, "--quiet", *extra]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def leftovers(out: Path) -> list[str]:
    """Half-written files: any `*.tmp` (a folder's temporary) or `*.ftkit-tmp` (a file's) under the run folder."""
    return [str(p.relative_to(out)) for pattern in ("*.tmp", "*.ftkit-tmp") for p in out.rglob(pattern)] if out.exists() else []


def temporary_of(path: Path, name: str) -> bool:
    """Whether `path` is the temporary a whole-file write of `name` fills (writes.fresh_file)."""
    return path.name.startswith(f".{name}.") and path.name.endswith(".ftkit-tmp")


def assert_no_result(out: Path) -> None:
    assert not (out / "model").exists() and not (out / "metrics.json").exists()
    assert leftovers(out) == []


# ---------------------------------------------------------------------------- divergence


def test_a_non_finite_loss_stops_at_the_first_bad_step(cli, tiny_models, sentiment_files, tmp_path):
    """--learning-rate 1e30: the loss turns NaN. The run stops at that step with one line (step,
    value, what to try), exit 1; no model/, no metrics.json, no checkpoint after the last good step."""
    out = tmp_path / "logged"
    code, _, err = cli(*finetune(tiny_models, sentiment_files, out, "--learning-rate", "1e30", "--max-steps", "12",
                                 "--set", "train.checkpoint_every=1", "--set", "train.logging_steps=1"))
    line = one_line(err)
    assert code == 1, err
    found = re.search(r"training diverged: the loss is (nan|inf|-inf) at step (\d+) of 12", line)
    assert found, line
    bad = int(found.group(2))
    assert "--learning-rate (this run: 1e+30)" in line and "train.max_grad_norm" in line
    assert_no_result(out)
    # every logged loss is finite, up to the step before the bad one; no checkpoint from it on
    losses = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["type"] == "train"]
    assert [r["step"] for r in losses] == list(range(1, bad)) and all(abs(r["loss"]) < 1e9 for r in losses)
    saved = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*"))
    assert saved and max(saved) == bad - 1

    # Checked on the device, read only where the loop waits anyway: without a logging step or a
    # checkpoint until the end, the same first bad step and value are reported.
    quiet = tmp_path / "quiet"
    code, _, err = cli(*finetune(tiny_models, sentiment_files, quiet, "--learning-rate", "1e30", "--max-steps", "12",
                                 "--set", "train.checkpoint_every=null", "--set", "train.logging_steps=100"))
    assert code == 1 and f"the loss is {found.group(1)} at step {bad} of 12" in one_line(err), err
    assert_no_result(quiet)


def test_a_non_finite_validation_loss_keeps_no_checkpoint_of_it(cli, tiny_models, sentiment_files, tmp_path, monkeypatch):
    """Finite weights whose outputs overflow (validation loss NaN): a diverged run, and the
    checkpoint of those very weights (saved just before the evaluation) is no way back."""
    import ftkit.train

    real = ftkit.train.run_evaluation

    def evaluation(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = real(*args, **kwargs)
        return {**result, "loss": float("nan")} if args[-1] == "validation" else result

    monkeypatch.setattr(ftkit.train, "run_evaluation", evaluation)
    out = tmp_path / "run"
    code, _, err = cli(*finetune(tiny_models, sentiment_files, out, "--set", "train.eval_steps=2"))
    line = one_line(err)
    assert code == 1 and "training diverged: the validation loss is nan at step 2 of 4" in line, err
    assert "nor any checkpoint from step 2 on" in line
    # step-2's checkpoint held the diverged weights: dropped, so nothing is left to resume and the
    # folder the run made is removed
    assert not out.exists()


def test_non_finite_final_weights_are_not_saved(cli, tiny_models, sentiment_files, tmp_path, monkeypatch):
    """Every loss finite, yet the last update leaves NaN weights: refused, not saved as a result."""
    import torch

    original, calls = torch.optim.AdamW.step, []

    def step(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        result = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 4:  # the last step: no forward pass sees these weights
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    out = tmp_path / "run"
    code, _, err = cli(*finetune(tiny_models, sentiment_files, out, "--set", "train.checkpoint_every=null"))
    line = one_line(err)
    # caught when the last step is evaluated, before it can become the best (or the final) model
    assert code == 1 and "training diverged: 1 weight tensor(s) at step 4 hold NaN or infinite values" in line, err
    assert "nothing of them is saved" in line and "--learning-rate" in line
    assert_no_result(out)


# ---------------------------------------------------------------------------- a real full disk


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted whatever happens; skipped where mounting is not permitted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN); the patched-error tests below cover the same paths")
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"cannot run mount: {err}")
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()[:200]}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def fill(disk: Path, leave: int) -> Path:
    """Take all of the disk's free space but `leave` bytes, as other files would."""
    st = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(st.f_bavail * st.f_frsize - leave, 0))
    return filler


def full_before(monkeypatch, owner: object, name: str, disk: Path, leave: int, call: int = 1) -> None:
    """Fill the disk right before the `call`-th call of owner.name: the real write then fails."""
    original, calls = getattr(owner, name), []

    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == call:
            fill(disk, leave)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


@pytest.mark.parametrize(("leave", "cause"), [
    (40_000, f"I/O error: {ENOSPC} (os error 28)"),  # the model's weights: safetensors
    (150_000, "torch.save failed, a full disk or an I/O error"),  # the weights fit, the optimizer (torch.save) does not
])
def test_disk_full_while_checkpointing(cli, tiny_models, sentiment_files, small_disk, monkeypatch, leave, cause):
    """step-2 is saved, then the disk fills up before step-4: one line naming the folder, the
    cause and how to resume; no .tmp; once space is freed, --resume finishes the run."""
    import accelerate

    out = small_disk / "run"
    args = finetune(tiny_models, sentiment_files, out, "--max-steps", "6")
    with monkeypatch.context() as m:
        full_before(m, accelerate.Accelerator, "save_state", small_disk, leave, call=2)
        code, _, err = cli(*args)
    line = one_line(err)
    assert code == 1, err
    assert line.startswith(f"error: {out / 'checkpoints'}: cannot save a checkpoint ({cause}") and "at step 4" in line, line
    assert f"add --resume {out} to the same command (continues from step-2)" in line
    assert_no_result(out)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2"]

    (small_disk / "filler").unlink()
    code, _, err = cli(*args, "--resume")
    assert code == 0, err
    assert (out / "model" / "model.safetensors").is_file() and not (out / "checkpoints").exists()


def test_disk_full_while_saving_the_model(cli, tiny_models, sentiment_files, small_disk, monkeypatch):
    """The final model/ does not fit: one line, exit 1, no model.tmp, the checkpoints kept for --resume."""
    from ftkit import artifacts

    out = small_disk / "run"
    args = finetune(tiny_models, sentiment_files, out)
    with monkeypatch.context() as m:
        full_before(m, artifacts, "_write_folder", small_disk, 40_000)
        code, _, err = cli(*args)
    line = one_line(err)
    assert code == 1, err
    assert line.startswith(f"error: {out}: cannot write the finished run (I/O error: {ENOSPC}"), line
    assert f"add --resume {out} to the same command (continues from step-2)" in line
    assert_no_result(out)
    assert checkpoints.latest(out) == out / "checkpoints" / "step-2"

    (small_disk / "filler").unlink()
    code, _, err = cli(*args, "--resume")
    assert code == 0, err
    assert (out / "model" / "model.safetensors").is_file() and not (out / "checkpoints").exists()


# ---------------------------------------------------------------------------- each library's write error


def partial_then(error: BaseException):
    """A write that puts part of a file down, then fails as the library does."""
    def write(obj, target, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        Path(target).write_bytes(b"partial")
        raise error

    return write


def _safetensors_error() -> Exception:
    from safetensors import SafetensorError

    return SafetensorError(f"Error while serializing: I/O error: {ENOSPC} (os error 28)")


@pytest.mark.parametrize(("patch", "cause"), [
    ("torch.save", "torch.save failed, a full disk or an I/O error: PytorchStreamWriter failed writing file data/0: file write failed"),
    ("safetensors", f"I/O error: {ENOSPC} (os error 28)"),
    ("state json", "Input/output error"),
])
def test_each_library_write_error_while_checkpointing(cli, tiny_models, sentiment_files, tmp_path, monkeypatch, patch, cause):
    import accelerate.utils.other
    import torch

    if patch == "torch.save":
        monkeypatch.setattr(torch, "save", partial_then(RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")))
    elif patch == "safetensors":
        monkeypatch.setattr(accelerate.utils.other, "safe_save_file", partial_then(_safetensors_error()))
    else:
        original = Path.write_text

        def write_text(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if temporary_of(self, "trainer_state.json"):
                original(self, "{")
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)
    out = tmp_path / "run"
    code, _, err = cli(*finetune(tiny_models, sentiment_files, out))
    line = one_line(err)
    assert code == 1, err
    assert f"{out / 'checkpoints'}: cannot save a checkpoint ({cause}) at step 2" in line, line
    assert "run again" in line and "checkpoint_every=null" in line  # no earlier checkpoint to resume from
    assert_no_result(out)
    assert not (out / "checkpoints").exists()


@pytest.mark.parametrize(("patch", "cause"), [
    ("model", f"I/O error: {ENOSPC} (os error 28)"),  # safetensors' SafetensorError
    ("tokenizer", f"{ENOSPC} (os error 28)"),  # tokenizers raises a plain Exception
    ("metrics.json", ENOSPC),
    ("config.yaml", ENOSPC),
])
def test_each_library_write_error_while_saving_the_result(cli, tiny_models, sentiment_files, tmp_path, monkeypatch, patch, cause):
    import transformers

    if patch == "model":
        def save_pretrained(self, folder, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "model.safetensors").write_bytes(b"partial")
            raise _safetensors_error()

        monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", save_pretrained)
    elif patch == "tokenizer":
        def save_tokenizer(self, folder, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            (Path(folder) / "tokenizer.json").write_text("{")
            raise Exception(f"{ENOSPC} (os error 28)")  # noqa: TRY002 - what tokenizers raises

        monkeypatch.setattr(transformers.PreTrainedTokenizerBase, "save_pretrained", save_tokenizer)
    else:
        original = Path.write_text

        def write_text(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if temporary_of(self, patch) and list(out.glob("plots/*.png")):  # the final save, not the run's start
                original(self, "{")
                raise OSError(errno.ENOSPC, ENOSPC)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)
    out = tmp_path / "run"
    code, _, err = cli(*finetune(tiny_models, sentiment_files, out))
    line = one_line(err)
    assert code == 1, err
    assert f"{out}: cannot write the finished run ({cause})" in line, line
    assert f"add --resume {out} to the same command (continues from step-2)" in line
    assert not (out / "metrics.json").exists() and leftovers(out) == []
    assert checkpoints.latest(out) is not None


def test_a_bug_while_saving_is_not_called_a_full_disk(cli, tiny_models, sentiment_files, tmp_path, monkeypatch):
    """Only library write errors are named write failures: ftkit's own bug stays an internal
    error (type and text, exit 1), and still leaves no half-written checkpoint."""
    import accelerate

    def buggy(self, folder, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        Path(folder).mkdir(parents=True, exist_ok=True)
        raise KeyError("optimizer")

    monkeypatch.setattr(accelerate.Accelerator, "save_state", buggy)
    out = tmp_path / "run"
    code, _, err = cli(*finetune(tiny_models, sentiment_files, out))
    line = one_line(err)
    assert code == 1 and "KeyError" in line and "cannot save" not in line and "space" not in line, line
    assert_no_result(out)


# ---------------------------------------------------------------------------- resume: an unfinished run


@pytest.fixture(scope="module")
def unfinished(tiny_models, sentiment_files, tmp_path_factory) -> Path:
    """A run interrupted by Ctrl-C while it saves its result: checkpoints step-2, step-4 (with
    best weights, evaluated every 2 steps), no model/. Tests copy it before changing it."""
    import transformers

    from ftkit.cli import main

    out = tmp_path_factory.mktemp("unfinished") / "run"

    def interrupted(self, folder, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as m:
        m.setattr(transformers.PreTrainedModel, "save_pretrained", interrupted)
        with pytest.raises(SystemExit) as exit_:
            main([str(a) for a in finetune(tiny_models, sentiment_files, out, "--max-steps", "6", "--set", "train.eval_steps=2")])
    assert exit_.value.code == 130
    return out


def copy_run(unfinished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(unfinished, out)
    return out


def resume_args(tiny_models, sentiment_files, out: Path) -> list[object]:
    return [*finetune(tiny_models, sentiment_files, out, "--max-steps", "6", "--set", "train.eval_steps=2"), "--resume"]


def test_an_interrupt_during_the_final_save_keeps_the_checkpoints(unfinished, cli, tiny_models, sentiment_files, tmp_path):
    """Ctrl-C while model/ is written: no model.tmp, the checkpoints stay, --resume finishes."""
    assert_no_result(unfinished)
    assert checkpoints.latest(unfinished) == unfinished / "checkpoints" / "step-4"
    out = copy_run(unfinished, tmp_path)
    code, _, err = cli(*resume_args(tiny_models, sentiment_files, out))
    assert code == 0, err
    assert (out / "model" / "model.safetensors").is_file() and (out / "metrics.json").is_file()
    assert not (out / "checkpoints").exists()


def _set(**changes: object):
    def tamper(state: dict, checkpoint: Path) -> None:
        state.update(changes)

    return tamper


def _earlier_state(state: dict, checkpoint: Path) -> None:
    """step-2's state (consistent in itself) beside step-4's model, optimizer and scheduler."""
    state.clear()
    state.update(json.loads((checkpoint.parent / "step-2" / "trainer_state.json").read_text()))


TAMPERED = {  # name: (change to step-4's trainer_state.json, what the line must say)
    "step_beyond_the_plan": (_set(step=999), "'step' is 999, outside 0..5 (this run has 6 steps)"),
    "negative_step": (_set(step=-1), "'step' is -1, outside 0..5"),
    "step_as_text": (_set(step="4"), "'step' should be a whole number, not '4'"),
    "step_as_bool": (_set(step=True), "'step' should be a whole number, not True"),
    "step_not_epoch_and_batches": (_set(step=3), "'step' is 3, but epoch 0 and batches 4 mean step 4"),
    "nan_loss_sum": (_set(loss_sum=float("nan")), "'loss_sum' should be a finite number, not nan"),
    "negative_samples": (_set(samples=-8), "'samples' is -8, below 0"),
    "epoch_beyond_the_plan": (_set(epoch=7), "'epoch' is 7, outside 0..0 (this run has 1 epoch(s))"),
    "batches_beyond_an_epoch": (_set(batches=10**9), "'batches' is 1000000000, outside 0..20 (an epoch has 20 batches here)"),
    "best_step_after_step": (_set(best_step=6), "'best_step' is 6, outside 1..4 (the checkpoint's step is 4)"),
    "best_value_nan": (_set(best_value=float("nan")), "'best_value' should be a finite number, not nan"),
    "huge_value_cut": (_set(step="x" * 10**6), "'step' should be a whole number, not 'xxxx"),
    "scheduler_disagrees": (_earlier_state, "'step' is 2, but the scheduler state beside it has taken 4 steps (2 expected)"),
    "other_process_count": (_set(processes=2), "saved by 2 processes, this run has 1"),
}


@pytest.mark.parametrize("name", list(TAMPERED))
def test_a_tampered_checkpoint_is_refused(name, unfinished, cli, tiny_models, sentiment_files, tmp_path):
    out = copy_run(unfinished, tmp_path)
    checkpoint = out / "checkpoints" / "step-4"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    change, says = TAMPERED[name]
    change(state, checkpoint)
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    code, _, err = cli(*resume_args(tiny_models, sentiment_files, out))
    line = one_line(err)
    assert code == 2 and says in line, line
    assert line.startswith(f"error: {checkpoint}") and len(line) < 500
    assert "--resume PATH" in line or "processes" in line
    assert_no_result(out)


def _best(checkpoint: Path) -> Path:
    """The best weights `checkpoint` refers to."""
    best_step = json.loads((checkpoint / "trainer_state.json").read_text())["best_step"]
    return checkpoint.parent / f"best-step-{best_step}" / "model.safetensors"


DAMAGED = {  # name: (what to do to the step-4 checkpoint, what the line must say)
    "optimizer_cut": (lambda c: (c / "optimizer.bin").write_bytes(b"PK\x03\x04cut"), "cannot load the checkpoint"),
    "model_missing": (lambda c: (c / "model.safetensors").unlink(), "cannot load the checkpoint"),
    "best_weights_damaged": (lambda c: _best(c).write_bytes(b"\x08" + b"\0" * 7 + b"{"), "cannot read the best weights"),
    "best_weights_missing": (lambda c: _best(c).unlink(), "missing, yet step-4 refers to it"),
    "state_not_an_object": (lambda c: (c / "trainer_state.json").write_text("[1, 2]"), "not a checkpoint state"),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_checkpoint_is_refused(name, unfinished, cli, tiny_models, sentiment_files, tmp_path):
    out = copy_run(unfinished, tmp_path)
    damage, says = DAMAGED[name]
    damage(out / "checkpoints" / "step-4")
    code, _, err = cli(*resume_args(tiny_models, sentiment_files, out))
    line = one_line(err)
    assert code == 2 and says in line and str(out / "checkpoints") in line, line
    assert "--resume PATH" in line and "--overwrite" in line
    assert_no_result(out)


# ---------------------------------------------------------------------------- two processes


def test_two_processes_stop_together_on_a_non_finite_loss(tiny_models, sentiment_files, tmp_path):
    """Every process learns of the first bad loss (gathered) and stops at the same point: no
    process waits forever at a barrier, and nothing is saved (accelerate launch, gloo on the CPU)."""
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    out = tmp_path / "run"
    launch = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port, "-m", "ftkit"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_USE_CPU": "true"}
    args = finetune(tiny_models, sentiment_files, out, "--learning-rate", "1e30", "--max-steps", "10", "--set", "train.checkpoint_every=1")
    done = subprocess.run([*launch, *map(str, args)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: training diverged: the loss is")]
    assert len(errors) == 2 and errors[0] == errors[1], done.stderr[-3000:]  # both processes, the same step
    bad = int(re.search(r"at step (\d+)", errors[0]).group(1))
    assert_no_result(out)
    assert all(int(p.name.split("-")[1]) < bad for p in (out / "checkpoints").glob("step-*"))
