"""Checkpoints a run can resume from, exactly, after a crash, a kill or Ctrl-C.

    OUT/checkpoints/
      step-N/            accelerate's save_state (model, optimizer, scheduler, RNG states)
                         + trainer_state.json (step, epoch, batches seen, loss sums, best so far)
      best-step-M/       the best weights so far (model.safetensors), referenced by step-N

Every folder is written under a `.tmp` name and renamed when complete, so a kill at any moment
leaves the previous checkpoint usable; `trainer_state.json` is written last. The last
`keep_checkpoints` step folders are kept, plus the best one they reference. A finished run
deletes its checkpoints: model/ holds the result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

from ftkit.errors import FtkitError

STATE_FILE = "trainer_state.json"
_STEP = re.compile(r"step-(\d+)")
_BEST = re.compile(r"best-step-(\d+)")


def folder(out: Path) -> Path:
    return out / "checkpoints"


def complete(path: Path) -> bool:
    return path.is_dir() and (path / STATE_FILE).is_file()


def latest(out: Path) -> Path | None:
    """The newest complete step-N folder of a run, or None."""
    steps = sorted(
        (int(m.group(1)), p) for p in folder(out).glob("step-*") if (m := _STEP.fullmatch(p.name)) and complete(p)
    )
    return steps[-1][1] if steps else None


def find(path: Path) -> Path:
    """`--resume PATH`: a checkpoint folder, or a run folder whose latest checkpoint is used."""
    if complete(path):
        return path
    found = latest(path) if path.is_dir() else None
    if found is None:
        raise FtkitError(
            f"{path}: no complete checkpoint here (a run's --output-dir holding checkpoints/step-N, or a step-N "
            "folder). Set train.checkpoint_every to save them, or start afresh without --resume"
        )
    return found


def read_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FtkitError(f"{path / STATE_FILE}: cannot read the checkpoint's state ({err}); resume from an earlier one") from None


def save(accelerator: Any, out: Path, state: dict[str, Any], best_state: dict | None, keep: int) -> Path:
    """Write checkpoints/step-{state['step']} (every process joins: each saves its RNG state)."""
    try:
        return _save(accelerator, out, state, best_state, keep)
    except OSError as err:  # a full disk, a lost mount: the earlier checkpoints still stand
        for tmp in folder(out).glob("*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)
        raise FtkitError(
            f"{folder(out)}: cannot save a checkpoint ({err.strerror or err}); free space, or run without "
            "checkpoints (--set train.checkpoint_every=null)", exit_code=1,
        ) from None


def _save(accelerator: Any, out: Path, state: dict[str, Any], best_state: dict | None, keep: int) -> Path:
    from safetensors.torch import save_file

    root = folder(out)
    step, best_step = state["step"], state.get("best_step")
    final = root / f"step-{step}"
    tmp = root / f"step-{step}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for stale in (tmp, final):  # a kill's leftovers, or a rerun of the same step
            shutil.rmtree(stale, ignore_errors=True)
        best_dir = root / f"best-step-{best_step}"
        if best_state is not None and not best_dir.is_dir():
            best_tmp = root / f"best-step-{best_step}.tmp"
            shutil.rmtree(best_tmp, ignore_errors=True)
            best_tmp.mkdir()
            save_file(best_state, str(best_tmp / "model.safetensors"))
            os.replace(best_tmp, best_dir)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp_state = tmp / (STATE_FILE + ".tmp")
        tmp_state.write_text(json.dumps(state, indent=2, default=float) + "\n", encoding="utf-8")
        os.replace(tmp_state, tmp / STATE_FILE)
        os.replace(tmp, final)
        _prune(root, keep)
    accelerator.wait_for_everyone()
    return final


def load_best(path: Path, state: dict[str, Any]) -> dict | None:
    """The best weights a checkpoint refers to (None before the first evaluation)."""
    from safetensors.torch import load_file

    if state.get("best_step") is None or state.get("best_value") is None:
        return None
    best = path.parent / f"best-step-{state['best_step']}" / "model.safetensors"
    if not best.is_file():
        raise FtkitError(f"{best}: missing, yet {path.name} refers to it; resume from an earlier checkpoint with --resume PATH")
    return load_file(str(best))


def _prune(root: Path, keep: int) -> None:
    """Keep the last `keep` step folders and the best folders they refer to; drop the rest."""
    steps = sorted((int(m.group(1)), p) for p in root.glob("step-*") if (m := _STEP.fullmatch(p.name)) and complete(p))
    kept = [p for _, p in steps[-keep:]]
    wanted = {read_state(p).get("best_step") for p in kept}
    doomed = [p for _, p in steps[:-keep]]
    doomed += [p for p in root.iterdir() if (m := _BEST.fullmatch(p.name)) and int(m.group(1)) not in wanted]
    for path in doomed:  # renamed first: a kill mid-delete must not leave a folder that looks complete
        os.replace(path, path.with_name(path.name + ".tmp"))
    for path in root.glob("*.tmp"):
        shutil.rmtree(path, ignore_errors=True)


def remove(out: Path) -> None:
    """A finished run's checkpoints are spent: model/ is the result."""
    shutil.rmtree(folder(out), ignore_errors=True)


def trim_log(log: Path, state: dict[str, Any]) -> None:
    """Drop log records written after the checkpoint: the resumed run writes them again.

    A checkpoint at an epoch's last step is saved before that epoch's evaluation: its eval record
    (same step) goes too, unless the checkpoint's state says the evaluation had run (last_eval).
    """
    if not log.is_file():
        return
    step, evaluated = state["step"], state.get("last_eval") == state["step"]
    kept = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut by the kill
            continue
        at = record.get("step", 0)
        after = at > step or (at == step and record.get("type") == "eval" and not evaluated)
        if not after and record.get("split") != "test":
            kept.append(line)
    tmp = log.with_name(log.name + ".tmp")
    tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
    os.replace(tmp, log)


class StopRequest:
    """SIGINT/SIGTERM during training ask to stop after the current step (with a checkpoint).

    A second signal stops at once (KeyboardInterrupt); the last complete checkpoint stays usable.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        import threading

        if threading.current_thread() is threading.main_thread():  # signals reach only the main thread
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
