"""Run folders read back as plain data, for `ftkit runs show | compare` (no printing here).

A run folder is what `ftkit finetune --output-dir OUT` writes (see artifacts.py): config.yaml
from the start, log.jsonl as it trains, checkpoints/step-N while unfinished, and model/ plus
metrics.json once finished. Only yaml and json are read: these commands answer instantly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftkit import checkpoints
from ftkit.config import RunConfig
from ftkit.config_load import flatten, from_dict, load_yaml_file
from ftkit.errors import FtkitError
from ftkit.metrics import lookup

# (row label, dotted config key): the settings every comparison shows, equal or not.
KEY_SETTINGS = (
    ("recipe", "name"), ("task", "task"), ("model", "model"),
    ("epochs", "train.epochs"), ("max_steps", "train.max_steps"), ("batch_size", "train.batch_size"),
    ("gradient_accumulation_steps", "train.gradient_accumulation_steps"),
    ("learning_rate", "train.learning_rate"), ("warmup_ratio", "train.warmup_ratio"),
    ("weight_decay", "train.weight_decay"), ("max_length", "train.max_length"), ("seed", "train.seed"),
    ("mixed_precision", "train.mixed_precision"),
)
# prose, not a setting: it differs exactly when the recipe does
NOT_SETTINGS = {"description"}
SUMMARY = ("accuracy", "precision", "recall", "f1", "rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf", "perplexity", "loss")
COUNTS = {"samples", "tokens", "entities", "gen_len", "support", "step", "epoch"}  # sizes, not scores
GROUPS = ("per_class", "per_type")  # {name: {precision, recall, f1, support}} (classification, NER)
SPLITS = ("validation", "test")


@dataclass
class Run:
    """One run folder: its config, its results (once finished) and what it has left so far."""

    path: Path
    config: RunConfig
    metrics: dict[str, Any] | None  # metrics.json; None until the run finishes
    checkpoint_step: int | None = None  # latest complete checkpoints/step-N
    log: list[dict[str, Any]] = field(default_factory=list)  # log.jsonl records
    plots: list[str] = field(default_factory=list)  # plots/*.png, relative to the folder
    files: list[tuple[str, int]] = field(default_factory=list)  # (name, bytes) at the top level

    @property
    def status(self) -> str:
        """finished, unfinished (a checkpoint to resume) or incomplete (neither)."""
        if self.metrics is not None:
            return "finished"
        return "unfinished" if self.checkpoint_step is not None else "incomplete"

    def split(self, name: str) -> dict[str, Any]:
        """The metrics of one section of metrics.json ({} when absent)."""
        section = (self.metrics or {}).get(name)
        return section if isinstance(section, dict) else {}

    def last(self, kind: str, split: str | None = None) -> dict[str, Any] | None:
        """The last log.jsonl record of a type ('train' or 'eval', optionally of a split)."""
        for record in reversed(self.log):
            if record.get("type") == kind and (split is None or record.get("split") == split):
                return record
        return None

    def settings(self) -> dict[str, Any]:
        """The resolved config as flat dotted keys: new config sections need no code here."""
        return flatten(self.config.to_dict(), whole=())  # expect bars too: one row each


class NotARun(FtkitError):
    """The folder is no run at all (empty, a stray folder, a file): `runs compare` skips it."""


def read_run(path: Path) -> Run:
    """Read a run folder; anything that is not one (NotARun), or is damaged, is an FtkitError naming the fix."""
    try:
        return _read_run(path)
    except OSError as err:  # an unreadable folder or file: one line, not a traceback
        raise FtkitError(f"{path}: cannot read it ({err.strerror or err}); check its permissions") from None


def _read_run(path: Path) -> Run:
    _check_folder(path)
    config_file = path / "config.yaml"
    try:
        config = from_dict(load_yaml_file(config_file), str(config_file))
    except FtkitError as err:
        raise FtkitError(f"{err.message} (the run's saved config: repair it, or read it with the ftkit version that wrote it)") from None
    latest = checkpoints.latest(path)
    return Run(
        path=path,
        config=config,
        metrics=_read_metrics(path),
        checkpoint_step=int(latest.name.split("-")[1]) if latest else None,
        log=read_log(path / "log.jsonl"),
        plots=sorted(p.relative_to(path).as_posix() for p in (path / "plots").glob("*.png")),
        files=[(p.name + ("/" if p.is_dir() else ""), _size(p)) for p in sorted(path.iterdir())],
    )


def expand(paths: list[Path]) -> list[Path]:
    """Each folder of run folders (a sweep's, or runs/) as the runs in it, by name; other paths as given."""
    out = []
    for path in paths:
        inner = []
        if path.is_dir() and not (path / "config.yaml").is_file():
            try:
                inner = sorted(p for p in path.iterdir() if (p / "config.yaml").is_file())
            except OSError:  # read_run says what is wrong with the folder
                pass
        out += inner or [path]
    return out


def _check_folder(path: Path) -> None:
    hint = "pass the --output-dir of an `ftkit finetune` run"
    if not path.exists():
        raise FtkitError(f"{path}: no such folder; {hint}")
    if not path.is_dir():
        inside = f" (the run folder {path.parent}?)" if (path.parent / "config.yaml").is_file() else ""
        raise NotARun(f"{path}: is a file, not a run folder; {hint}{inside}")
    if (path / "config.yaml").is_file():
        return
    if (path / "metrics.json").exists() or (path / "model").is_dir():
        raise FtkitError(f"{path / 'config.yaml'}: missing, so the run's settings are unknown; restore it from a copy of the run")
    inner = sorted(p for p in path.iterdir() if (p / "config.yaml").is_file()) if path.is_dir() else []
    if inner:  # e.g. runs/: a folder of run folders
        names = ", ".join(str(p) for p in inner[:3]) + (", ..." if len(inner) > 3 else "")
        raise NotARun(f"{path}: not a run folder, but it holds {len(inner)}: {names}; pass those (e.g. `ftkit runs compare {path}/*`)")
    raise NotARun(f"{path}: not an ftkit run folder (no config.yaml); {hint}")


def _read_metrics(path: Path) -> dict[str, Any] | None:
    file = path / "metrics.json"
    if not file.exists():
        return None
    rerun = f"restore it from a copy, or rerun: ftkit finetune {path / 'config.yaml'} -o {path} --overwrite"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as err:
        raise FtkitError(f"{file}: cannot read it ({err.strerror or err}); check its permissions") from None
    except UnicodeDecodeError:
        raise FtkitError(f"{file}: damaged (not UTF-8 text); {rerun}") from None
    except ValueError as err:
        where = f" at line {err.lineno}" if isinstance(err, json.JSONDecodeError) else ""
        raise FtkitError(f"{file}: damaged (not valid JSON{where}); {rerun}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()) or "train" not in data:
        raise FtkitError(f'{file}: not an ftkit metrics file (expected {{"train": {{...}}, "validation": {{...}}}}); {rerun}')
    return data


def read_log(file: Path) -> list[dict[str, Any]]:
    """log.jsonl's records; a line cut by a kill (or any unreadable line) is skipped."""
    try:
        lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def human_size(size: float) -> str:
    """Bytes as people read them: 532 B, 1.4 KB, 87.3 MB."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.0f} B"


def _size(path: Path) -> int:
    """Bytes in a file or folder; a file that a running run renames meanwhile counts 0."""
    total = 0
    for file in [path] if path.is_file() else path.rglob("*"):
        try:
            total += file.stat().st_size if file.is_file() else 0
        except OSError:
            pass
    return total


def numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric top-level metrics of a split (step and epoch apart); nested extras ignored."""
    return {k: v for k, v in metrics.items() if _is_number(v) and k not in ("step", "epoch")}


def groups(metrics: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """per_class / per_type tables of a split: {group: {name: {precision, recall, f1, support}}}."""
    return {g: metrics[g] for g in GROUPS if isinstance(metrics.get(g), dict) and metrics[g]}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric(metrics: dict[str, Any], key: str) -> float | int | None:
    """A metric by dotted key (metrics.lookup), keeping integers (samples, support) integers."""
    value = metrics.get(key)
    return value if _is_number(value) else lookup(metrics, key)


def primary_value(run: Run, metrics: dict[str, Any]) -> float | int | None:
    return metric(metrics, run.config.metrics.primary)


def fmt(value: Any, digits: int = 4) -> str:
    """How every table prints a value: ints as they are, floats to `digits` places, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else str(value)
    return str(value)


def fmt_setting(value: Any, present: bool = True) -> str:
    """A config value as YAML spells it (null, true, a, b); '-' when the run has no such key."""
    if not present:
        return "-"
    if value is None:
        return "null"
    if isinstance(value, list):
        return ", ".join(fmt_setting(v) for v in value) or "[]"
    return fmt(value) if isinstance(value, bool) else str(value)


# ---------------------------------------------------------------------------- comparing runs


@dataclass
class Row:
    """One table row: a label, one printed cell per run, and the runs holding the best value."""

    label: str
    cells: list[str]
    best: set[int] = field(default_factory=set)


@dataclass
class Comparison:
    names: list[str]  # one column header per run
    split: str  # the metrics section compared
    sections: list[tuple[str, list[Row]]]


def compare(runs: list[Run], split: str | None = None) -> Comparison:
    """Settings (the key ones, then every other key that differs), metrics of `split`, training."""
    split = split or default_split(runs)
    return Comparison(
        names=column_names([r.path for r in runs]),
        split=split,
        sections=[("settings", _setting_rows(runs)), (f"{split} metrics", _metric_rows(runs, split)), ("training", _training_rows(runs))],
    )


def default_split(runs: list[Run]) -> str:
    """test when every finished run has test metrics, else validation."""
    finished = [r for r in runs if r.metrics is not None]
    return "test" if finished and all(r.split("test") for r in finished) else "validation"


def column_names(paths: list[Path]) -> list[str]:
    """Folder names; equal ones grow their parents until they differ (a/run, b/run)."""
    resolved = [p.resolve() for p in paths]
    twice = [str(p) for i, p in enumerate(paths) if resolved[i] in resolved[:i]]
    if twice:
        raise FtkitError(f"{twice[0]}: given twice; pass each run folder once")
    depth = [1] * len(paths)

    def name(i: int) -> str:
        return "/".join(resolved[i].parts[-depth[i]:])

    while True:
        clashes = [i for i in range(len(paths)) if [name(j) for j in range(len(paths))].count(name(i)) > 1]
        if not clashes:
            return [name(i) for i in range(len(paths))]
        for i in clashes:
            depth[i] += 1


def _pruned(run: Run) -> str:
    """' (pruned at epoch 1)' for an `ftkit sweep` trial stopped behind the median of earlier ones."""
    epoch = run.split("train").get("pruned_at_epoch")
    return f" (pruned at epoch {epoch:g})" if isinstance(epoch, (int, float)) else ""


def _setting_rows(runs: list[Run]) -> list[Row]:
    flat = [r.settings() for r in runs]
    status = [r.status + (f" (step {r.checkpoint_step})" if r.status == "unfinished" else _pruned(r)) for r in runs]
    rows = [Row("status", status)]
    rows += [Row(label, [fmt_setting(f.get(key), key in f) for f in flat]) for label, key in KEY_SETTINGS]
    shown = {key for _, key in KEY_SETTINGS} | NOT_SETTINGS
    keys = list(dict.fromkeys(k for f in flat for k in f if k not in shown))
    missing = object()
    for key in keys:
        values = [f.get(key, missing) for f in flat]
        if any(v != values[0] for v in values[1:]):
            rows.append(Row(key, [fmt_setting(None if v is missing else v, v is not missing) for v in values]))
    return rows


def _metric_rows(runs: list[Run], split: str) -> list[Row]:
    sections = [r.split(split) for r in runs]
    primaries: dict[str, bool] = {}
    for run in runs:
        primaries.setdefault(run.config.metrics.primary, run.config.metrics.greater_is_better)
    found = list(dict.fromkeys(k for s in sections for k in numbers(s)))
    keys = list(primaries) + [k for k in SUMMARY if k in found] + [k for k in found if k not in SUMMARY]
    for group in GROUPS:
        names = dict.fromkeys(n for s in sections for n in groups(s).get(group, {}))
        keys += [f"{group}.{n}.f1" for n in names]
    rows = []
    for key in dict.fromkeys(keys):  # a primary like per_class.spam.f1 appears once
        values = [metric(s, key) for s in sections]
        label = f"{key} (primary)" if key in primaries else key
        rows.append(_row(label, values, direction(key, primaries)))
    return rows


def _training_rows(runs: list[Run]) -> list[Row]:
    train = [r.split("train") for r in runs]
    best_step = [r.split("validation").get("step") for r in runs]
    return [
        Row("best step", [fmt(s) for s in best_step]),
        Row("steps", [fmt(t.get("steps")) for t in train]),
        Row("train loss", [fmt(t.get("loss")) for t in train]),  # a mean over runs of other lengths: not ranked
        Row("runtime (s)", [fmt(t.get("runtime_s"), 1) for t in train]),
        _row("samples/s", [t.get("samples_per_second") for t in train], 1, digits=1),
    ]


def direction(key: str, primaries: dict[str, bool]) -> int | None:
    """1: higher is better, -1: lower is better, None: not a score (a count)."""
    if key in primaries:
        return 1 if primaries[key] else -1
    leaf = key.rsplit(".", 1)[-1]
    if leaf in COUNTS:
        return None
    return -1 if "loss" in leaf or leaf == "perplexity" or leaf.startswith("ece") else 1  # calibration error: lower is better


def _row(label: str, values: list[Any], sign: int | None, digits: int = 4) -> Row:
    cells = [fmt(v, digits) for v in values]
    return Row(label, cells, best_of(values, sign, digits))


def best_of(values: list[Any], sign: int | None, digits: int = 4) -> set[int]:
    """The runs holding the best value as printed; none when all runs print the same."""
    scored = [(i, float(v)) for i, v in enumerate(values) if _is_number(v) and not math.isnan(v)]
    if sign is None or len(scored) < 2:
        return set()
    top = max(sign * v for _, v in scored) * sign
    winners = {i for i, v in scored if fmt(v, digits) == fmt(top, digits)}
    return set() if len(winners) == len(scored) else winners
