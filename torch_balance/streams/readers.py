"""Which reader reads what: the epoch's shard order and the samples each reader (a DataLoader
worker of a rank) reads, in reading order.
"""

from __future__ import annotations

import numpy as np
import torch

from torch_balance._rng import Stream, generator
from torch_balance.streams.sources import Slot, by_shard, slot_part

__all__ = ["shard_order", "slot_samples"]


def shard_order(
    num_shards: int, seed: int, epoch: int, *keys: int, shuffle: bool = True
) -> list[int]:
    """The order shards are dealt out to readers in ``epoch`` (shuffled unless ``shuffle`` is
    False; the same on every rank and worker).

    Example:
        >>> shard_order(4, 0, 0, shuffle=False)
        [0, 1, 2, 3]
        >>> sorted(shard_order(4, 0, 0))
        [0, 1, 2, 3]
    """
    if not shuffle or num_shards == 1:
        return list(range(num_shards))
    g = generator(seed, Stream.STREAM_SHARDS, epoch, *keys)
    return torch.randperm(num_shards, generator=g).tolist()


def slot_samples(offsets: np.ndarray, order: list[int], slot: Slot) -> np.ndarray:
    """The samples (positions in the manifest) ``slot`` reads, in reading order.

    Example:
        >>> offsets = np.array([0, 2, 5])
        >>> slot_samples(offsets, [1, 0], Slot(0, 1, 0, 2)).tolist()
        [2, 3, 4]
        >>> slot_samples(offsets, [1, 0], Slot(0, 1, 0, 4)).tolist()
        [2, 1]
    """

    def run(shards: list[int]) -> np.ndarray:
        parts = [np.arange(offsets[s], offsets[s + 1], dtype=np.int64) for s in shards]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    if by_shard(len(order), slot):
        return run(slot_part(order, slot))
    return slot_part(run(order), slot)
