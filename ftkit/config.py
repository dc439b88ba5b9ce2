"""The typed run config: recipe YAML, then CLI flags, then `--set key=value`, checked on load.

Every key has a declared type; an unknown key or a value of the wrong type is an error that
names the key and the valid choices (ftkit.config_load reads a mapping into these classes). The
resolved config is what `config.yaml` in a run folder holds, so `ftkit finetune RUN/config.yaml`
reruns the run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal


@dataclass(frozen=True)
class OneOf:
    """Marks a text key whose value must be one of the names `choices()` gives when the config
    loads (a registry that may grow at run time, unlike a Literal)."""

    choices: Callable[[], tuple[str, ...]]


def _families() -> tuple[str, ...]:
    from ftkit.tasks import FAMILY_MODULES  # the registry's table: cheap, no family module loads

    return tuple(FAMILY_MODULES)


TaskName = Annotated[str, OneOf(_families)]  # a family registered in ftkit.tasks.FAMILY_MODULES
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
    label_separator: str = ","  # multi-label: what separates the labels in a csv/tsv cell ("sports,tech")
    image_column: str = "image"  # image classification: image paths (relative to the file) or a Hub image column
    labels: list[str] | None = None  # class (or NER tag) names in id order; integer labels index into it
    # .txt data files: conll = token ... tag per line (NER); text = documents separated by blank lines
    format: Literal["auto", "conll", "text"] = "auto"
    strict: bool = False  # refuse malformed input (IOB1 / broken tag sequences) instead of repairing it
    target_column: str | None = None  # seq2seq: the column holding the reference output
    source_lang: str | None = None  # translation: keys inside a {"translation": {...}} column
    target_lang: str | None = None
    audio_column: str = "audio"  # speech recognition: each clip (a path relative to the data file, or a Hub audio column)
    language: str | None = None  # speech recognition: the language spoken (multilingual Whisper's token; none for .en)
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
    # image classification: crop-flip = a random resized crop and a horizontal flip of each
    # training image (as transformers' run_image_classification does); none = the images as they are
    augment: Literal["crop-flip", "none"] = "crop-flip"
    # regression: standard = train on (target - mean) / std of the training targets; the saved head
    # is rescaled so the model outputs the data's units (pipeline() too); none = the raw targets
    target_scaling: Literal["standard", "none"] = "standard"
    # masked-LM pre-training: the share of tokens masked (BERT's 15%), and whether a word's
    # sub-tokens are masked together (whole-word masking)
    mlm_probability: float = 0.15
    whole_word_mask: bool = False
    # classification: fit a temperature on the validation split after training (temperature
    # scaling: the scores become calibrated, the predicted labels stay the same); the saved model
    # carries it, so predict and pipeline() give the calibrated scores
    calibrate: bool = False
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
    # multi-label: the decision threshold on each label's sigmoid score: tune (one, tuned on
    # validation for micro F1), tune-per-label (one per label, each for its own F1), or a number in (0, 1)
    threshold: str = "tune"


DataCheck = Literal["balance", "empty", "duplicates", "overlap", "truncation", "label_sets"]


@dataclass
class DataChecksConfig:
    """What `ftkit data check` (and finetune's one-line summary) holds the data to: each check
    compares a share with its limit (the worst split's); one over its limit warns, and fails when
    named in `fatal`, which makes `data check` exit 1. finetune only notes what it finds."""

    # truncation in fatal: a model whose tokenizer cannot load (offline) fails it instead of skipping it
    fatal: list[DataCheck] = field(default_factory=lambda: ["overlap", "label_sets"])
    max_imbalance: float = 20.0  # balance: the most frequent training label over the least frequent (NER: entity mentions)
    max_empty: float = 0.0  # empty: the share of a split's texts that are empty or blank (finetune skips them)
    max_duplicates: float = 0.05  # duplicates: the share of a split's rows repeating an earlier text exactly
    # overlap: the share of validation/test texts also in train, compared once normalised (NFKC,
    # casefolded, punctuation deleted, whitespace collapsed): a leak inflates the scores
    max_overlap: float = 0.0
    max_truncated: float = 0.05  # truncation: the share of texts longer than train.max_length tokens
    # label_sets has no limit: a validation/test label that train lacks is over it (train labels
    # missing from validation/test only warn)


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
class SearchRange:
    """One config key's search range in a sweep: low..high (log: sampled on a log scale), or a
    list of choices; the key's declared type decides whether numbers are ints or floats."""

    low: float | None = None
    high: float | None = None
    log: bool = False  # e.g. learning rates: as many trials in 1e-5..1e-4 as in 1e-4..1e-3
    choices: list[Any] | None = None  # values of the key's own type: [16, 32], [true, false], [no, bf16]


@dataclass
class SweepConfig:
    """`ftkit sweep`: the search space, the number of trials, and when a trial is cut short."""

    trials: int = 10  # how many trials `ftkit sweep` runs (its --trials wins)
    # median: stop a trial whose validation metric at an evaluation is worse than the median of
    # earlier trials at the same epoch (Optuna's MedianPruner); none: every trial trains to the end
    pruner: Literal["median", "none"] = "median"
    startup_trials: int = 2  # trials that finish before any trial is pruned
    space: dict[str, SearchRange] = field(default_factory=dict)  # config key -> its range


@dataclass
class RunConfig:
    """One fine-tuning run: a recipe plus everything the command line changed."""

    name: str
    task: TaskName  # the task family (`ftkit recipes list` shows each recipe's)
    model: str
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data_checks: DataChecksConfig = field(default_factory=DataChecksConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)  # read by `ftkit sweep` only
    expect: dict[str, str] = field(default_factory=dict)  # metric -> bar, e.g. ">= 0.91"

    def __post_init__(self) -> None:
        from ftkit.checks import check

        check(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
