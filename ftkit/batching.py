"""Length-grouped batches: examples of similar length share a batch, so little compute goes to
padding, while the batch order stays random.

Same optimisation as random batching: the same batch size, every example once per epoch and
the same number of batches (so the same optimizer steps and learning-rate schedule). Only which
examples meet in a batch changes, as with Trainer's group_by_length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

GROUP_BATCHES = 50  # batches per sorted group: as transformers' LengthGroupedSampler (mega-batches)
# Lengths within a band count as equal (8: the padding multiple for tensor cores): examples of a
# band meet in random batches, so batches differ from epoch to epoch even on a small dataset.
BAND = 8


class LengthGroupedBatches:
    """A batch sampler: each epoch a random permutation, cut into groups of GROUP_BATCHES
    batches; each group sorted by length band and cut into batches; then all batches shuffled.

    `generator` is the caller's: reseeding it before each epoch makes the order reproducible,
    which resuming mid-epoch relies on.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: Any) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        import torch

        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        group = self.batch_size * GROUP_BATCHES  # a multiple of batch_size: only the very last batch is short
        batches = []
        for start in range(0, len(order), group):
            chunk = sorted(order[start : start + group], key=lambda i: self.lengths[i] // BAND, reverse=True)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]
