"""`ftkit sweep`: a hyper-parameter search with Optuna over a recipe's `sweep.space`.

Every trial is an ordinary run folder, PARENT/trial-000, trial-001, ... (the caller trains it:
ftkit.cli.sweep). Optuna's study lives in PARENT/sweep.journal, a plain file, so a killed sweep
continues where it stopped: finished trials are kept and the trial that was running resumes from
its checkpoint, or starts again with the same parameters. A trial whose validation metric falls
behind the median of earlier trials at the same epoch is pruned: it stops as early stopping stops
a run, its folder complete. PARENT/sweep.json lists the trials; PARENT/best.yaml is the best
trial's config. Optuna loads only when a sweep runs: the space check here runs at every config load.
"""

from __future__ import annotations

import json
import math
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ftkit import checkpoints, metrics
from ftkit.bounded import cut, shown
from ftkit.config import RunConfig, SearchRange
from ftkit.config_load import all_keys, apply_overrides, coerce, flatten, from_dict, load_yaml_file
from ftkit.errors import FtkitError, closest, first_line

JOURNAL, BASE, SUMMARY, BEST = "sweep.journal", "sweep.yaml", "sweep.json", "best.yaml"
# Settings a continued sweep may change: they do not alter what a trial computes (as --resume).
MAY_CHANGE = ("sweep.trials", "train.checkpoint_every", "train.keep_checkpoints", "train.report_to")
Train = Callable[[RunConfig, Path, Path | None], dict[str, Any]]  # (config, trial folder, checkpoint) -> results
Say = Callable[[str, bool], None]  # (line, whether it is a result: shown under --quiet too)

# ---------------------------------------------------------------------------- the space, at load


def check_space(space: dict[str, SearchRange]) -> None:
    """Each searched key is a config key that takes every value of its range (its type and its
    RANGES entry); bounds and choices become the key's type."""
    keys = all_keys()
    for key, span in space.items():
        where = f"sweep.space.{cut(key, 60)}"
        if not _searchable(key, keys.get(key)):
            searchable = [k for k, hint in keys.items() if _searchable(k, hint)]
            what = "holds a list or mapping, which a sweep cannot search" if key in keys else "is not a config key a sweep can search"
            raise FtkitError(f"'{where}': {shown(key)} {what}.{closest(cut(key, 60), searchable)} "
                             "Search a single-valued key, e.g. train.learning_rate (`ftkit recipes show RECIPE` lists them)")
        if span.choices is not None:
            _check_choices(key, where, keys[key], span)
        else:
            _check_bounds(key, where, keys[key], span)


def _searchable(key: str, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    return hint is not None and not key.startswith("sweep.") and origin not in (list, dict) and \
        not any(typing.get_origin(a) in (list, dict) for a in typing.get_args(hint) if origin in (typing.Union, types.UnionType))


def _number_kind(hint: Any) -> type | None:
    """int or float for a numeric key (maybe optional), else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next((a for a in typing.get_args(hint) if a is not type(None)), None)
    return hint if hint in (int, float) else None


def _check_choices(key: str, where: str, hint: Any, span: SearchRange) -> None:
    if span.low is not None or span.high is not None or span.log:
        raise FtkitError(f"'{where}' gives both choices and low/high/log; give one of them")
    if not span.choices:
        raise FtkitError(f"'{where}.choices' is empty; list the values to try, e.g. choices: [16, 32]")
    values = [_typed(value, hint, f"{where}.choices[{i}]", key) for i, value in enumerate(span.choices)]
    if len({repr(v) for v in values}) != len(values):
        raise FtkitError(f"'{where}.choices' repeats a value ({shown(span.choices)}); list each value once")
    span.choices = values


def _check_bounds(key: str, where: str, hint: Any, span: SearchRange) -> None:
    kind = _number_kind(hint)
    if kind is None:
        raise FtkitError(f"'{where}': {key} is not a number, so it has no low/high; list its values: choices: [...]")
    if span.low is None or span.high is None:
        raise FtkitError(f"'{where}' needs low and high (e.g. {{low: 1.0e-5, high: 1.0e-4, log: true}}) or choices: [...]")
    low, high = _typed(span.low, kind, f"{where}.low", key), _typed(span.high, kind, f"{where}.high", key)
    if low >= high:
        raise FtkitError(f"'{where}': low ({low}) must be below high ({high}); for one value, set the key itself instead")
    if span.log and low <= 0:
        raise FtkitError(f"'{where}': log: true needs low above 0, got {low}; raise low or drop log")
    span.low, span.high = low, high


def _typed(value: Any, hint: Any, label: str, key: str) -> Any:
    """`value` as the key's type, inside the key's range; the message names `label`."""
    from ftkit.checks import RANGES

    try:
        typed = coerce(value, hint, label, "sweep")
    except FtkitError as err:  # coerce names its source first: the caller's file is named around this
        raise FtkitError(err.message.removeprefix("sweep: ")) from None
    numeric = isinstance(typed, (int, float)) and not isinstance(typed, bool)
    fault = RANGES[key].fault(typed) if numeric and key in RANGES else None
    if fault:
        raise FtkitError(f"'{label}' must {fault} (the range of {key}), got {shown(value)}")
    return typed


def distributions(space: dict[str, SearchRange]) -> dict[str, Any]:
    """Optuna's distribution of each searched key."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    keys, out = all_keys(), {}
    for key, span in space.items():
        if span.choices is not None:
            out[key] = CategoricalDistribution(span.choices)
        elif _number_kind(keys[key]) is int:
            out[key] = IntDistribution(int(span.low), int(span.high), log=span.log)
        else:
            out[key] = FloatDistribution(float(span.low), float(span.high), log=span.log)
    return out


def check_trials(base: RunConfig) -> None:
    """Every value of the space, each with the recipe's other settings, makes a valid config: a
    rule tying keys together (lora.merge needs lora.enabled) fails now, not at trial 5."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise FtkitError("ftkit sweep needs Optuna, which is not installed: pip install 'optuna>=4,<6'") from None
    if not base.sweep.space:
        raise FtkitError(f"recipe '{base.name}' has no sweep.space to search; add a sweep: section with a space "
                         "(e.g. train.learning_rate: {low: 1.0e-5, high: 1.0e-4, log: true})")
    for key, span in base.sweep.space.items():
        for value in span.choices if span.choices is not None else (span.low, span.high):
            apply_overrides(base, {key: value}, source=f"sweep.space.{key} = {shown(value)}")


# ---------------------------------------------------------------------------- the parent folder


def parent_folder(base: RunConfig, output_dir: Path | None, resume: str | None) -> Path:
    """The sweep's folder: --output-dir, or `--resume [PATH]` (alone: the newest sweep of the
    recipe under runs/), or a new runs/<recipe>-sweep-<UTC time>."""
    if resume is None:
        return output_dir or Path("runs") / f"{base.name}-sweep-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    named = Path(resume) if resume else None
    if named and output_dir and named.resolve() != output_dir.resolve():
        raise FtkitError(f"--resume {named} and --output-dir {output_dir} name two sweeps; pass one of them")
    where = named or output_dir
    if where is None:
        found = [p for p in sorted(Path("runs").glob(f"{base.name}-sweep-*")) if (p / BASE).is_file()]
        if not found:
            raise FtkitError(f"--resume: no sweep of '{base.name}' under runs/; pass --output-dir of the sweep to continue")
        where = found[-1]
    if not (where / BASE).is_file():
        raise FtkitError(f"{where}: holds no sweep to continue ({BASE} missing); pass the --output-dir of an `ftkit sweep`")
    return where


def prepare(parent: Path, base: RunConfig) -> None:
    """Make PARENT for a new sweep, or check that the sweep it holds was started with these settings."""
    from ftkit.rundir import check_writable
    from ftkit.writes import replace_text

    saved_file = parent / BASE
    if saved_file.is_file():
        saved = flatten(from_dict(load_yaml_file(saved_file), str(saved_file)).to_dict())
        now = flatten(base.to_dict())
        changed = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k) and k not in MAY_CHANGE]
        if changed:
            diffs = "; ".join(f"{k}: {shown(saved.get(k))} -> {shown(now.get(k))}" for k in changed[:6])
            raise FtkitError(f"{parent}: the sweep was started with other settings ({diffs}). Continue it with the "
                             "same recipe and flags (only --trials may change), or start a new sweep in another --output-dir")
        return
    if parent.exists() and (not parent.is_dir() or any(parent.iterdir())):
        raise FtkitError(f"{parent}: not empty and holds no sweep ({BASE} missing); choose another --output-dir")
    check_writable(parent)
    parent.mkdir(parents=True, exist_ok=True)
    import yaml

    # what every trial starts from; a continued sweep is held to it
    header = "# ftkit sweep: the settings every trial starts from; continuing the sweep in this folder needs the same\n"
    replace_text(saved_file, header + yaml.safe_dump(base.to_dict(), sort_keys=False, allow_unicode=True))


def open_study(parent: Path, base: RunConfig) -> Any:
    """The study in PARENT/sweep.journal (made on the first call): maximise or minimise the
    primary metric; TPE sampling; the median pruner unless sweep.pruner is none."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own lines
    s = base.sweep
    pruner = optuna.pruners.MedianPruner(n_startup_trials=s.startup_trials) if s.pruner == "median" else optuna.pruners.NopPruner()
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(parent / JOURNAL))), study_name="ftkit-sweep",
                                direction="maximize" if base.metrics.greater_is_better else "minimize", pruner=pruner, load_if_exists=True)
    # Seeded, and on by the trials already made: a continued sweep must not draw the first ones again.
    study.sampler = optuna.samplers.TPESampler(seed=base.train.seed + len(study.get_trials(deepcopy=False)))
    return study


# ---------------------------------------------------------------------------- the trials


def run_sweep(base: RunConfig, parent: Path, trials: int, train: Train, say: Say, again: str) -> dict[str, Any]:
    """Run trials until `trials` have finished (complete, pruned or failed), continuing the
    sweep in `parent`; sweep.json and best.yaml after each. `again`: the command that continues."""
    from optuna.trial import Trial, TrialState

    from ftkit.fsguard import locked

    space = distributions(base.sweep.space)
    with locked(parent, "this sweep"):
        study = open_study(parent, base)
        # This process holds the sweep: a trial still marked running was cut short by a kill.
        stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        if _finished(study) >= trials:
            say(f"{parent}: {_finished(study)} trial(s) already finished (--trials {trials}); nothing to run", True)
        while _finished(study) < trials:
            trial = Trial(study, stale.pop(0)._trial_id) if stale else study.ask(space)
            try:
                run_trial(study, trial, base, parent, trials, train, say)
            except (KeyboardInterrupt, FtkitError) as err:
                if isinstance(err, FtkitError) and err.exit_code != 130:
                    raise
                raise FtkitError(f"interrupted in trial-{trial.number:03d}; {_finished(study)} of {trials} trial(s) finished, "
                                 f"kept in {parent}. Continue the sweep with: {again}", exit_code=130) from None
            finally:  # after each trial: a sweep killed later still lists it
                write_summary(study, base, parent, trials)
        return write_summary(study, base, parent, trials)


def run_trial(study: Any, trial: Any, base: RunConfig, parent: Path, trials: int, train: Train, say: Say) -> None:
    """Train one trial in PARENT/trial-NNN (or take its saved result) and tell the study how it ended."""
    from optuna.trial import TrialState

    from ftkit.loop import ON_VALIDATE

    out, params = parent / f"trial-{trial.number:03d}", dict(trial.params)
    label = f"{out.name} ({trial.number + 1}/{trials}) {_spoken(params)}"
    try:
        config = apply_overrides(base, params, source=f"{out.name}'s parameters")
        if (out / "metrics.json").is_file():  # trained before the kill, not yet told
            results = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        else:
            checkpoint = checkpoints.latest(out)
            say(f"{label}: {'resuming from ' + str(checkpoint) if checkpoint else 'training in ' + str(out)}", False)
            token = ON_VALIDATE.set(Pruning(trial, base.metrics.primary))
            try:
                results = train(config, out, checkpoint)
            finally:
                ON_VALIDATE.reset(token)
    except FtkitError as err:
        if err.exit_code == 130:  # interrupted: the trial stays running, to resume
            raise
        trial.set_user_attr("error", cut(first_line(err), 300))
        study.tell(trial, state=TrialState.FAIL)
        if err.exit_code != 1:  # bad input: each trial would meet it
            raise FtkitError(f"{label}: {err.message}", exit_code=err.exit_code) from None
        say(f"{label} -> failed: {cut(first_line(err), 200)}", True)  # e.g. diverged at a high learning rate: the sweep goes on
        return
    except Exception as err:  # a library failure (CUDA out of memory at a large batch): a continued sweep moves on
        trial.set_user_attr("error", cut(f"{type(err).__name__}: {first_line(err, empty='')}", 300))
        study.tell(trial, state=TrialState.FAIL)
        raise
    value = metrics.lookup(results.get("validation") or {}, base.metrics.primary)
    pruned_at = trial.user_attrs.get("pruned_at_epoch")
    if pruned_at is not None:
        _mark_pruned(out, results, pruned_at)
        study.tell(trial, state=TrialState.PRUNED)
        say(f"{label} -> pruned at epoch {pruned_at:g} ({base.metrics.primary} {_number(value)}){_best_so_far(study)}", True)
    elif value is None or not math.isfinite(value):
        trial.set_user_attr("error", f"no finite validation {base.metrics.primary} in metrics.json")
        study.tell(trial, state=TrialState.FAIL)
        say(f"{label} -> failed: no finite validation {base.metrics.primary}", True)
    else:
        study.tell(trial, value)
        say(f"{label} -> {base.metrics.primary} {_number(value)}{_best_so_far(study)}", True)


@dataclass
class Pruning:
    """The loop's validation hook for one trial: report the metric; stop when Optuna prunes."""

    trial: Any
    metric: str

    def __call__(self, epoch: float, value: float | None) -> str | None:
        if value is None:
            return None
        with warnings.catch_warnings():  # a resumed trial reports an epoch again: Optuna keeps the first
            warnings.simplefilter("ignore")
            # hundredths of an epoch: trials of other batch sizes line up at each epoch's end
            self.trial.report(value, round(epoch * 100))
        if not self.trial.should_prune():
            return None
        self.trial.set_user_attr("pruned_at_epoch", round(epoch, 2))  # before stopping: a kill now still ends it pruned
        return f"trial pruned ({self.metric} {value:.4f} at epoch {epoch:.2f} is behind the median of earlier trials)"


def _mark_pruned(out: Path, results: dict[str, Any], epoch: float) -> None:
    """metrics.json says the trial was pruned: its model is good, its training cut short."""
    from ftkit.artifacts import write_json

    train = results.setdefault("train", {})
    if train.get("pruned_at_epoch") != epoch:
        train.update(pruned=True, pruned_at_epoch=epoch)
        write_json(out / "metrics.json", results)


def _finished(study: Any) -> int:
    return sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))


def _best(study: Any) -> Any:
    """The best complete trial, or None."""
    from optuna.trial import TrialState

    return study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None


def _best_so_far(study: Any) -> str:
    best = _best(study)
    return f" (best: trial-{best.number:03d}, {_number(best.value)})" if best else ""


def _spoken(params: dict[str, Any]) -> str:
    """learning_rate=3.2e-05 batch_size=16: leaf names are unique (a test holds them so)."""
    return " ".join(f"{k.rsplit('.', 1)[-1]}={f'{v:.4g}' if isinstance(v, float) else v}" for k, v in params.items())


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}"


# ---------------------------------------------------------------------------- what a sweep leaves


def write_summary(study: Any, base: RunConfig, parent: Path, trials: int) -> dict[str, Any]:
    """PARENT/sweep.json (every trial: folder, state, parameters, value) and PARENT/best.yaml
    (the best trial's config, which `ftkit finetune` reruns); returns sweep.json's content."""
    from ftkit.artifacts import save_config, write_json

    rows = [{
        "trial": f"trial-{t.number:03d}", "state": t.state.name.lower(), "params": t.params, "value": t.value,
        **{k: t.user_attrs[k] for k in ("pruned_at_epoch", "error") if k in t.user_attrs},
    } for t in study.get_trials(deepcopy=False)]
    best = _best(study)
    summary = {
        "metric": base.metrics.primary, "greater_is_better": base.metrics.greater_is_better, "trials_wanted": trials,
        "best": None if best is None else {"trial": f"trial-{best.number:03d}", "value": best.value, "params": best.params, "config": BEST},
        "trials": rows,
    }
    write_json(parent / SUMMARY, summary)
    if best is not None:
        save_config(parent / BEST, apply_overrides(base, best.params, source=f"trial-{best.number:03d}'s parameters"))
    return summary
