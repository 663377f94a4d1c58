"""Random streams: every random choice in torch_balance comes from :func:`generator`.

A generator is seeded from integers only: the user's seed, a :class:`Stream` tag naming what
the randomness is for, and the epoch (or class, cycle, ...) it belongs to, mixed with SplitMix64
(Steele, Lea and Flood, OOPSLA 2014). An epoch is therefore a pure function of its inputs, the
same on every rank, and the global RNGs of torch, numpy and ``random`` are never read.
"""

from __future__ import annotations

from enum import IntEnum

import torch

__all__ = ["ORDER", "Stream", "SubStream", "generator", "mix_seed"]

_MASK = (1 << 64) - 1


class Stream(IntEnum):
    """What a random stream is for; the value is mixed into the seed, so it must never change."""

    EPOCH = 1  # which samples an epoch draws (with replacement)
    WALK = 2  # a class's permutation for one cycle of the walk
    SMOTE = 3  # SMOTE's base rows, neighbours and steps
    STRATIFIED = 11  # StratifiedBatchSampler's arrangement of an epoch into batches
    CLASS_BALANCED = 12  # ClassBalancedBatchSampler's classes and samples per batch
    REPEAT = 13  # RepeatFactorSampler's stochastic rounding and order
    WITHIN_CLASS = 21  # which members fill each class's target under per-sample weights
    WEIGHTED = 31  # WeightedSampler: i.i.d. draws (with replacement) and the epoch's order
    WEIGHTED_KEYS = 32  # WeightedSampler without replacement: the exponential keys
    WEIGHTED_EXACT = 33  # WeightedSampler, exact mode: the layout and the offset of the run
    STREAM_SHARDS = 41  # a stream's shard order for one epoch
    STREAM_BUFFER = 42  # a stream's shuffle buffer and padding copies, per epoch and reader
    STREAM_ONLINE = 43  # the rounding of copies where labels are seen as the stream flows
    STREAM_MIX = 44  # retired (BalancedMix's class sequence as one randperm); never reuse 44
    STREAM_SOURCES = 45  # BalancedMix over sources: one reader's source choices per epoch
    # which samples of a class take its extra copies in a manifest epoch: the key of the
    # class's permutation, mix_seed(seed, STREAM_COPIES, epoch, class code)
    STREAM_COPIES = 46
    RARE_CLASS = 51  # RareClassSampler: the classes of an epoch and an image for each
    RARE_CROP = 52  # RareClassCrop's windows for one pick: (seed, RARE_CROP, epoch, position)
    RARE_CROP_INDEX = 53  # RareClassCrop's window for a plain index: (seed, ..., index)
    CLASS_AWARE = 61  # ClassAwareSampler: the order of an epoch's class choices
    CLASS_AWARE_WALK = 62  # ClassAwareSampler: a class's walk, a group of cycles at a time
    MIXTURE_SOURCE = 63  # MixtureSampler: the seed of source s's draws, (seed, ..., s)
    # BalancedMix's class sequence for one epoch: the key of its random-access permutation of
    # the epoch's positions, mix_seed(seed, STREAM_MIX_ORDER, epoch)
    STREAM_MIX_ORDER = 64
    # a manifest epoch with replacement: each class's copies at node [lo, hi) of the binary
    # tree over the shards, split between its halves, (seed, STREAM_SPLIT, epoch, lo, hi)
    STREAM_SPLIT = 66
    # a manifest epoch with replacement: a shard's copies of each class spread over its
    # samples of the class, (seed, STREAM_SPREAD, epoch, shard)
    STREAM_SPREAD = 67
    BENCH_TEST = 101  # the benchmark's test split
    BENCH_CLASSES = 102  # which classes the benchmark makes rare
    BENCH_SUBSET = 103  # which samples of each class the benchmark keeps
    BENCH_INIT = 111  # model initialisation in the benchmark
    BENCH_SHUFFLE = 112  # the benchmark's plain shuffles
    BENCH_HEAD = 113  # classifier-head initialisation in the benchmark


class SubStream(IntEnum):
    """A second key under a :class:`Stream`, where one stream feeds two kinds of draws (mixed
    into the seed after the epoch and the reader; the values must never change either)."""

    ORDER = 1  # the order of an epoch: generator(seed, EPOCH or WEIGHTED, epoch, ORDER)
    CHUNK = 2  # chunk c of a WeightedSampler i.i.d. epoch: (seed, WEIGHTED, epoch, CHUNK, c)
    # a stream reader's cut or pad across classes: (seed, STREAM_BUFFER, epoch, rank, worker,
    # FIT); the same value as ORDER (an alias), under another stream
    FIT = 1


ORDER = SubStream.ORDER


def _splitmix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def mix_seed(seed: int, *keys: int) -> int:
    """A 64-bit integer mixed from ``seed`` and integer ``keys`` (SplitMix64), for kernels that
    take a key rather than a generator: a keyed permutation that a reader evaluates at its
    own samples only (:mod:`torch_balance.draws.permute`) draws no stream at all.

    Example:
        >>> mix_seed(0, Stream.STREAM_COPIES, 1, 2) == mix_seed(0, Stream.STREAM_COPIES, 1, 2)
        True
    """
    state = _splitmix(seed & _MASK)
    for key in keys:
        state = _splitmix(state ^ (int(key) & _MASK))
    return state


def generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and integer ``keys`` (mixed with SplitMix64).

    Example:
        >>> a = torch.randint(10, (3,), generator=generator(0, Stream.EPOCH, 5))
        >>> b = torch.randint(10, (3,), generator=generator(0, Stream.EPOCH, 5))
        >>> bool((a == b).all())
        True
    """
    return torch.Generator().manual_seed(mix_seed(seed, *keys) & ((1 << 63) - 1))
