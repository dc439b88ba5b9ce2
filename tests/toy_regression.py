"""A fifth task family that lives in the tests: text regression (a text -> one number).

It proves the family protocol (ftkit/tasks/family.py) is the whole contract: this module plus
one registry line (`ftkit.tasks.FAMILY_MODULES["text-regression"] = "toy_regression"`, with
tests/ on sys.path) must be enough to train, evaluate, predict, resume, LoRA and write a card.
It is written standalone, copy-modify of ftkit/tasks/classification.py, importing no family.

A BERT-like encoder with a one-output head (num_labels=1, problem_type="regression"): the
model's own loss is then the mean squared error. Records are {"text", "score"}; the score is
the "label" role (data.label_column).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ftkit.columns import Roles
from ftkit.config import RunConfig
from ftkit.data import Split
from ftkit.errors import FtkitError
from ftkit.tasks.common import model_loss, no_errors, nothing_to_finalize, records_read_by_ftkit, serves_any, token_batch_size, token_lengths
from ftkit.tasks.family import Loss, Prepared, Usage
from ftkit.values import as_text, column_texts, cut_texts, text_limit

# --- what it is
AUTO_MODEL = "AutoModelForSequenceClassification"
ARCHITECTURES: tuple[str, ...] = ()  # never told from a bare folder: predict reads the run's config.yaml
serves = serves_any
finalize = nothing_to_finalize  # the raw targets are trained on: nothing to fold into the head
errors = no_errors  # a toy: no rows listed in errors.jsonl
PEFT_TASK = "SEQ_CLS"
NEW_HEAD = True  # the one-output head is new: under LoRA it trains in full
CLASS_WEIGHTS = False  # no classes to weigh
GGUF = False
ONNX = False  # a family added by one module need not export
LONG_INPUTS = "truncated"
LOCAL_MODEL = "pass a local folder: --model /path/to/model (a BERT-like encoder save_pretrained wrote)"

# --- data
STRATIFY = None  # a number has no class balance to keep
META_KEYS: tuple[str, ...] = ()
CONVENTIONAL_COLUMNS = {"text": "text", "label": "score"}
COLUMN_KINDS = {"text": "text", "label": "labels"}  # ftkit.columns.KINDS has no kind for numbers
METRIC_KEYS = ("mse", "mae", "pearson", "loss", "samples")
SCATTER_POINTS = 2000  # predicted/true pairs kept in metrics.json for the scatter plot
PLOT = "regression_scatter.png"
PLOTS = (PLOT,)  # what figures() draws into plots/

lengths = token_lengths
LOCAL_FOLDERS = False  # local data are files of records
read_local = records_read_by_ftkit
batch_size = token_batch_size


def pipeline_tag(config: RunConfig) -> str:
    return "text-classification"  # with function_to_apply="none" it returns the raw score


def columns(config: RunConfig) -> Roles:
    return Roles({"text": config.data.text_column, "label": config.data.label_column}, COLUMN_KINDS)


def normalizer(config: RunConfig) -> None:
    """Records are read as they are."""
    return None


# Settings of other families that mean nothing here: refused, not silently ignored
# (train.class_weights is refused by ftkit itself: CLASS_WEIGHTS is False).
NOT_APPLICABLE = {
    "data.labels": lambda c: c.data.labels is not None,
    "data.text_pair_column": lambda c: c.data.text_pair_column is not None,
    "data.target_column": lambda c: c.data.target_column is not None,
    "data.source_lang": lambda c: c.data.source_lang is not None or c.data.target_lang is not None,
    "data.format": lambda c: c.data.format != "auto",
    "metrics.mode": lambda c: c.metrics.mode != "default",
}


def check_config(config: RunConfig) -> None:
    for key, applies in NOT_APPLICABLE.items():
        if applies(config):
            raise FtkitError(f"'{key}' does not apply to text-regression recipes; remove it")


def check_model(model_config: Any, config: RunConfig) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    if model_config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise FtkitError(f"model '{config.model}' is a '{model_config.model_type}' model, which cannot do text regression")


def load_processor(source: str) -> Any:
    from ftkit.models import load_tokenizer

    return load_tokenizer(source)


# ---------------------------------------------------------------------------------- features


def score_of(value: Any, source: str, row: int) -> float:
    """A target as a float; empty, non-numeric and non-finite ones are refused with their row."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise FtkitError(f"{source}: line/row {row}: the score is {value!r}; expected a number (check --label-column)")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FtkitError(f"{source}: line/row {row}: the score {str(value)[:40]!r} is not a number (check --label-column)") from None
    if not math.isfinite(number):
        raise FtkitError(f"{source}: line/row {row}: the score is {number}; fill it in or drop the row")
    return number


def prepare(splits: dict[str, Split], config: RunConfig, processor: Any, names: list[str] | None = None) -> Prepared:
    """Targets as floats, texts tokenized once; empty texts are dropped and counted. `names` (a
    saved model's id2label) mean nothing to a regression head and are ignored."""
    import datasets

    notes: list[str] = []
    features = {}
    for split_name, split in splits.items():
        scores = [score_of(v, split.source, r) for v, r in zip(split.columns["label"], split.rows)]
        texts, _ = column_texts(split.columns["text"], split.rows, split.source, "text", text_limit(config.train.max_length))
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if len(keep) < len(texts):
            notes.append(f"{split.source}: skipped {len(texts) - len(keep)} example(s) with an empty text")
        if not keep:
            raise FtkitError(f"{split.source}: every text is empty (check --text-column)")
        table = {"text": [config.data.prefix + texts[i] for i in keep], "labels": [scores[i] for i in keep]}
        features[split_name] = datasets.Dataset.from_dict(table).map(
            lambda batch: processor(batch["text"], truncation=True, max_length=config.train.max_length),
            batched=True, remove_columns=["text"],
        )
    return Prepared(features, [], notes)


def check_metric_keys(config: RunConfig, names: list[str]) -> None:
    for key in [config.metrics.primary, *config.expect]:
        if key not in METRIC_KEYS:
            raise FtkitError(f"metric '{key}' is not reported for text regression. Metrics available: {', '.join(METRIC_KEYS)}")


# ---------------------------------------------------------------------------------- model


def load_model(source: str, prepared: Prepared, processor: Any, config: RunConfig) -> Any:
    from transformers import AutoModelForSequenceClassification

    from ftkit.models import load_pretrained

    model = load_pretrained(AutoModelForSequenceClassification, source, num_labels=1, problem_type="regression", new_head=True)
    model.config.pad_token_id = processor.pad_token_id
    return model


def collator(processor: Any, pad_to_multiple_of: int | None) -> Any:
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(processor, pad_to_multiple_of=pad_to_multiple_of)


def training_loss(prepared: Prepared, config: RunConfig) -> Loss:
    return model_loss(META_KEYS)  # problem_type="regression": the model's loss is MSE


# ---------------------------------------------------------------------------------- evaluation


def eval_outputs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """One prediction and one target per example."""
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    return {"predictions": logits.float().squeeze(-1), "targets": batch["labels"].float()}


def regression_metrics(predicted: list[float], true: list[float]) -> dict[str, Any]:
    """mse, mae and Pearson's r; r is 0.0 when either side is constant (no linear relation to see)."""
    import numpy as np

    p, t = np.asarray(predicted, dtype=np.float64), np.asarray(true, dtype=np.float64)
    mse = float(np.mean((p - t) ** 2))
    pearson = float(np.corrcoef(p, t)[0, 1]) if len(p) > 1 and p.std() > 0 and t.std() > 0 else 0.0
    return {"mse": mse, "mae": float(np.mean(np.abs(p - t))), "pearson": pearson, "loss": mse, "samples": len(p)}


def compute_metrics(gathered: dict[str, Any], prepared: Prepared, split: str) -> dict[str, Any]:
    predicted, true = gathered["predictions"].tolist(), gathered["targets"].tolist()
    result = regression_metrics(predicted, true)
    result["scatter"] = {"true": true[:SCATTER_POINTS], "predicted": predicted[:SCATTER_POINTS]}
    return result


def figures(split: str, scores: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """Predicted against true scores, the diagonal dashed."""
    scatter = scores.get("scatter")
    if not isinstance(scatter, dict) or not scatter.get("true"):
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    true, predicted = scatter["true"], scatter["predicted"]
    ax.scatter(true, predicted, s=12, alpha=0.6)
    lo, hi = min(true + predicted), max(true + predicted)
    ax.plot([lo, hi], [lo, hi], linestyle="--", color="grey")
    ax.set_xlabel("true score")
    ax.set_ylabel("predicted score")
    ax.set_title(f"Predicted vs true ({split})")
    yield PLOT, f"Predicted against true scores on the {split} split, the diagonal dashed.", fig


# ---------------------------------------------------------------------------------- predict


def predict_inputs(source: str | list[str], column: str | None, config: RunConfig | None, encoding: str) -> Iterator[dict[str, Any]]:
    """{"text"} records: --text literals, lines of a .txt file or stdin, or a table's text column."""
    from ftkit.data import iter_records

    if isinstance(source, list):
        yield from ({"text": text} for text in source)
        return
    plain = source == "-" or Path(source).suffix.lower() == ".txt"
    name = column or (config.data.text_column if config else "text")
    for row, record in iter_records(source, encoding):
        if plain:
            if record["text"].strip():
                yield {"text": record["text"]}
            continue
        if name not in record:
            raise FtkitError(f"{source}: line/row {row} has no column '{name}' (columns: {', '.join(record)}); pass --text-column")
        yield {"text": as_text(record[name], source, row)}


def input_size(record: dict[str, Any]) -> int:
    return len(record["text"])


def predict_defaults(options: Any, config: RunConfig) -> None:
    if config is not None:
        options.max_length = config.train.max_length


def predictor(model: Any, processor: Any, options: Any) -> Any:
    """Input records -> [{"score": float}], in order."""
    import torch

    def run(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        texts, _ = cut_texts([r["text"] for r in records], text_limit(options.max_length))
        encoded = processor(texts, truncation=True, max_length=options.max_length, padding=True, return_tensors="pt")
        with torch.inference_mode():
            scores = model(**{k: v.to(model.device) for k, v in encoded.items()}).logits.float().squeeze(-1)
        return [{"score": s} for s in scores.tolist()]

    return run


# ---------------------------------------------------------------------------------- the model card


def describe(config: RunConfig, names: list[str]) -> str:
    return f"Predicts a numeric score (`{config.data.label_column}`) for a text."


def data_columns(config: RunConfig) -> str:
    return f"text column `{config.data.text_column}`, score column `{config.data.label_column}`"


def hub_metrics(config: RunConfig) -> list[str]:
    return ["mse", "mae", "pearsonr"]


def usage(config: RunConfig) -> Usage:
    return Usage("A gripping, beautifully shot film.", ', function_to_apply="none"')
