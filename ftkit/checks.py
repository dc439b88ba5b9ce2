"""Checks a run config must pass when it loads: every number inside its range (RANGES, also
used for the command-line flags that stand for a key) and the rules that tie keys together.
Each message names the key, the value (bounded) and the flag or `--set` that fixes it.
"""

from __future__ import annotations

import collections
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ftkit import flagtable
from ftkit.bounded import shown
from ftkit.errors import FtkitError

if TYPE_CHECKING:
    from ftkit.config import RunConfig
    from ftkit.tasks.family import Family

STEPS = re.compile(r"\s*[0-9]{1,10}\s*")  # checkpoint_every as a step count: ASCII digits, a bounded number

def how_to_set(key: str, example: str = "N") -> str:
    """'set it with --batch-size N (or --set train.batch_size=N)': the fix, for messages."""
    flag = FLAGS.get(key)
    return f"set it with {flag} {example} (or --set {key}={example})" if flag else f"set it with --set {key}={example}"


@dataclass(frozen=True)
class Range:
    """The values a numeric key accepts: low to high, each end included unless it is open."""

    low: float
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    example: str = "N"  # the value the message suggests
    interval: bool = False  # word both ends as "be in [0, 1)" rather than "not be negative" / "be below 1"

    def fault(self, value: float) -> str | None:
        """What `value` must do instead ('be a positive integer', 'be at most 1048576'), or None."""
        if not math.isfinite(value):  # a command-line float can be nan or inf; config values cannot
            return "be a finite number"
        below = value < self.low or (self.open_low and value == self.low)
        above = value > self.high or (self.open_high and value == self.high)
        if not (below or above):
            return None
        if self.interval:
            return f"be in {'(' if self.open_low else '['}{_number(self.low)}, {_number(self.high)}{')' if self.open_high else ']'}"
        if above:
            return f"be {'below' if self.open_high else 'at most'} {_number(self.high)}"
        if self.low == 1 and isinstance(value, int):
            return "be a positive integer"
        if self.low == 0:
            return "be positive" if self.open_low else "not be negative"
        return f"be at least {_number(self.low)}"


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


COUNT = 2**31 - 1  # steps, epochs, rows: past any real run, and within a C int in every library
SIZE = 2**20  # examples per batch, tokens per text, beams, LoRA rank: past any device's memory
SEED = 2**32 - 1  # numpy, torch and scikit-learn take seeds in [0, 2**32 - 1]
_POSITIVE_COUNT, _POSITIVE_SIZE = Range(1, COUNT), Range(1, SIZE)
_NON_NEGATIVE = Range(0, example="0")
_FRACTION = Range(0, 1, open_high=True, interval=True, example="0.1")
_SHARE = Range(0, 1, interval=True, example="0.01")  # a share of rows a data check allows (1: any)

# Every number a config holds, checked on load so nothing out of range reaches a library (a test
# holds this table to all_keys(): a new numeric key must say its range here).
RANGES: dict[str, Range] = {
    "data.validation_fraction": _FRACTION,
    "data.test_fraction": _FRACTION,
    "data.max_train_samples": _POSITIVE_COUNT,
    "data.max_eval_samples": _POSITIVE_COUNT,
    "train.epochs": Range(0, COUNT),  # 0 with max_steps set: the steps alone decide (see check())
    "train.max_steps": _POSITIVE_COUNT,
    "train.batch_size": _POSITIVE_SIZE,
    "train.eval_batch_size": _POSITIVE_SIZE,
    # no top: a rate too high for the model is found by training, which stops at a non-finite loss
    "train.learning_rate": Range(0, open_low=True, example="2e-5"),
    "train.weight_decay": _NON_NEGATIVE,
    "train.warmup_ratio": Range(0, 1, open_high=True, example="0.1"),
    "train.gradient_accumulation_steps": _POSITIVE_SIZE,
    "train.max_grad_norm": _NON_NEGATIVE,
    "train.max_length": _POSITIVE_SIZE,
    "train.max_target_length": _POSITIVE_SIZE,
    "train.seed": Range(0, SEED),
    "train.eval_steps": _POSITIVE_COUNT,
    "train.eval_max_samples": _POSITIVE_COUNT,
    "train.stride": Range(0, SIZE),
    "train.logging_steps": _POSITIVE_COUNT,
    "train.keep_checkpoints": _POSITIVE_COUNT,
    "train.early_stopping_patience": _POSITIVE_COUNT,
    "train.early_stopping_threshold": _NON_NEGATIVE,
    "train.mlm_probability": Range(0, 1, open_low=True, open_high=True, example="0.15", interval=True),
    "data_checks.max_imbalance": Range(1, example="20"),
    "data_checks.max_empty": _SHARE,
    "data_checks.max_duplicates": _SHARE,
    "data_checks.max_overlap": _SHARE,
    "data_checks.max_truncated": _SHARE,
    "lora.r": _POSITIVE_SIZE,
    "lora.alpha": _POSITIVE_COUNT,
    "lora.dropout": _FRACTION,
    # past ~1000 beams, beam sampling outgrows torch.multinomial's 2**24 categories (beams x vocabulary)
    "generation.num_beams": Range(1, 1024),
    "generation.max_new_tokens": _POSITIVE_SIZE,
    # below 0.01 the scores divided by it overflow (inf/nan probabilities); that is greedy decoding anyway
    "generation.temperature": Range(0.01, example="0.7"),
    "generation.top_p": Range(0, 1, open_low=True, example="0.9"),
    "sweep.trials": _POSITIVE_COUNT,
    "sweep.startup_trials": Range(0, COUNT, example="2"),
}

# Numeric keys that have their own command-line flag (the finetune table, ftkit.flagtable): an
# error about one says which flag fixes it.
FLAGS = {flag.key: flag.names[0] for flag in flagtable.FLAGS if flag.key in RANGES}


def check_flag(flag: str, key: str, value: float | None) -> None:
    """A command-line number that stands for a config key (predict --num-beams: generation.num_beams)
    inside that key's RANGES entry, so the flag and the key take the same values."""
    fault = None if value is None else RANGES[key].fault(value)
    if fault:
        raise FtkitError(f"{flag} must {fault}, got {shown(value)}")


def check_ranges(config: RunConfig) -> None:
    """Each numeric key inside its RANGES entry; the message names the key, the value and the fix."""
    for key, allowed in RANGES.items():
        section, _, name = key.rpartition(".")
        value = getattr(getattr(config, section) if section else config, name)
        fault = None if value is None else allowed.fault(value)
        if fault:
            raise FtkitError(f"'{key}' must {fault}, got {shown(value)}; {how_to_set(key, allowed.example)}")


_BAR = re.compile(r"^\s*(>=|<=|==|>|<)\s*([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)\s*$")


def parse_bar(bar: str) -> tuple[str, float]:
    """'>= 0.91' -> ('>=', 0.91); the operator is one of >=, >, <=, <, ==."""
    match = _BAR.match(str(bar))
    if not match:
        raise FtkitError(f"expect bar {shown(bar)} is not of the form '>= 0.91' (operators: >= > <= < ==)")
    return match.group(1), float(match.group(2))


def check(config: RunConfig) -> None:
    """Cross-field checks; each message names the key(s) to change. The keys every run has come
    first, then what the run's task family asks of them (its `check_config`) and of its columns."""
    from ftkit.columns import check_roles
    from ftkit.sweep import check_space  # optuna loads only when a sweep runs
    from ftkit.tasks import get_task

    _check_identity(config)
    if config.train.epochs <= 0 and config.train.max_steps is None:  # before the ranges: this message names both fixes
        raise FtkitError(f"'train.epochs' must be positive, got {config.train.epochs} (or set train.max_steps); set it with --epochs N or --max-steps N")
    check_ranges(config)
    task = get_task(config.task)
    _check_training(config, task)
    _check_data(config)
    for bar in config.expect.values():
        parse_bar(bar)
    task.check_config(config)
    # no column named for two of the family's roles, whether flags, the recipe or --set named it
    check_roles(task.columns(config))
    check_space(config.sweep.space)  # each searched key takes every value of its range


def _check_identity(config: RunConfig) -> None:
    """The run's name (it names folders) and its model."""
    if not config.name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", config.name):
        raise FtkitError(f"'name' must be a simple identifier (letters, digits, - _ .), got {shown(config.name)}")
    if not str(config.model).strip():
        raise FtkitError("'model' is empty: pass --model NAME_OR_PATH")


def _check_training(config: RunConfig, task: Family) -> None:
    """Checkpoints, class weights, trackers and LoRA: the train and lora keys that go together."""
    t = config.train
    every = t.checkpoint_every
    if every is not None and every != "epoch" and not (STEPS.fullmatch(every) and 0 < int(every) <= COUNT):
        raise FtkitError(f"'train.checkpoint_every' must be a positive number of steps (up to {COUNT}), 'epoch' or null, got {shown(every)}")
    if t.class_weights and not task.CLASS_WEIGHTS:
        from ftkit.tasks import families

        weighed = [name for name, family in families().items() if family.CLASS_WEIGHTS]
        raise FtkitError(f"'train.class_weights' applies to {flagtable.spoken(tuple(weighed))} recipes, not {config.task}; remove it")
    if "none" in t.report_to and len(t.report_to) > 1:
        raise FtkitError(f"'train.report_to' lists 'none' with trackers ({', '.join(sorted(set(t.report_to)))}); give trackers or none")
    if config.lora.merge and not config.lora.enabled:
        raise FtkitError("--merge merges a LoRA adapter into the model: add --lora (or --set lora.enabled=true)")


def _check_data(config: RunConfig) -> None:
    """The carved fractions leave rows to train on; each label is listed once."""
    d = config.data
    if d.validation_fraction + d.test_fraction >= 1:
        raise FtkitError("'data.validation_fraction' + 'data.test_fraction' must leave rows to train on")
    if d.labels is not None and len(set(d.labels)) != len(d.labels):
        repeated = sorted(label for label, n in collections.Counter(d.labels).items() if n > 1)
        raise FtkitError(f"'data.labels' has duplicates: {shown(d.labels)} (repeated: {shown(repeated)}); list each label once")
