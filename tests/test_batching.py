"""Length-grouped batching keeps the optimisation the same (batch size, batch count, every
example once per epoch, random batch order) while cutting the padding."""

from __future__ import annotations

import math
import random

import pytest
import torch

from ftkit.batching import LengthGroupedBatches


def padded_tokens(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


@pytest.mark.parametrize("n, batch_size", [(1000, 32), (33, 32), (5, 8), (3200, 32)])
def test_same_batches_count_and_examples(n, batch_size):
    lengths = [random.Random(i).randint(1, 128) for i in range(n)]
    batches = list(LengthGroupedBatches(lengths, batch_size, torch.Generator().manual_seed(0)))
    assert len(batches) == math.ceil(n / batch_size) == len(LengthGroupedBatches(lengths, batch_size, None))
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert sorted(len(b) for b in batches)[1:] == [batch_size] * (len(batches) - 1)  # at most one short batch


def test_less_padding_than_random_batches_and_random_order():
    rng = random.Random(0)
    lengths = [min(128, int(rng.lognormvariate(3.2, 0.7))) + 1 for _ in range(5000)]  # review-like: long tail
    gen = torch.Generator().manual_seed(0)
    grouped = list(LengthGroupedBatches(lengths, 32, gen))
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    uniform = [order[i : i + 32] for i in range(0, len(order), 32)]
    assert padded_tokens(grouped, lengths) < 0.8 * padded_tokens(uniform, lengths)
    # the order of batches is not sorted by length: long and short batches are interleaved
    maxima = [max(lengths[i] for i in b) for b in grouped]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)
    # a new epoch (the generator moves on) gives other batches; the same seed gives the same ones
    assert list(LengthGroupedBatches(lengths, 32, gen)) != grouped
    assert list(LengthGroupedBatches(lengths, 32, torch.Generator().manual_seed(0))) == grouped


def test_small_dataset_batches_still_change_between_epochs():
    """All examples in one sorted group: within a length band, composition is random per epoch."""
    lengths = [random.Random(i).randint(5, 15) for i in range(160)]
    gen = torch.Generator().manual_seed(0)
    epochs = [sorted(map(sorted, LengthGroupedBatches(lengths, 16, gen))) for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
