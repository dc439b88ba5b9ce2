"""Checkpoints a run can resume from, exactly, after a crash, a kill or Ctrl-C.

    OUT/checkpoints/
      step-N/            accelerate's save_state (model, optimizer, scheduler, RNG states)
                         + trainer_state.json (step, epoch, batches seen, loss sums, best so far)
      best-step-M/       the best weights so far (model.safetensors), referenced by step-N

Every folder is written under a `.tmp` name and renamed when complete, so a kill at any moment
leaves the previous checkpoint usable; `trainer_state.json` is written last. The last
`keep_checkpoints` step folders are kept, plus the best one they reference. A finished run
deletes its checkpoints: model/ holds the result.

Nothing here trusts what it reads back: `restore` checks a checkpoint's state against the run's
plan (a tampered or foreign checkpoint is refused, naming the field), and a write that fails in
any library (disk full, I/O error; see ftkit.writes) is reported as such, leaving no `.tmp`
behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

from ftkit.bounded import shown
from ftkit.divergence import nonfinite
from ftkit.errors import FtkitError
from ftkit.writes import WriteFailed, replace_text, replace_whole, run_tmp, short, together

STATE_FILE = "trainer_state.json"
_STEP = re.compile(r"step-(\d+)")
_BEST = re.compile(r"best-step-(\d+)")
ELSEWHERE = "resume from an earlier checkpoint (--resume PATH) or start afresh (--overwrite)"


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


@dataclass
class TrainState:
    """How far a run has got: everything a checkpoint holds besides accelerate's own state
    (weights, optimizer, scheduler, RNG). trainer_state.json holds these fields, in this order."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # the epoch under way
    batches: int = 0  # batches of that epoch this process has seen: a resume skips them
    last_eval: int = -1  # the step of the latest validation
    best_step: int | None = None  # the best validation so far: its step, primary metric, metrics
    best_value: float | None = None
    best_metrics: dict[str, Any] = field(default_factory=dict)
    samples: int = 0  # training examples seen, every process together
    train_time: float = 0.0  # seconds in the loop, evaluations included
    eval_time: float = 0.0
    loss_sum: float = 0.0  # losses summed since the last logging step (mean over processes), and how many
    loss_count: int = 0
    loss_total: float = 0.0  # every logged loss, for the run's mean loss in metrics.json
    loss_total_count: int = 0
    stale_evals: int = 0  # early stopping: evaluations since the metric last improved
    stopped_early: bool = False

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> "TrainState":
        """A checked trainer_state.json; 'processes' (checked, not state) and unknown keys are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})


def read_state(path: Path) -> dict[str, Any]:
    file = path / STATE_FILE
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FtkitError(f"{file}: cannot read the checkpoint's state ({short(str(err))}); {ELSEWHERE}") from None
    if not isinstance(state, dict):
        raise FtkitError(f"{file}: not a checkpoint state (a JSON object was expected); {ELSEWHERE}")
    return state


def _tied_weights_note(record: Any) -> bool:
    """A logging filter: False for accelerate's note that a tied weight (a masked-LM decoder or a
    GPT-2 head shared with the embeddings) was saved once. Loading ties it again (resume tests
    compare the weights), so the note's "check for a warning while reloading" only alarms."""
    return "Removed shared tensor" not in str(record.msg)  # accelerate puts "[RANK 0] " before it


def _save_state(accelerator: Any, tmp: Path) -> None:
    import logging

    noted = logging.getLogger("accelerate.utils.other")
    noted.addFilter(_tied_weights_note)
    try:
        accelerator.save_state(str(tmp))
    finally:
        noted.removeFilter(_tied_weights_note)


def save(accelerator: Any, out: Path, state: TrainState, best_state: dict | None, keep: int) -> Path:
    """Write checkpoints/step-{state.step} (every process joins: each saves its RNG state).

    A failed write (disk full, a lost mount) in any process stops every process with one line;
    the `.tmp` folders go, and the earlier checkpoints still stand.
    """
    root = folder(out)
    step, main = state.step, accelerator.is_main_process
    tmp, final = root / f"step-{step}.tmp", root / f"step-{step}"
    saved = {**asdict(state), "processes": accelerator.num_processes}  # a resume on another count is refused
    try:
        together(accelerator, (lambda: _begin(root, tmp, final, state.best_step, best_state)) if main else None)
        together(accelerator, lambda: _save_state(accelerator, tmp))
        together(accelerator, (lambda: _finish(root, tmp, final, saved, keep)) if main else None)
    except BaseException as err:  # a Ctrl-C mid-save too: no half-written folder stays behind
        if main:
            for partial in root.glob("*.tmp"):
                shutil.rmtree(partial, ignore_errors=True)
            with contextlib.suppress(OSError):
                root.rmdir()  # only if empty: a first checkpoint that failed leaves no folder
        if not isinstance(err, WriteFailed):
            raise
        again = resume_hint(out) or "run again"
        raise FtkitError(f"{root}: cannot save a checkpoint ({err.cause}) at step {step}; free space and {again}, "
                         "or run without checkpoints (--set train.checkpoint_every=null)", exit_code=1) from None
    return final


def _begin(root: Path, tmp: Path, final: Path, best_step: int | None, best_state: dict | None) -> None:
    """Main process: clear a kill's leftovers, then write the best weights if they are new."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    for stale in (tmp, final):  # a kill's leftovers, or a rerun of the same step
        shutil.rmtree(stale, ignore_errors=True)
    best_dir = root / f"best-step-{best_step}"
    if best_state is not None and not best_dir.is_dir():

        def save_best(tmp: Path) -> None:
            tmp.mkdir()
            save_file(best_state, str(tmp / "model.safetensors"))

        replace_whole(best_dir, save_best, tmp=run_tmp(best_dir))


def _finish(root: Path, tmp: Path, final: Path, state: dict[str, Any], keep: int) -> None:
    """Main process: trainer_state.json last (it marks the folder complete), rename, prune."""
    replace_text(tmp / STATE_FILE, json.dumps(state, indent=2, default=float) + "\n")
    os.replace(tmp, final)
    _prune(root, keep)


def resume_hint(out: Path) -> str | None:
    """How to continue run `out` from its latest complete checkpoint, if it has one."""
    import shlex

    last = latest(out)
    return f"add --resume {shlex.quote(str(out))} to the same command (continues from {last.name})" if last else None


# --- resume: a checkpoint is checked against the run's plan before it is trusted

@dataclass(frozen=True)
class Plan:
    """What this run does, as the training loop counts it: a checkpoint's state must fit it."""

    total_steps: int
    steps_per_epoch: int
    epochs: int
    batches_per_epoch: int  # this process's share of the training batches
    accumulation: int
    processes: int
    exact_schedule: bool = True  # fp16: the scheduler skips steps whose gradients overflowed


def restore(accelerator: Any, model: Any, scheduler: Any, path: Path, plan: Plan) -> tuple[TrainState, dict | None]:
    """Load checkpoint `path` for --resume: (its trainer state, the best weights so far).

    Its state is checked against `plan` and against the scheduler state beside it; a damaged
    or tampered checkpoint is refused (exit 2) naming the file and what is wrong.
    """
    state = check_state(path, read_state(path), plan)
    try:
        accelerator.load_state(str(path))
    except Exception as err:  # noqa: BLE001 - a missing or damaged model/optimizer/scheduler file
        raise FtkitError(f"{path}: cannot load the checkpoint ({short(f'{type(err).__name__}: {err}')}); {ELSEWHERE}") from None
    done = getattr(getattr(scheduler, "scheduler", scheduler), "last_epoch", None)
    expected = state["step"] * plan.processes  # a prepared scheduler steps once per process
    if isinstance(done, int) and done != expected and (plan.exact_schedule or not 0 <= done <= expected):
        _refuse(path, "step", f"is {state['step']}, but the scheduler state beside it has taken {done} steps ({expected} expected)")
    return TrainState.from_saved(state), load_best(path, state, accelerator.unwrap_model(model).state_dict().keys())


def check_state(path: Path, state: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """`state` (trainer_state.json), its types and ranges checked against `plan`."""
    def integer(field: str, low: int, high: int | None = None, why: str = "", required: bool = False) -> None:
        if field not in state and not required:
            return
        value = state.get(field)
        if not isinstance(value, int) or isinstance(value, bool):
            _refuse(path, field, f"should be a whole number, not {shown(value)}")
        if value < low or (high is not None and value > high):
            _refuse(path, field, f"is {value}, outside {low}..{high}{' ' + why if why else ''}" if high is not None else f"is {value}, below {low}")

    saved = state.get("processes", plan.processes)
    if saved != plan.processes:
        raise FtkitError(f"{path}: saved by {shown(saved)} processes, this run has {plan.processes}; resume with "
                         f"{shown(saved)} processes (the data order and schedule depend on it), or start afresh (--overwrite)")
    integer("step", 0, plan.total_steps - 1, f"(this run has {plan.total_steps} steps)", required=True)
    integer("epoch", 0, plan.epochs - 1, f"(this run has {plan.epochs} epoch(s))", required=True)
    integer("batches", 0, plan.batches_per_epoch, f"(an epoch has {plan.batches_per_epoch} batches here)", required=True)
    step = state["step"]
    # a checkpoint is saved when an optimizer step ends: its step follows from epoch and batches
    expected = state["epoch"] * plan.steps_per_epoch + math.ceil(state["batches"] / plan.accumulation)
    if step != expected:
        _refuse(path, "step", f"is {step}, but epoch {state['epoch']} and batches {state['batches']} mean step {expected}")
    integer("last_eval", -1, step, f"(the checkpoint's step is {step})")
    for key in ("samples", "loss_count", "loss_total_count", "stale_evals"):
        integer(key, 0)
    for key in ("loss_sum", "loss_total", "train_time", "eval_time"):
        value = state.get(key, 0.0)
        if not _real(value) or (key.endswith("_time") and value < 0):
            _refuse(path, key, f"should be a finite number{' >= 0' if key.endswith('_time') else ''}, not {shown(value)}")
    if (state.get("best_step") is None) != (state.get("best_value") is None):
        _refuse(path, "best_step", "and best_value must both be set or both null")
    if state.get("best_step") is not None:
        integer("best_step", 1, step, f"(the checkpoint's step is {step})")
        if not _real(state["best_value"]):
            _refuse(path, "best_value", f"should be a finite number, not {shown(state['best_value'])}")
    if not isinstance(state.get("best_metrics", {}), dict):
        _refuse(path, "best_metrics", f"should be an object, not {shown(state['best_metrics'])}")
    if not isinstance(state.get("stopped_early", False), bool):
        _refuse(path, "stopped_early", f"should be true or false, not {shown(state['stopped_early'])}")
    return state


def load_best(path: Path, state: dict[str, Any], keys: Any = None) -> dict | None:
    """The best weights a checkpoint refers to (None before the first evaluation); `keys`: the
    model's state-dict keys, which they must match."""
    from safetensors.torch import load_file

    if state.get("best_step") is None or state.get("best_value") is None:
        return None
    best = path.parent / f"best-step-{state['best_step']}" / "model.safetensors"
    if not best.is_file():
        raise FtkitError(f"{best}: missing, yet {path.name} refers to it; {ELSEWHERE}")
    try:
        weights = load_file(str(best))
    except Exception as err:  # noqa: BLE001 - safetensors' own error type for a damaged file
        raise FtkitError(f"{best}: cannot read the best weights ({short(str(err))}); {ELSEWHERE}") from None
    if keys is not None and set(weights) != set(keys):
        raise FtkitError(f"{best}: holds other weights than this run's model ({len(set(weights) ^ set(keys))} names differ); {ELSEWHERE}")
    if nonfinite(weights.values()):
        raise FtkitError(f"{best}: holds NaN or infinite weights; {ELSEWHERE}")
    return weights


def _refuse(path: Path, field: str, problem: str) -> NoReturn:
    raise FtkitError(f"{path / STATE_FILE}: '{field}' {problem}; the checkpoint was altered or is not this run's; {ELSEWHERE}")


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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


def discard(out: Path, step: int) -> None:
    """Drop checkpoints/step-N (its weights diverged: no way back) and the best weights only it
    referred to; with no checkpoint left, checkpoints/ goes too, so the run counts as one that
    failed before its first checkpoint."""
    root = folder(out)
    target = root / f"step-{step}"
    if target.is_dir():  # renamed first, as in _prune
        os.replace(target, target.with_name(target.name + ".tmp"))
    remaining = [p for p in root.glob("step-*") if _STEP.fullmatch(p.name) and complete(p)]
    if remaining:
        _prune(root, len(remaining))
    else:
        shutil.rmtree(root, ignore_errors=True)


def remove(out: Path) -> None:
    """A finished run's checkpoints are spent: model/ is the result."""
    shutil.rmtree(folder(out), ignore_errors=True)


def trim_log(log: Path, state: TrainState) -> None:
    """Drop log records written after the checkpoint: the resumed run writes them again.

    A checkpoint at an epoch's last step is saved before that epoch's evaluation: its eval record
    (same step) goes too, unless the checkpoint's state says the evaluation had run (last_eval).
    """
    if not log.is_file():
        return
    step, evaluated = state.step, state.last_eval == state.step
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
    try:
        replace_text(log, "".join(k + "\n" for k in kept))
    except OSError as err:  # a full disk: the log stays as it was, no .tmp beside it
        raise FtkitError(f"{log}: cannot rewrite the run's log to resume ({short(err.strerror or str(err))}); free space, then resume again", exit_code=1) from None


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
