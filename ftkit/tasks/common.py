"""Pieces several text families share; a family takes them or answers in its own way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftkit.columns import Roles, missing_column
from ftkit.data import CONLL_SUFFIXES, TABLE_SUFFIXES, TEXT_SUFFIXES, check_readable, iter_records
from ftkit.errors import FtkitError
from ftkit.tasks.family import Loss
from ftkit.values import as_text


def model_loss(meta_keys: tuple[str, ...]) -> Loss:
    """The model's own loss on the batch (its META_KEYS left out: the model takes no such argument)."""

    def compute(forward: Any, batch: dict[str, Any]) -> Any:
        return forward(**{k: v for k, v in batch.items() if k not in meta_keys}).loss

    return Loss(compute)


def weighted_loss(meta_keys: tuple[str, ...], weights: list[float], loss_of: Callable[[Any, Any, Any], Any]) -> Callable[[Any, dict[str, Any]], Any]:
    """A Loss.compute that scores the model's logits with `loss_of(logits, labels, weight)`,
    `weight` a float tensor of `weights` on the logits' device (class or positive weights: the
    model's own loss is unweighted)."""
    import torch

    weight = torch.tensor(weights, dtype=torch.float32)

    def compute(forward: Any, batch: dict[str, Any]) -> Any:
        nonlocal weight
        inputs = {k: v for k, v in batch.items() if k not in meta_keys}
        labels = inputs.pop("labels")
        logits = forward(**inputs).logits.float()
        weight = weight.to(logits.device)  # moved at the first batch; a no-op after
        return loss_of(logits, labels, weight)

    return compute


def serves_any(model_config: Any) -> bool:
    """serves() of a family its ARCHITECTURES alone tell."""
    return True


def nothing_to_finalize(model: Any, prepared: Any, config: Any, best: dict[str, Any]) -> dict[str, Any]:
    """finalize() of a family whose model is whole once trained."""
    return {}


def refuse_calibration(config: Any) -> None:
    """check_config of a family that fits no temperature: --calibrate is refused at load, not ignored."""
    if config.train.calibrate:
        raise FtkitError(f"'train.calibrate' (--calibrate) applies to single-label classification recipes (text or images), "
                         f"not {config.task}; remove it")


def linear_layers(model: Any, outputs: int) -> list[tuple[str, Any]]:
    """(name, module) of every nn.Linear with `outputs` outputs: where a head's last layer is
    looked for (a target scale or a temperature is folded into it). PEFT keeps a frozen copy of
    a head it trains in full, its 'original_module': not the one that runs, so left out."""
    import torch

    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module.out_features == outputs and "original_module" not in name.split(".")]


def records_read_by_ftkit(path: Path, config: Any) -> None:
    """read_local of a family whose local data are records (text): ftkit.data reads them."""
    return None


def token_batch_size(batch: dict[str, Any]) -> int:
    """Rows of a tokenized batch."""
    return batch["input_ids"].shape[0]


def token_lengths(features: Any) -> list[int]:
    """Tokens of each tokenized example."""
    return [len(ids) for ids in features["input_ids"]]


def read_texts(
    source: str | list[str], column: str | None, defaults: list[str], encoding: str,
    nested: str | None = None, words: bool = False,
) -> Iterator[dict[str, Any]]:
    """predict's input records in order: {"text"} from the lines of a .txt or stdin ("-", blank
    lines skipped), from the literal texts of --text (a list), or from a table's column.

    The table's column is `column`, else the first of `defaults` that its first row has
    (`defaults[0]` is the one an error names). `nested`: a key whose object value's keys are
    columns too (translation rows, {"translation": {"en": ..., "de": ...}}, as training reads
    them). `words`: a list value is the pre-split words of a {"tokens"} record (CoNLL files too);
    otherwise a list is refused, like any structure.
    """
    if isinstance(source, list):
        yield from ({"text": text} for text in source)
        return
    if source != "-":
        check_readable(Path(source), TABLE_SUFFIXES + TEXT_SUFFIXES + CONLL_SUFFIXES)
    if source == "-" or Path(source).suffix.lower() in TEXT_SUFFIXES:
        yield from ({"text": record["text"]} for _, record in iter_records(source, encoding) if record["text"].strip())
        return
    yield from _table_texts(source, column, defaults, encoding, nested, words)


def read_pairs(source: str | list[str], column: str | None, text_column: str, pair_column: str, encoding: str) -> Iterator[dict[str, Any]]:
    """predict's input records for a model trained on text pairs: {"text", "text_pair"} from each
    row of a table holding both columns (the run's; --text-column renames the first). Lines,
    stdin and --text hold one text each, so they are refused."""
    if isinstance(source, list) or source == "-" or Path(source).suffix.lower() in TEXT_SUFFIXES:
        raise FtkitError(
            f"this model reads text pairs (columns '{text_column}' and '{pair_column}'): give a csv, tsv, json, "
            "jsonl or parquet file with both columns, one pair per row"
        )
    check_readable(Path(source), TABLE_SUFFIXES)
    wanted = Roles({"text": column or text_column, "text_pair": pair_column}, {"text": "text", "text_pair": "text"})
    for n, record in iter_records(source, encoding):
        if any(name not in record for name in wanted.values()):
            raise FtkitError(missing_column(source, n, wanted, list(record), [record]))
        yield {role: as_text(record[name], source, n) for role, name in wanted.items()}


def _table_texts(source: str, column: str | None, defaults: list[str], encoding: str, nested: str | None, words: bool) -> Iterator[dict[str, Any]]:
    """read_texts of a table or CoNLL file: one record per row, from the column of its first row."""
    picked = None
    for n, record in iter_records(source, encoding):
        if nested and isinstance(record.get(nested), dict):
            record = {**record, **record[nested]}
        if picked is None:
            picked = _pick_column(source, n, record, column, defaults)
        if picked not in record:
            raise FtkitError(f"{source}: line/row {n} has no column '{picked}'")
        value = record[picked]
        if words and isinstance(value, list):
            yield {"tokens": value}
        else:
            yield {"text": as_text(value, source, n)}  # a dict, list or bytes is refused, not stringified


def _pick_column(source: str, n: int, record: dict, explicit: str | None, defaults: list[str]) -> str:
    """The column to read: `explicit`, else the first of `defaults` the first row has."""
    column = explicit or next((c for c in defaults if c in record), None)
    if column is None or column not in record:  # suggest by name, or a column whose value reads as text / words
        wanted = Roles({"text": explicit or defaults[0]}, {"text": ("text", "words")})
        raise FtkitError(missing_column(source, n, wanted, list(record), [record]))
    return column


# ---------------------------------------------------------------------------------- errors

# Rows errors() keeps where every row has an error of some size (regression, generated text):
# the worst ones. Classification-shaped families keep every wrong row.
ERRORS_CAP = 100


@dataclass
class Inputs:
    """Prepared.extra of a text family with one label per text: each evaluated split's raw inputs,
    one {"text"[, "text_pair"]} record per feature row in order (what errors() shows)."""

    rows: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def kept(self, split: str) -> list[dict[str, str]] | None:
        """The list text_features fills for `split`; None for train (no errors are shown of it)."""
        return None if split == "train" else self.rows.setdefault(split, [])


def no_errors(gathered: dict[str, Any], prepared: Any, split: str) -> list[dict[str, Any]]:
    """errors() of a family with no rows to call wrong (a language model's text has no gold answer)."""
    return []


def wrong_classes(gathered: dict[str, Any], names: list[str], input_of: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
    """errors() of one-label classification: each wrongly classified row, most confident first, as
    its input (`input_of(row)`) with "gold", "predicted" and "score" (the predicted class's probability)."""
    score, predicted = gathered["logits"].softmax(-1).max(-1)
    rows = [
        {**input_of(i), "gold": names[g], "predicted": names[p], "score": s}
        for i, (g, p, s) in enumerate(zip(gathered["labels"].tolist(), predicted.tolist(), score.tolist()))
        if g != p
    ]
    return sorted(rows, key=lambda row: -row["score"])  # stable: equal scores keep the split's order
