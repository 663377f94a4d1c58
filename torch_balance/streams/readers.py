"""Which reader reads what: the epoch's shard order, the parts of shards each reader (a
DataLoader worker of a rank) reads, and how many samples it emits.

Reader ``k = rank + num_replicas * worker`` of ``K = num_replicas * num_workers`` reads the
parts :func:`~torch_balance.streams.sources.reader_parts` gives it: whole shards when there
are at least as many shards as readers, else every ``g``-th sample of one shard shared by
``g <= ceil(K / S)`` readers (with one warning that names the shard count to aim for).

Every reader's length is a function of the rank's length and its worker number alone
(:func:`worker_quota`): worker ``w`` emits as many samples on every rank, so a saved reader
state (``StatefulDataLoader`` keeps one per worker; Lightning saves rank 0's) means the same
on every rank of the same world.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from torch_balance._rng import Stream, generator
from torch_balance.streams.sources import Slot, by_shard, reader_parts

__all__ = ["ReaderPlan", "shard_order", "slot_samples", "warn_shared_shards", "worker_quota"]


@dataclass(frozen=True)
class ReaderPlan:
    """One reader's pass in a manifest epoch: the shard order, the parts it reads
    (``(shard, start, step)``), the class code and copies of each sample it reads (in
    reading order, after the cut or pad) and the samples it emits (``quota``)."""

    order: list[int]
    parts: list[tuple[int, int, int]]
    codes: np.ndarray
    copies: np.ndarray
    quota: int


def worker_quota(rank_length: int, slot: Slot) -> int:
    """Samples worker ``slot.worker`` emits of its rank's ``rank_length``: an equal share, the
    first ``rank_length % num_workers`` workers one more (the same on every rank).

    Example:
        >>> [worker_quota(10, Slot(worker=w, num_workers=4)) for w in range(4)]
        [3, 3, 2, 2]
    """
    workers = slot.num_workers
    return rank_length // workers + (slot.worker < rank_length % workers)


def warn_shared_shards(num_shards: int, slot: Slot) -> None:
    """Warn (once per process and count) when readers must share shards.

    Example:
        >>> warn_shared_shards(8, Slot(num_replicas=2, num_workers=4))  # enough: silent
    """
    if by_shard(num_shards, slot):
        return
    readers = slot.count
    sharing = -(-readers // num_shards)
    warnings.warn(
        f"{num_shards} shards for {readers} readers ({slot.num_replicas} ranks x "
        f"{slot.num_workers} DataLoader workers): up to {sharing} readers share a shard, "
        "each skipping the samples it does not keep (unread by the built-in tar reader, read "
        "but not decoded by webdataset pipelines and by Hugging Face datasets without .map() "
        f"stages, read and dropped by other sources). Write the data in at least {readers} shards "
        f"(a multiple of {readers}) so that each reader reads whole shards of its own.",
        UserWarning,
        stacklevel=4,
    )


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
        [2, 4]
    """
    parts = [
        np.arange(offsets[shard] + start, offsets[shard + 1], step, dtype=np.int64)
        for shard, start, step in reader_parts(order, slot)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
