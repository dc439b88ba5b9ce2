"""Pieces several text families share; a family takes them or answers in its own way."""

from __future__ import annotations

from typing import Any

from ftkit.tasks.family import Loss


def model_loss(meta_keys: tuple[str, ...]) -> Loss:
    """The model's own loss on the batch (its META_KEYS left out: the model takes no such argument)."""

    def compute(forward: Any, batch: dict[str, Any]) -> Any:
        return forward(**{k: v for k, v in batch.items() if k not in meta_keys}).loss

    return Loss(compute)


def token_batch_size(batch: dict[str, Any]) -> int:
    """Rows of a tokenized batch."""
    return batch["input_ids"].shape[0]


def token_lengths(features: Any) -> list[int]:
    """Tokens of each tokenized example."""
    return [len(ids) for ids in features["input_ids"]]
