"""The task-family protocol: every question the loop, predict, evaluate, the card, LoRA, the
plots and the config checks ask about a family, answered by one module in `ftkit/tasks/`.

A family is a plain module (data and functions, no base class) registered by one line in
`ftkit.tasks.FAMILY_MODULES`; `ftkit.tasks.get_task` checks on import that it has every member
below and returns it typed as `Family`. Nothing outside `ftkit/tasks/` names a family: it asks
the one the run's config (or a bare model folder's architecture) selects.

Shared pieces that several families use (text reading for predict, the model's own loss, a
batch's size) live in `ftkit.tasks.common`; a family takes them or writes its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # typing only: importing a family must stay cheap (no torch at `--help`)
    from pathlib import Path

    from ftkit.columns import Roles
    from ftkit.config import RunConfig
    from ftkit.data import Split


@dataclass
class Prepared:
    """What `prepare` hands the loop: the features it batches, and what the family's metrics need.

    The loop reads `features`, `names` and `notes` only; `extra` is the family's own (gold tag
    sequences, reference texts, a tokenizer to decode with) and only the family reads it.
    """

    # split -> datasets.Dataset the collator batches (or any map-style dataset with a "labels"
    # column). One with start_epoch(epoch) (train) is told each epoch before its batches are drawn, so
    # randomness it draws per example (image crops) follows from (seed, epoch, row): a resumed run draws alike
    features: dict[str, Any]
    names: list[str] = field(default_factory=list)  # class or tag names in id order; [] when the family has none
    notes: list[str] = field(default_factory=list)  # one line each, said before training
    extra: Any = None
    temperature: float | None = None  # --calibrate: the T finalize folded into the head (test metrics also score softmax(logits * T))


@dataclass(frozen=True)
class Loss:
    """The training loss of a run: `compute(forward, batch)` -> a scalar tensor.

    `forward` is the (maybe compiled) model; `batch` is the collated batch, META_KEYS included.
    `notes` are said once before training; `recorded` goes into metrics.json's train section.
    """

    compute: Callable[[Any, dict[str, Any]], Any]
    notes: tuple[str, ...] = ()
    recorded: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    """How the model card shows the saved model at work: `example` is an input; `pipeline_args`
    extra pipeline() arguments (', aggregation_strategy="first"'); `generate`: the card shows
    AUTO_MODEL + generate() instead of pipeline() (transformers 5 has no pipeline for it).
    `inputs` names what it reads ("text", "images", "speech"), `eval_data` what `ftkit evaluate
    --data` takes, `limits` the train settings that bound what it read (shown with the others)."""

    example: str
    pipeline_args: str = ""
    generate: bool = False
    inputs: str = "text"
    eval_data: str = "your.jsonl"
    limits: tuple[str, ...] = ("max_length",)


class Family(Protocol):
    """Everything that differs by task family. Members in the order a run meets them."""

    # --- what it is
    AUTO_MODEL: str  # the transformers Auto class its models load with
    ARCHITECTURES: tuple[str, ...]  # architecture-name endings of a bare model folder it serves ("ForTokenClassification")
    PEFT_TASK: str  # PEFT's TaskType name for LoRA ("SEQ_CLS", "CAUSAL_LM", ...); "": none (a plain PeftModel)
    NEW_HEAD: bool  # the model gets a newly initialised head: under LoRA it trains in full (modules_to_save)
    CLASS_WEIGHTS: bool  # whether `train.class_weights` applies (training_loss weighs classes)
    GGUF: bool  # whether --model may be a .gguf file (loaded by transformers)
    ONNX: bool  # whether `ftkit export --format onnx` exports its models and `predict --runtime onnx` runs them (logits of one forward pass)
    LONG_INPUTS: str  # inputs past train.max_length: "truncated", read in overlapping "windows", or packed into "blocks" (nothing is cut)
    LOCAL_MODEL: str  # what to pass as --model offline (ends the unreachable-model error)

    # --- data
    STRATIFY: str | None  # the role whose column carved splits are stratified by
    META_KEYS: tuple[str, ...]  # batch keys gathered for metrics but never given to the model
    CONVENTIONAL_COLUMNS: dict[str, str]  # role -> the column name local files usually use
    COLUMN_KINDS: dict[str, Any]  # role -> what its column holds (ftkit.columns.KINDS)
    LOCAL_FOLDERS: bool  # a --train/--validation/--test path may be a folder (read_local reads it)

    def serves(self, model_config: Any) -> bool:
        """Whether a bare model folder whose architecture matches ARCHITECTURES is this family's:
        a regression or multi-label head is a ForSequenceClassification too (its problem_type tells)."""

    def pipeline_tag(self, config: RunConfig) -> str:
        """The pipeline() task the saved model serves."""

    def columns(self, config: RunConfig) -> Roles:
        """Role -> column name of the data it reads, carrying COLUMN_KINDS."""

    def read_local(self, path: Path, config: RunConfig) -> Split | None:
        """A local data path read the family's own way (a folder of clips or images, a table whose
        column names media files, each checked readable: one that is not is a one-line error naming
        it, before training), or None: ftkit.data reads it as records (text families:
        ftkit.tasks.common.records_read_by_ftkit)."""

    def normalizer(self, config: RunConfig) -> Callable[[dict], dict] | None:
        """None, or a function rewriting each raw record before its columns are read."""

    def check_config(self, config: RunConfig) -> None:
        """The family's cross-field checks of a resolved config, at load time (FtkitError naming the fix)."""

    def check_model(self, model_config: Any, config: RunConfig) -> None:
        """The checkpoint's config fits this family and this run (architecture, input length)."""

    def load_processor(self, source: str) -> Any:
        """What turns raw inputs into model inputs: a tokenizer, an image processor, a processor."""

    def prepare(self, splits: dict[str, Split], config: RunConfig, processor: Any, names: list[str] | None = None) -> Prepared:
        """Labels and features of every split; `names`: the label names a saved model already has."""

    def check_metric_keys(self, config: RunConfig, names: list[str]) -> None:
        """The primary metric and the `expect:` bars exist for this family, before training."""

    # --- model and training
    def load_model(self, source: str, prepared: Prepared, processor: Any, config: RunConfig) -> Any:
        """The model with its head sized to the data's labels."""

    def collator(self, processor: Any, pad_to_multiple_of: int | None) -> Callable[[list[dict]], dict]:
        """Features -> a batch of tensors."""

    def lengths(self, features: Any) -> list[int]:
        """Each training example's length, for --group-by-length."""

    def batch_size(self, batch: dict[str, Any]) -> int:
        """How many examples a collated batch holds."""

    def training_loss(self, prepared: Prepared, config: RunConfig) -> Loss:
        """The loss the loop minimises (class weights included)."""

    def finalize(self, model: Any, prepared: Prepared, config: RunConfig, best: dict[str, Any]) -> dict[str, Any]:
        """After training, with the best weights back in `model` (unwrapped) and before the test
        split is scored and the model saved: settle what the model carries beyond its weights
        (multi-label thresholds from `best`, the best validation metrics; a regression target
        scale folded into the head). Returns what to record in metrics.json's train section ({}: nothing)."""

    # --- evaluation
    def eval_outputs(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        """Tensors to gather across processes for metrics (per-token ones padded with -100)."""

    def compute_metrics(self, gathered: dict[str, Any], prepared: Prepared, split: str) -> dict[str, Any]:
        """Metrics of a split from everything gathered."""

    def errors(self, gathered: dict[str, Any], prepared: Prepared, split: str) -> list[dict[str, Any]]:
        """The rows of a split the model got wrong, worst first, as JSON records beside their inputs
        (RUN/errors.jsonl, `evaluate --errors`): `gathered` is what compute_metrics got, in the
        split's feature order. [] where the family has no wrong rows to show (ftkit.tasks.common.no_errors)."""

    # File names figures() may write into plots/: with the common ones, the only files there a
    # run replaces or removes (a user's own PNG beside them is theirs)
    PLOTS: tuple[str, ...]

    def figures(self, split: str, scores: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
        """(file name, caption, matplotlib Figure) of the plots beyond the common ones, named in PLOTS."""

    # --- predict
    def predict_inputs(self, source: str | list[str], column: str | None, config: RunConfig | None, encoding: str) -> Iterator[dict[str, Any]]:
        """Input records in order from a file, "-" (stdin) or a list of literal inputs (--text)."""

    def input_size(self, record: dict[str, Any]) -> int:
        """A record's size, to sort a chunk by before batching (less padding)."""

    def predict_defaults(self, options: Any, config: RunConfig) -> None:
        """Fill predict's options that come from the run (prefix, stride, ...)."""

    def predictor(self, model: Any, processor: Any, options: Any) -> Callable[[list[dict]], list[dict]]:
        """A function from input records to output records."""

    # --- the model card
    def describe(self, config: RunConfig, names: list[str]) -> str:
        """One sentence: what the model does ("Classifies a text into one of: ...")."""

    def data_columns(self, config: RunConfig) -> str:
        """Which columns the run read, in the family's terms."""

    def hub_metrics(self, config: RunConfig) -> list[str]:
        """Hub metric ids for the card's metadata."""

    def usage(self, config: RunConfig) -> Usage:
        """How the card's Use section runs the saved model."""


# The members get_task checks a module for (the Protocol above is the documentation and the type).
MEMBERS = tuple(
    name for name in (*Family.__annotations__, *vars(Family))
    if not name.startswith("_") and name not in ("MEMBERS",)
)
