"""Regression: one number per text or text pair (similarity as in STS-B, ratings, prices).

A ForSequenceClassification head with one output (num_labels=1, problem_type="regression"): the
model's own loss is then the mean squared error, and pipeline("text-classification") applies no
function to its output. Texts, pairs, tokenizing and predict's reading are classification's.

Target scaling (train.target_scaling): "standard" trains on (target - mean) / std of the training
targets, so the new head starts near the targets whatever their units (a price in the hundreds
would otherwise take thousands of steps to reach). The scale rides in Prepared.extra; validation
and test keep their targets in the data's units and the metrics unscale the model's outputs.
`finalize` then folds the scale into the head's last layer, so the saved model (and pipeline())
outputs the data's units and nothing downstream needs to know a scale was used.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftkit import metrics
from ftkit.bounded import shown
from ftkit.columns import Roles
from ftkit.config import RunConfig
from ftkit.data import Split
from ftkit.errors import FtkitError
from ftkit.tasks import classification
from ftkit.tasks.common import linear_layers, model_loss, records_read_by_ftkit, refuse_calibration, token_batch_size, token_lengths
from ftkit.tasks.common import ERRORS_CAP, Inputs
from ftkit.tasks.family import Loss, Prepared, Usage
from ftkit.values import structure

# --- what it is
AUTO_MODEL = "AutoModelForSequenceClassification"
ARCHITECTURES = ("ForSequenceClassification",)  # a classifier's too: serves() tells them apart
PEFT_TASK = "SEQ_CLS"
NEW_HEAD = True  # the one-output head is new: under LoRA it trains in full
CLASS_WEIGHTS = False  # no classes to weigh
GGUF = False
ONNX = True  # one forward pass (the target scale is folded into the head)
LONG_INPUTS = "truncated"  # past train.max_length a text is cut
LOCAL_MODEL = classification.LOCAL_MODEL  # the same encoders fit

# --- data
STRATIFY = None  # a number has no class balance to keep
META_KEYS: tuple[str, ...] = ()
CONVENTIONAL_COLUMNS = {"text": "text", "label": "label"}
# integer ratings (1..5) look like labels, measured values like numbers: either is a target
COLUMN_KINDS = {"text": "text", "text_pair": "text", "label": ("numbers", "labels")}
LOCAL_FOLDERS = False  # local data are files of records
read_local = records_read_by_ftkit
lengths = token_lengths
batch_size = token_batch_size
load_processor = classification.load_processor
pipeline_tag = classification.pipeline_tag  # text-classification: it returns the raw output for problem_type regression
normalizer = classification.normalizer
check_model = classification.check_model
collator = classification.collator

NEEDS = "regression needs one number per row; check --label-column"
LOWER_IS_BETTER = ("mse", "rmse", "mae", "loss")
SCATTER_POINTS = 2000  # (true, predicted) pairs kept in each split's metrics for the scatter plot
PLOTS = ("regression_scatter.png",)  # what figures() draws into plots/


def serves(model_config: Any) -> bool:
    """A ForSequenceClassification folder whose head predicts a number."""
    return getattr(model_config, "problem_type", None) == "regression"


def columns(config: RunConfig) -> Roles:
    d = config.data
    return Roles({"text": d.text_column, "text_pair": d.text_pair_column, "label": d.label_column}, COLUMN_KINDS)


def check_config(config: RunConfig) -> None:
    """Class names mean nothing here; the primary metric's direction must match greater_is_better
    (else the loop would keep the worst model)."""
    refuse_calibration(config)
    if config.data.labels is not None:
        raise FtkitError("'data.labels' names classes, but a regression target is a number: remove it")
    m = config.metrics
    lower = m.primary in LOWER_IS_BETTER
    if m.primary in (*LOWER_IS_BETTER, "pearson", "spearman") and lower == m.greater_is_better:
        raise FtkitError(
            f"metrics.primary '{m.primary}' is better when {'lower' if lower else 'higher'}: "
            f"set --set metrics.greater_is_better={str(not lower).lower()}"
        )


# ---------------------------------------------------------------------------------- targets


def target(value: Any, source: str, row: int) -> float:
    """A target as a float: a number, or a string that spells one (" 3.5 "). Booleans, missing
    and non-finite values, structures and other strings are one line naming the row."""
    number = None
    if value is not None and not isinstance(value, bool) and type(value).__name__ != "bool_" and structure(value) is None:
        try:
            number = float(value)  # float() takes " 2 " and "3.5e1"; numpy scalars too
        except (TypeError, ValueError, OverflowError):
            number = None
    if number is None or not math.isfinite(number):
        raise FtkitError(f"{source}: line/row {row}: the target is {shown(value)}; {NEEDS}")
    return number


@dataclass
class TargetScale:
    """How the model's outputs relate to the data: data = output * std + mean, until the scale
    is in the model (`in_model`: folded into its head, or never used) and outputs are data."""

    mean: float = 0.0
    std: float = 1.0
    in_model: bool = True
    # The raw texts of the scored splits, riding in Prepared.extra with the scale: errors() shows them
    inputs: Inputs = field(default_factory=Inputs, repr=False)

    def to_data(self, outputs: Any) -> Any:
        return outputs if self.in_model else outputs * self.std + self.mean

    def recorded(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}


def fitted_scale(train: Split, targets: list[float], scaling: str) -> tuple[TargetScale, str | None]:
    """The scale of the training targets (and a note saying so); equal targets teach nothing."""
    import numpy as np

    values = np.asarray(targets, dtype=np.float64)
    mean, std = float(values.mean()), float(values.std())  # population std, as sklearn's StandardScaler
    if std == 0:
        raise FtkitError(f"{train.source}: every training target is {values[0]:g}; a regression model needs targets that differ (check --label-column)")
    if scaling == "none":
        return TargetScale(), None
    note = (f"targets standardised for training: (target - {mean:.6g}) / {std:.6g} (train.target_scaling); "
            "the saved model outputs the data's units")
    return TargetScale(mean, std, in_model=False), note


def saved_scale(model_dir: str) -> TargetScale:
    """The scale a saved model was trained on (its config's target_scale), already in its head:
    evaluate's loss is then on the scale it trained on, as the run's was. None recorded: 0 / 1."""
    from ftkit.model_checks import read_json

    for name in ("config.json", "model_config.json"):  # a model folder's, a LoRA adapter's
        path = Path(model_dir) / name
        if path.is_file():
            recorded = read_json(path).get("target_scale")
            if isinstance(recorded, dict) and recorded.get("std"):
                return TargetScale(float(recorded["mean"]), float(recorded["std"]), in_model=True)
    return TargetScale()


def prepare(splits: dict[str, Split], config: RunConfig, tokenizer: Any, names: list[str] | None = None) -> Prepared:
    """Targets as floats (training's scaled), texts (and pairs) tokenized once. `names` given: a
    saved model is evaluated, whose outputs are in the data's units already (no scaling)."""
    notes: list[str] = []
    targets = {name: [target(v, split.source, r) for v, r in zip(split.columns["label"], split.rows)] for name, split in splits.items()}
    if names is None:
        scale, note = fitted_scale(splits["train"], targets["train"], config.train.target_scaling)
        notes += [note] if note else []
        targets["train"] = [(t - scale.mean) / scale.std for t in targets["train"]]
    else:
        scale = saved_scale(config.model)
    features = {name: classification.text_features(split, config, tokenizer, targets[name], notes, scale.inputs.kept(name)) for name, split in splits.items()}
    return Prepared(features, [], notes, extra=scale)


def check_metric_keys(config: RunConfig, names: list[str]) -> None:
    """The recipe's primary metric and bars must be reported here: fail before training."""
    metrics.check_reported([config.metrics.primary, *config.expect], {**scores([0.0, 1.0, 2.0], [0.0, 1.0, 2.0]), "loss": 0.0}, "regression")


# ---------------------------------------------------------------------------------- model


def load_model(source: str, prepared: Prepared, tokenizer: Any, config: RunConfig) -> Any:
    from transformers import AutoModelForSequenceClassification

    from ftkit.models import load_pretrained

    name = config.data.label_column  # pipeline() names the output by it
    model = load_pretrained(
        AutoModelForSequenceClassification, source, num_labels=1, problem_type="regression",
        id2label={0: name}, label2id={name: 0}, new_head=True,
    )
    model.config.pad_token_id = tokenizer.pad_token_id  # GPT-2-style models find each sequence's end by it
    model.config.target_scale = None  # finalize records the one folded in; none inherited from the source
    return model


def training_loss(prepared: Prepared, config: RunConfig) -> Loss:
    return model_loss(META_KEYS)  # problem_type="regression": the model's own MSE, on the scaled targets


def output_layer(model: Any) -> Any:
    """The head's last layer: the one nn.Linear with a single output."""
    found = linear_layers(model, 1)
    if len(found) != 1 or found[0][1].bias is None:
        what = f"{len(found)} single-output linear layers" if len(found) != 1 else f"'{found[0][0]}' has no bias"
        raise FtkitError(f"cannot fold the target scale into this model's head ({what}): train on the raw targets with --set train.target_scaling=none")
    return found[0][1]


def finalize(model: Any, prepared: Prepared, config: RunConfig, best: dict[str, Any]) -> dict[str, Any]:
    """Fold the target scale into the head (W*std, b*std + mean), so the saved model outputs the
    data's units; record it in the model's config and metrics.json. Nothing to do when unscaled."""
    import torch

    scale: TargetScale = prepared.extra
    if scale.in_model:
        return {}
    head = output_layer(model)
    with torch.no_grad():
        head.weight.mul_(scale.std)
        head.bias.mul_(scale.std).add_(scale.mean)
    scale.in_model = True  # test metrics are now of outputs in the data's units: no second unscaling
    model.config.target_scale = scale.recorded()
    return {"target_scale": scale.recorded()}


# ---------------------------------------------------------------------------------- evaluation


def eval_outputs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """One output and one target per example."""
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    return {"predictions": logits.float().squeeze(-1), "targets": batch["labels"].float()}


def scores(predicted: Any, true: Any) -> dict[str, Any]:
    """mse, rmse, mae (numpy) and Pearson's and Spearman's correlations (scipy.stats). A constant
    side has no correlation to measure: it scores 0.0 (not NaN, which would poison the best-model
    pick and metrics.json), as a model that predicts the mean for everything deserves."""
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    p, t = np.asarray(predicted, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if len(p) == 0:
        raise FtkitError("no examples to evaluate")
    varied = len(p) > 1 and np.ptp(p) > 0 and np.ptp(t) > 0
    mse = float(np.mean((p - t) ** 2))
    return {
        "mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(p - t))),
        "pearson": float(pearsonr(p, t).statistic) if varied else 0.0,
        "spearman": float(spearmanr(p, t).statistic) if varied else 0.0,
        "samples": len(p),
    }


def compute_metrics(gathered: dict[str, Any], prepared: Prepared, split: str) -> dict[str, Any]:
    """Metrics in the data's units, and a sample of (true, predicted) pairs for the scatter plot."""
    scale: TargetScale = prepared.extra
    predicted = scale.to_data(gathered["predictions"].double()).tolist()
    true = gathered["targets"].double().tolist()
    result = scores(predicted, true)
    # The loss the model trained on: MSE on the scaled targets (= data-unit MSE / std^2), so the
    # validation loss sits on the training loss's curve.
    result["loss"] = result["mse"] / scale.std**2
    step = max(1, math.ceil(len(true) / SCATTER_POINTS))  # evenly through the split: sorted data stays represented
    result["scatter"] = {"true": true[::step], "predicted": predicted[::step]}
    return result


def errors(gathered: dict[str, Any], prepared: Prepared, split: str) -> list[dict[str, Any]]:
    """The ERRORS_CAP rows with the largest absolute errors, largest first, in the data's units:
    {"text"[, "text_pair"], "gold", "predicted", "error" (predicted - gold)}."""
    scale: TargetScale = prepared.extra
    predicted = scale.to_data(gathered["predictions"].double()).tolist()
    texts = scale.inputs.rows[split]
    rows = [{**texts[i], "gold": g, "predicted": p, "error": p - g} for i, (g, p) in enumerate(zip(gathered["targets"].double().tolist(), predicted))]
    return sorted(rows, key=lambda row: -abs(row["error"]))[:ERRORS_CAP]


def figures(split: str, scores: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """Predicted against true targets, the diagonal (perfect predictions) dashed."""
    from ftkit import plots

    yield from plots.named(PLOTS[0], scatter(split, scores.get("scatter"), scores.get("samples")))


def scatter(split: str, pairs: Any, samples: Any = None) -> tuple[Any, str] | None:
    if not isinstance(pairs, dict) or not pairs.get("true") or len(pairs["true"]) != len(pairs.get("predicted") or ()):
        return None
    from ftkit import plots

    fig = plots.figure(5, 5)
    ax = fig.subplots()
    true, predicted = pairs["true"], pairs["predicted"]
    ax.scatter(true, predicted, s=10, alpha=0.5)
    lo, hi = min(true + predicted), max(true + predicted)
    ax.plot([lo, hi], [lo, hi], linestyle="--", color="grey")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    shown_of = f"{len(true)} of {samples}" if isinstance(samples, int) and samples > len(true) else f"{len(true)}"
    ax.set_title(f"Predicted vs true ({split}, {shown_of} examples)")
    return fig, f"Predicted against true values on the {split} split; the dashed diagonal is a perfect prediction."


# ---------------------------------------------------------------------------------- predict

predict_inputs = classification.predict_inputs  # {"text"} or, for a pair model, {"text", "text_pair"} records
input_size = classification.input_size
predict_defaults = classification.predict_defaults  # the run's data.prefix


def predictor(model: Any, tokenizer: Any, options: Any) -> Any:
    """Input records -> the records with "score": the model's output, in the data's units (the
    scale is in the head)."""

    def run(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        outputs = classification.logits_of(model, tokenizer, records, options.max_length, options.prefix)
        return [{**record, "score": float(value)} for record, value in zip(records, outputs[:, 0].tolist())]

    return run


# ---------------------------------------------------------------------------------- the model card


def describe(config: RunConfig, names: list[str]) -> str:
    what = "text pair" if config.data.text_pair_column else "text"
    return f"Predicts a number (`{config.data.label_column}`) from a {what}."


def data_columns(config: RunConfig) -> str:
    d = config.data
    pair = f", text pair column `{d.text_pair_column}`" if d.text_pair_column else ""
    return f"text column `{d.text_column}`{pair}, target column `{d.label_column}` (a number)"


def hub_metrics(config: RunConfig) -> list[str]:
    return ["pearsonr", "spearmanr", "mse"]  # huggingface.co/metrics ids


def usage(config: RunConfig) -> Usage:
    # target_scaling is listed with the limits so the card's hyperparameters show it
    return Usage(config.data.prefix + "A gripping, beautifully shot film.", ', function_to_apply="none"',
                 limits=("max_length", "target_scaling"))
