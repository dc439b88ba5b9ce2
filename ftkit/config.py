"""The typed run config: recipe YAML, then CLI flags, then `--set key=value`, checked on load.

Every key has a declared type; an unknown key or a value of the wrong type is an error that
names the key and the valid choices. The resolved config is what `config.yaml` in a run folder
holds, so `ftkit finetune RUN/config.yaml` reruns the run.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

# load_yaml_file is imported from here by the modules that read a run's config.yaml
from ftkit.bounded import cut, load_yaml_file, shown, yaml_load  # noqa: F401
from ftkit.errors import FtkitError, closest

TaskFamily = Literal["sequence-classification", "token-classification", "seq2seq", "causal-lm"]
TASK_FAMILIES: tuple[str, ...] = typing.get_args(TaskFamily)
MixedPrecision = Literal["auto", "no", "fp16", "bf16"]
CompileMode = Literal["no", "default", "reduce-overhead", "max-autotune"]
Tracker = Literal["none", "tensorboard", "wandb", "mlflow"]


@dataclass
class DataConfig:
    """Where the examples come from and which columns hold what."""

    dataset: str | None = None  # Hub dataset id; local files (train/validation/test) win over it
    dataset_config: str | None = None  # Hub dataset configuration name, e.g. "3.0.0"
    train: str | None = None  # local file: csv, tsv, json, jsonl or parquet
    validation: str | None = None
    test: str | None = None
    train_split: str = "train"
    validation_split: str | None = "validation"  # null: carve validation_fraction from train
    test_split: str | None = "test"  # null: carve test_fraction from train (0 = no test set)
    validation_fraction: float = 0.1
    test_fraction: float = 0.0
    text_column: str = "text"  # token classification: the column with each sentence's words
    text_pair_column: str | None = None  # second text for pair tasks (NLI, paraphrase)
    label_column: str = "label"  # token classification: the column with one IOB tag per word
    labels: list[str] | None = None  # class (or NER tag) names in id order; integer labels index into it
    # .txt data files: conll = token ... tag per line (NER); text = documents separated by blank lines
    format: Literal["auto", "conll", "text"] = "auto"
    strict: bool = False  # refuse malformed input (IOB1 / broken tag sequences) instead of repairing it
    target_column: str | None = None  # seq2seq: the column holding the reference output
    source_lang: str | None = None  # translation: keys inside a {"translation": {...}} column
    target_lang: str | None = None
    prefix: str = ""  # prepended to every input text (T5 task prefixes)
    max_train_samples: int | None = None  # use the first N training rows (quick runs)
    max_eval_samples: int | None = None  # use the first N validation/test rows
    encoding: str = "utf-8"  # text encoding of local files


@dataclass
class TrainConfig:
    """Optimisation settings; steps are optimizer steps (after gradient accumulation)."""

    epochs: int = 3
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    batch_size: int = 32  # per device, per forward pass
    eval_batch_size: int | None = None  # null: twice batch_size
    learning_rate: float = 2e-5
    weight_decay: float = 0.01  # not applied to biases and LayerNorm weights
    warmup_ratio: float = 0.1  # fraction of optimizer steps with linearly rising LR
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0  # 0 disables clipping
    max_length: int = 128  # tokens per example; longer inputs are truncated (causal LM: block size)
    max_target_length: int = 128  # seq2seq: tokens of the reference output kept for training
    seed: int = 42
    mixed_precision: MixedPrecision = "auto"  # auto: bf16 on GPUs that support it, else no
    eval_steps: int | None = None  # null: evaluate at each epoch end
    eval_max_samples: int | None = None  # validation rows scored during training (generation is slow); test uses all
    stride: int = 32  # tokens shared by the overlapping windows over inputs longer than max_length
    label_all_tokens: bool = False  # token classification: label every sub-token, not just the first
    logging_steps: int = 10
    # batches of similar lengths, in random order: far less padding, same batch size and step count
    group_by_length: bool = True
    # torch.compile the training step: no, default (fused kernels) or reduce-overhead (CUDA graphs
    # over a few padded lengths: for GPUs that wait on the host at small batches); compiling
    # takes minutes, so it pays on long runs. Evaluation and generation stay eager.
    compile: CompileMode = "no"
    # pad every batch to max_length: one shape, for XLA/TPU (which compiles one graph per shape)
    pad_to_max_length: bool = False
    # resumable checkpoints (OUT/checkpoints): every N optimizer steps, "epoch", or null for none
    checkpoint_every: str | None = "epoch"
    keep_checkpoints: int = 2  # the last N checkpoints are kept, plus the best model so far
    # stop when the primary metric has not improved (by more than the threshold) for N evaluations;
    # the best model is restored either way. null: train every step
    early_stopping_patience: int | None = None
    early_stopping_threshold: float = 0.0
    # classification: weight the loss by n_samples / (n_classes * count of the class) (sklearn's
    # 'balanced'), so a rare class (spam) counts as much as a common one; null: unweighted
    class_weights: Literal["balanced"] | None = None
    # experiment trackers through Accelerate (tensorboard writes OUT/tensorboard); [] or none: none
    report_to: list[Tracker] = field(default_factory=list)

    def trackers(self) -> list[str]:
        return [t for t in self.report_to if t != "none"]

    def checkpoint_interval(self) -> int | str | None:
        """checkpoint_every as steps (int), "epoch", or None; check() has vetted the text."""
        from ftkit.checks import STEPS

        every = self.checkpoint_every
        return int(every) if every is not None and STEPS.fullmatch(every) else every


@dataclass
class MetricsConfig:
    """Which metric picks the best checkpoint; `expect:` bars may name any reported metric."""

    primary: str = "accuracy"  # a key of metrics.json's split section; dots reach nested keys
    greater_is_better: bool = True
    mode: Literal["default", "strict"] = "default"  # NER (seqeval): strict = exact IOB2 entity matching


@dataclass
class LoraConfig:
    """LoRA (PEFT): train small low-rank updates of chosen layers instead of every weight."""

    enabled: bool = False
    r: int = 8  # rank of the update matrices
    alpha: int = 16  # the update is scaled by alpha / r
    dropout: float = 0.1  # dropout on the LoRA branch's input
    # null: the layers peft knows for the architecture (attention query/value), else every linear layer
    target_modules: list[str] | None = None
    merge: bool = False  # also save model/: the base with the update merged in (pipeline() loads it)


@dataclass
class GenerationConfig:
    """Decoding settings for the generative families (seq2seq, causal LM)."""

    num_beams: int = 1
    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0


@dataclass
class RunConfig:
    """One fine-tuning run: a recipe plus everything the command line changed."""

    name: str
    task: TaskFamily
    model: str
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    expect: dict[str, str] = field(default_factory=dict)  # metric -> bar, e.g. ">= 0.91"

    def __post_init__(self) -> None:
        from ftkit.checks import check

        check(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------- building from dicts


def from_dict(data: Any, source: str) -> RunConfig:
    """Build a RunConfig from a parsed YAML mapping; `source` names the file in errors."""
    if not isinstance(data, dict):
        raise FtkitError(f"{source}: expected a YAML mapping of config keys, got {_kind(data)}")
    return _build(RunConfig, data, source, prefix="")


def _build(cls: type, data: dict, source: str, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            valid = ", ".join(fields)
            raise FtkitError(
                f"{source}: unknown key {shown(dotted)}.{closest(cut(str(key), 60), list(fields))} "
                f"Valid keys{' under ' + prefix[:-1] if prefix else ''}: {valid}"
            )
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise FtkitError(f"{source}: '{dotted}' must be a mapping, got {_kind(value)}")
            kwargs[key] = _build(hint, value, source, prefix=f"{dotted}.")
        else:
            kwargs[key] = coerce(value, hint, dotted, source)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise FtkitError(f"{source}: missing required key(s): {', '.join(prefix + m for m in missing)}")
    try:
        return cls(**kwargs)
    except FtkitError as err:
        raise FtkitError(f"{source}: {err.message}") from None


def coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check `value` against the declared type `hint`, converting where the intent is clear."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], key, source)
    if origin is Literal:
        if value is False and "no" in args:  # YAML 1.1 reads a bare `no` as false
            return "no"
        if value not in args:
            raise FtkitError(
                f"{source}: '{key}' must be one of {', '.join(map(str, args))}; got {shown(value)}."
                # str() of a list or mapping can be any size (a YAML alias bomb): only texts get a hint
                f"{closest(value, [str(a) for a in args]) if isinstance(value, str) else ''}"
            )
        return value
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise FtkitError(f"{source}: '{key}' must be a list, got {_kind(value)}")
        return [coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise FtkitError(f"{source}: '{key}' must be a mapping, got {_kind(value)}")
        return {str(k): coerce(v, args[1], f"{key}.{cut(str(k), 60)}", source) for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise FtkitError(f"{source}: '{key}' must be true or false, got {shown(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            try:
                return int(value)
            except ValueError:  # more digits than Python converts
                pass
        raise FtkitError(f"{source}: '{key}' must be an integer, got {shown(value)}")
    if hint is float:
        number = None
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                number = float(value)
            elif isinstance(value, str):  # YAML 1.1 reads "2e-5" as a string: take the number
                number = float(value)
        except (ValueError, OverflowError):
            pass
        # nan slips through every `<= 0` in check(), and no setting means anything at inf
        if number is not None and math.isfinite(number):
            return number
        raise FtkitError(f"{source}: '{key}' must be a finite number, got {shown(value)}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        hint_quote = " (YAML reads bare yes/no/true/false as booleans: quote it, e.g. 'no')" if isinstance(value, bool) else ""
        raise FtkitError(f"{source}: '{key}' must be a string, got {_kind(value)}{hint_quote}")
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a bug in ftkit, not input


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


# ------------------------------------------------------------------------------- overrides


def all_keys(cls: type = RunConfig, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted key with its declared type, e.g. {'train.learning_rate': float}."""
    keys: dict[str, Any] = {}
    for name, hint in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(hint):
            keys.update(all_keys(hint, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = hint
    return keys


def flatten(data: dict[str, Any], prefix: str = "", whole: tuple[str, ...] = ("expect",)) -> dict[str, Any]:
    """A config dict as dotted keys ('train.learning_rate'); the `whole` sections stay one mapping
    (expect: its metric names hold dots). An empty mapping leaves no key."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in whole:
            out.update(flatten(value, f"{prefix}{key}.", whole))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resolve_key(key: str) -> str:
    """Map a `--set` key to its dotted form; a unique leaf name ('learning_rate') is enough."""
    keys = all_keys()
    if key in keys or key.split(".")[0] == "expect":
        return key
    leaf = [k for k in keys if k.rsplit(".", 1)[-1] == key]
    if len(leaf) == 1:
        return leaf[0]
    hint = closest(cut(key, 60), list(keys) + [k.rsplit(".", 1)[-1] for k in keys])
    raise FtkitError(f"unknown config key {shown(key)}.{hint} Valid keys: {', '.join(keys)}")


def apply_overrides(config: RunConfig, overrides: dict[str, Any], source: str) -> RunConfig:
    """Return a new config with dotted-key overrides applied and every check run again."""
    data = config.to_dict()
    for key, value in overrides.items():
        dotted = resolve_key(key)
        # metric names hold dots ('per_class.spam.f1'): all after 'expect.' is one key
        parts = dotted.split(".", 1) if dotted.startswith("expect.") else dotted.split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # e.g. `--set expect=1 --set expect.f1=...`
                raise FtkitError(f"{source}: '{part}' was set to {shown(node)}, so {shown(key)} cannot be set inside it; set one of them")
        node[parts[-1]] = value
    return from_dict(data, source)


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """Parse repeated `--set key=value`; values are YAML scalars or lists ('[a, b]')."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise FtkitError(f"--set expects key=value, got {shown(pair)} (e.g. --set train.warmup_ratio=0.06)")
        try:
            out[key.strip()] = yaml_load(raw) if raw.strip() else None
        # YAML that cannot be built (a date like 2024-13-45) or is beyond the bounds (YamlTooBig,
        # a ValueError: an alias bomb) stays the text typed, which the key's type check then judges
        except (yaml.YAMLError, ValueError):
            out[key.strip()] = raw
    return out
