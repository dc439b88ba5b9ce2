"""Multi-label classification: any number of labels per text (topics, emotions, tags).

A sigmoid per label with binary cross entropy (problem_type="multi_label_classification"). A
row's labels are a list (json, jsonl, parquet) or one string joined by data.label_separator
(csv, tsv). The decision threshold on the sigmoid scores (one, or one per label) is tuned on
validation, saved in the model's config.json as `label_thresholds`, and used by the test split,
`ftkit evaluate` and `ftkit predict`: the test split never tunes.

The text side (pairs, empties, prefix, tokenizing, predict's inputs) is classification's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from ftkit.columns import Roles
from ftkit.config import RunConfig
from ftkit.data import Split
from ftkit.errors import FtkitError
from ftkit.tasks import classification
from ftkit.tasks.common import Inputs, model_loss, records_read_by_ftkit, token_batch_size, token_lengths, weighted_loss, refuse_calibration
from ftkit.tasks.family import Loss, Prepared, Usage
from ftkit.values import structure

# --- what it is
AUTO_MODEL = "AutoModelForSequenceClassification"
ARCHITECTURES = ("ForSequenceClassification",)  # told apart from single-label heads by serves()
PEFT_TASK = "SEQ_CLS"
NEW_HEAD = True  # the classifier is new: under LoRA it trains in full
CLASS_WEIGHTS = True  # train.class_weights: each label's positives weigh negatives/positives (BCE pos_weight)
GGUF = False
ONNX = True  # logits from one forward pass (the thresholds live in config.json)
LONG_INPUTS = "truncated"  # past train.max_length a text is cut
LOCAL_MODEL = classification.LOCAL_MODEL

# --- data
STRATIFY = None  # a row's set of labels is no class: carved splits are not stratified
META_KEYS: tuple[str, ...] = ()
CONVENTIONAL_COLUMNS = {"text": "text", "label": "labels"}  # what local files usually call them
# A list of label names looks like a list of words (or of tags); a joined string like labels
COLUMN_KINDS = {"text": "text", "text_pair": "text", "label": ("words", "tags", "labels")}
LOCAL_FOLDERS = False  # local data are files of records
read_local = records_read_by_ftkit
lengths = token_lengths
batch_size = token_batch_size
collator = classification.collator
load_processor = classification.load_processor
check_model = classification.check_model  # a sequence-classification architecture, max_length within its positions

PROBLEM_TYPE = "multi_label_classification"
THRESHOLDS_KEY = "label_thresholds"  # model.config: {label: threshold}, saved in config.json
DEFAULT_THRESHOLD = 0.5  # a model that carries no thresholds (one not trained by ftkit)
THRESHOLD_CHOICES = ("tune", "tune-per-label")
GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # thresholds tried when tuning: 0.05 .. 0.95
PLOTS = ("label_f1.png",)


def serves(model_config: Any) -> bool:
    """A ForSequenceClassification head whose labels are independent sigmoids."""
    return getattr(model_config, "problem_type", None) == PROBLEM_TYPE


def pipeline_tag(config: RunConfig) -> str:
    return "text-classification"  # with top_k=None it gives every label's sigmoid score


def columns(config: RunConfig) -> Roles:
    d = config.data
    return Roles({"text": d.text_column, "text_pair": d.text_pair_column, "label": d.label_column}, COLUMN_KINDS)


def normalizer(config: RunConfig) -> None:
    """Records are read as they are."""
    return None


def fixed_threshold(setting: str) -> float | None:
    """metrics.threshold as a number in (0, 1), or None for the tuned choices."""
    if setting in THRESHOLD_CHOICES:
        return None
    try:
        value = float(setting)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:  # NaN fails this too
        raise FtkitError(
            f"'metrics.threshold' must be tune, tune-per-label or a number between 0 and 1 (exclusive), got {str(setting)[:40]!r}; "
            "set it with `--set metrics.threshold=tune`"
        )
    return value


def check_config(config: RunConfig) -> None:
    """The threshold choice, and a separator that can split a cell."""
    refuse_calibration(config)
    fixed_threshold(config.metrics.threshold)
    if not config.data.label_separator:
        raise FtkitError("'data.label_separator' is empty; pass --label-separator ',' (or whatever joins the labels in your csv cells)")


# ---------------------------------------------------------------------------------- labels


def row_labels(value: Any, separator: str, source: str, row: int) -> list[str]:
    """A row's labels as string keys, each once, in order: from a list (names or ids) or a string
    split on `separator`. "" and [] are a row with no label; None/NaN, mappings and nested lists
    are refused with their row."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()  # parquet / pandas give arrays for list columns
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise FtkitError(
            f"{source}: line/row {row}: the labels are empty (None/NaN); write [] or \"\" for a row with no label, or drop the row"
        )
    if isinstance(value, str):
        items: list[Any] = [part.strip() for part in value.split(separator)]
        items = [item for item in items if item]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, (int, float)):
        items = [value]  # one label, as a single-label file writes it
    else:
        raise FtkitError(
            f"{source}: line/row {row}: the labels are {structure(value) or type(value).__name__}; expected a list of label names "
            f"or ids, or names joined by {separator!r} (check --label-column, --label-separator)"
        )
    keys = []
    for item in items:
        if isinstance(item, (list, tuple, dict)) or structure(item):
            raise FtkitError(
                f"{source}: line/row {row}: a label inside the list is {structure(item) or 'a list'}; "
                "expected a flat list of label names or ids (check --label-column)"
            )
        keys.append(classification.label_key(item, source, row))
    return list(dict.fromkeys(keys))


def split_labels(split: Split, separator: str) -> list[list[str]]:
    """Every row's label keys."""
    return [row_labels(value, separator, split.source, row) for value, row in zip(split.columns["label"], split.rows)]


def label_names(rows: list[list[str]], source: str, recipe_labels: list[str] | None) -> tuple[list[str], str | None]:
    """Label names in id order, and a note when they did not come from the recipe: the recipe's
    `labels` when every training label is one of them or an integer index into them, else the
    distinct training labels sorted (numerically when all are integers)."""
    keys = {key for row in rows for key in row}
    note = None
    if recipe_labels and all(classification.label_index(k, recipe_labels, True) is not None for k in keys):
        names = list(recipe_labels)
    else:
        ints = all(classification.INTEGER.match(k) for k in keys)
        names = sorted(keys, key=lambda k: int(k) if ints else k)
        if recipe_labels:
            note = f"labels {classification.listing(list(recipe_labels))} do not match the data; using the data's: {classification.listing(names)}"
    if len(names) < 2:
        raise FtkitError(
            f"{source}: the training data has {len(names)} distinct label(s) ({classification.listing(names) or 'none'}); "
            "multi-label classification needs at least two (check --label-column and --label-separator)"
        )
    return names, note


def multi_hot(rows: list[list[str]], split: Split, names: list[str], split_name: str, by_index: bool) -> list[list[float]]:
    """One 0/1 float per label for each row; labels the model does not know are one error listing them."""
    vectors, unseen = [], {}
    for keys, row in zip(rows, split.rows):
        vector = [0.0] * len(names)
        for key in keys:
            index = classification.label_index(key, names, by_index)
            if index is None:
                unseen.setdefault(key, row)
            else:
                vector[index] = 1.0
        vectors.append(vector)
    if unseen:
        raise classification.unseen_labels(split, split_name, unseen, names)
    return vectors


def prepare(splits: dict[str, Split], config: RunConfig, tokenizer: Any, names: list[str] | None = None) -> Prepared:
    """Multi-hot label vectors and tokenized texts of every split; `names`: a saved model's."""
    notes: list[str] = []
    rows = {name: split_labels(split, config.data.label_separator) for name, split in splits.items()}
    by_index = names is not None  # a trained model's names are in id order
    if names is None:
        names, note = label_names(rows["train"], splits["train"].source, config.data.labels)
        notes += [note] if note else []
        by_index = names == list(config.data.labels or [])
    inputs = Inputs()  # the raw texts of the scored splits: errors() shows them
    features = {
        name: classification.text_features(split, config, tokenizer, multi_hot(rows[name], split, names, name, by_index), notes, inputs.kept(name))
        for name, split in splits.items()
    }
    return Prepared(features, names, notes, extra={"threshold": config.metrics.threshold, "inputs": inputs})


# ---------------------------------------------------------------------------------- metrics


def label_scores(gold: Any, predicted: Any, names: list[str]) -> dict[str, Any]:
    """Micro/macro precision, recall and F1, subset accuracy, Hamming loss and per-label scores
    (scikit-learn) of 0/1 matrices (rows x labels)."""
    from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support

    if len(gold) == 0:
        raise FtkitError("no examples to evaluate")
    out: dict[str, Any] = {}
    for average in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(gold, predicted, average=average, zero_division=0)
        out.update({f"f1_{average}": float(f), f"precision_{average}": float(p), f"recall_{average}": float(r)})
    out["subset_accuracy"] = float(accuracy_score(gold, predicted))  # every label of the row right
    out["hamming_loss"] = float(hamming_loss(gold, predicted))
    pc, rc, fc, sc = precision_recall_fscore_support(gold, predicted, average=None, zero_division=0)
    out["per_label"] = {
        name: {"precision": float(pc[i]), "recall": float(rc[i]), "f1": float(fc[i]), "support": int(sc[i])} for i, name in enumerate(names)
    }
    return out


def _f1(gold: Any, predicted: Any, axis: int | None) -> Any:
    """F1 from counts (0 where there is nothing to find and nothing found), per label (axis 0) or micro (None)."""
    import numpy as np

    tp = (gold & predicted).sum(axis=axis)
    wrong = (gold ^ predicted).sum(axis=axis)  # false positives + false negatives
    return np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)


def tune(probs: Any, gold: Any, per_label: bool) -> list[float]:
    """Thresholds from GRID: one maximising micro F1, or one per label maximising its own F1;
    ties go to the value nearest 0.5."""
    import numpy as np

    # thresholds x labels (per label) or thresholds (one): F1 at each grid value
    scores = np.stack([_f1(gold, probs >= t, 0 if per_label else None) for t in GRID])
    order = sorted(range(len(GRID)), key=lambda i: abs(GRID[i] - 0.5))  # nearest 0.5 first: argmax keeps the first of a tie
    picked = np.asarray(order)[np.argmax(scores[order], axis=0)]
    return [GRID[int(i)] for i in np.atleast_1d(picked)] if per_label else [GRID[int(picked)]] * gold.shape[1]


def check_metric_keys(config: RunConfig, names: list[str]) -> None:
    """The recipe's primary metric and bars must be reported for these labels: fail before training."""
    import numpy as np

    from ftkit import metrics

    sample = label_scores(np.eye(2, len(names), dtype=int), np.eye(2, len(names), dtype=int), names)
    sample.update(loss=0.0, samples=2)
    metrics.check_reported([config.metrics.primary, *config.expect], sample, "multi-label classification")


# ---------------------------------------------------------------------------------- model


def load_model(source: str, prepared: Prepared, tokenizer: Any, config: RunConfig) -> Any:
    from transformers import AutoModelForSequenceClassification

    from ftkit.models import load_pretrained

    names = prepared.names
    model = load_pretrained(
        AutoModelForSequenceClassification, source,
        num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        problem_type=PROBLEM_TYPE,  # sigmoid + BCE in the model's loss, and in pipeline()
        new_head=True,
    )
    model.config.pad_token_id = tokenizer.pad_token_id  # GPT-2-style models find the last token by it
    fixed = fixed_threshold(config.metrics.threshold)
    # A checkpoint trained here before carries its thresholds: they belong to its old head, so
    # validation tunes afresh; a fixed threshold is the model's from the start.
    setattr(model.config, THRESHOLDS_KEY, dict.fromkeys(names, fixed) if fixed is not None else None)
    return model


def pos_weights(prepared: Prepared) -> list[float]:
    """Each label's negatives / positives in train (a label without positives keeps 1)."""
    import numpy as np

    labels = np.asarray(prepared.features["train"]["labels"], dtype=np.float64)
    positives = labels.sum(axis=0)
    negatives = len(labels) - positives
    return [float(n / p) if p > 0 else 1.0 for n, p in zip(negatives, positives)]


def training_loss(prepared: Prepared, config: RunConfig) -> Loss:
    """The model's own BCE; with train.class_weights, BCE whose positives of each label weigh
    negatives/positives, so a rare label's few examples count as much as its many absences."""
    if not config.train.class_weights:
        return model_loss(META_KEYS)
    import torch

    named = dict(zip(prepared.names, pos_weights(prepared)))
    bce = lambda logits, labels, weight: torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weight)  # noqa: E731
    compute = weighted_loss(META_KEYS, list(named.values()), bce)
    note = "positive weights per label (balanced): " + ", ".join(f"{n} {w:.3f}" for n, w in named.items())
    return Loss(compute, notes=(note,), recorded={"pos_weights": named})


def _config_of(model: Any) -> Any:
    """The transformers config of a model that may be DDP- or PEFT-wrapped."""
    model = getattr(model, "module", model)
    return model.get_base_model().config if hasattr(model, "get_base_model") else model.config


def model_thresholds(model_config: Any) -> list[float] | None:
    """The thresholds a model carries, in label id order, or None."""
    saved = getattr(model_config, THRESHOLDS_KEY, None)
    if not isinstance(saved, dict):
        return None
    names = [model_config.id2label[i] for i in range(model_config.num_labels)]
    return [float(saved.get(name, DEFAULT_THRESHOLD)) for name in names]


def finalize(model: Any, prepared: Prepared, config: RunConfig, best: dict[str, Any]) -> dict[str, Any]:
    """The best validation's thresholds into the model's config (saved in config.json), before
    the test split is scored with them."""
    tuned = best.get("thresholds")
    thresholds = {n: float(tuned[n]) if isinstance(tuned, dict) and n in tuned else DEFAULT_THRESHOLD for n in prepared.names}
    setattr(_config_of(model), THRESHOLDS_KEY, thresholds)
    return {"thresholds": thresholds}


# ---------------------------------------------------------------------------------- evaluation


def eval_outputs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """Logits and gold vectors; and the model's thresholds, one row per example (gathered like
    the rest), when it carries them: then metrics use them and never tune."""
    import torch

    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
    out = {"logits": logits, "labels": batch["labels"].float()}
    thresholds = model_thresholds(_config_of(model))
    if thresholds is not None:
        out["thresholds"] = torch.tensor(thresholds, device=logits.device).expand_as(logits)
    return out


def compute_metrics(gathered: dict[str, Any], prepared: Prepared, split: str) -> dict[str, Any]:
    """Metrics at the model's thresholds; a model without them tunes them on validation (else 0.5)."""
    import torch.nn.functional as F

    logits, labels = gathered["logits"], gathered["labels"]
    probs, gold = logits.sigmoid().numpy(), labels.numpy() >= 0.5
    thresholds = _thresholds(gathered, probs, gold, prepared, split)
    result = label_scores(gold.astype(int), (probs >= thresholds).astype(int), prepared.names)
    result["loss"] = float(F.binary_cross_entropy_with_logits(logits, labels))
    result["samples"] = len(gold)
    result["thresholds"] = dict(zip(prepared.names, (float(t) for t in thresholds)))
    return result


def _thresholds(gathered: dict[str, Any], probs: Any, gold: Any, prepared: Prepared, split: str) -> list[float]:
    """The model's thresholds; a model without them tunes them on validation (else 0.5)."""
    if "thresholds" in gathered:  # back from float32: 0.6 reads 0.6000000238, rounded to what was saved
        return [round(t, 6) for t in gathered["thresholds"][0].tolist()]
    if split == "validation":
        return tune(probs, gold, prepared.extra["threshold"] == "tune-per-label")
    return [DEFAULT_THRESHOLD] * len(prepared.names)


def errors(gathered: dict[str, Any], prepared: Prepared, split: str) -> list[dict[str, Any]]:
    """Every row whose predicted label set differs from its gold set, most confident mistake first:
    {"text"[, "text_pair"], "gold", "predicted" (label lists), "scores" (label -> probability),
    "score" (the confidence of its most confident wrong decision: p, or 1 - p for a label missed)}."""
    import numpy as np

    probs, gold = gathered["logits"].sigmoid().numpy(), gathered["labels"].numpy() >= 0.5
    predicted = probs >= np.asarray(_thresholds(gathered, probs, gold, prepared, split))
    names, texts, rows = prepared.names, prepared.extra["inputs"].rows[split], []
    for i in np.flatnonzero((predicted != gold).any(axis=1)).tolist():
        wrong = predicted[i] != gold[i]
        rows.append({
            **texts[i], "gold": [n for n, g in zip(names, gold[i]) if g], "predicted": [n for n, p in zip(names, predicted[i]) if p],
            "scores": dict(zip(names, probs[i].tolist())),
            "score": float(np.where(predicted[i], probs[i], 1 - probs[i])[wrong].max()),
        })
    return sorted(rows, key=lambda row: -row["score"])


def figures(split: str, scores: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """F1 per label, support in brackets (the entity-F1 bars, titled for labels)."""
    from ftkit import plots

    drawn = plots.entity_f1(split, scores.get("per_label"), "label")
    if drawn is not None:
        yield PLOTS[0], f"{drawn[1].removesuffix('.')} (at the saved thresholds).", drawn[0]


# ---------------------------------------------------------------------------------- model card


def describe(config: RunConfig, names: list[str]) -> str:
    return f"Tags a text with any of: {', '.join(names)}." if names else "Tags a text with any number of labels."


def data_columns(config: RunConfig) -> str:
    d = config.data
    pair = f", text pair column `{d.text_pair_column}`" if d.text_pair_column else ""
    return f"text column `{d.text_column}`{pair}, label column `{d.label_column}` (a list, or labels joined by {d.label_separator!r})"


def hub_metrics(config: RunConfig) -> list[str]:
    return ["f1", "precision", "recall", "accuracy"]  # huggingface.co/metrics ids


def usage(config: RunConfig) -> Usage:
    return Usage(config.data.prefix + "The match went to extra time and the stock market fell.", ", top_k=None")


# ---------------------------------------------------------------------------------- predict

predict_inputs = classification.predict_inputs  # {"text"} or, for a pair run, {"text", "text_pair"} records
input_size = classification.input_size
predict_defaults = classification.predict_defaults  # the run's data.prefix


def predictor(model: Any, tokenizer: Any, options: Any) -> Any:
    """Input records -> {**record, "labels": those over their threshold, best first, "scores":
    {label: sigmoid score}}: the scores pipeline("text-classification", top_k=None) gives."""
    config = model.config
    names = [config.id2label[i] for i in range(config.num_labels)]
    thresholds = model_thresholds(config) or [DEFAULT_THRESHOLD] * len(names)

    def run(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        probs = classification.logits_of(model, tokenizer, records, options.max_length, options.prefix).sigmoid().tolist()
        out = []
        for record, row in zip(records, probs):
            order = sorted(range(len(names)), key=lambda i: -row[i])
            labels = [names[i] for i in order if row[i] >= thresholds[i]]
            out.append({**record, "labels": labels, "scores": {names[i]: row[i] for i in order}})
        return out

    return run
