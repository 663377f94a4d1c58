"""Copy counts of a manifest epoch: how many times each sample is emitted, and one reader's
cut or pad to its share of the rank's fixed length, taken from each class in proportion to the
plan.

A reader computes the copies of its own samples only (:func:`reader_copies`): a sample's
index within its class comes from per-class counts of the shards before its own
(:meth:`~torch_balance.streams.Manifest.class_prefix`), and a keyed permutation of each class
says which samples take the class's extra copies (:func:`keyed_copies`). Its cost follows
the reader's shards, not the collection. With ``replacement=True`` the epoch is drawn as
``BalancedSampler`` draws it (:func:`epoch_copies`), over the whole collection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from torch_balance._apportion import apportion
from torch_balance._rng import Stream, mix_seed
from torch_balance.draws import WalkCache, draw_epoch, permute
from torch_balance.strategies import Plan

if TYPE_CHECKING:
    from torch_balance.streams.manifest import Manifest

__all__ = [
    "epoch_copies",
    "fit_copies",
    "keyed_copies",
    "reader_copies",
    "split_in_proportion",
    "within_class_index",
]


def epoch_copies(
    plan: Plan, seed: int, epoch: int, *, replacement: bool = False, cache: WalkCache | None = None
) -> np.ndarray:
    """How many times each sample appears in ``BalancedSampler``'s epoch (same plan and seed).

    Example:
        >>> from torch_balance import BalancedSampler, make_plan
        >>> labels = [0, 0, 0, 1]
        >>> epoch_copies(make_plan(labels, "over"), 0, 0).tolist()
        [1, 1, 1, 3]
    """
    picks = draw_epoch(plan, seed, epoch, replacement=replacement, cache=cache)
    return np.bincount(picks.numpy(), minlength=len(plan.index)).astype(np.int64)


def split_in_proportion(total: int, weights: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Split ``total`` among classes in proportion to ``weights`` (largest remainder), none
    past its ``room``: a class that is full passes its share on to the others, in proportion.

    Example:
        >>> split_in_proportion(6, np.array([1.0, 1.0, 1.0]), np.array([9, 9, 1])).tolist()
        [3, 2, 1]
    """
    parts = np.zeros(weights.shape[0], dtype=np.int64)
    left = int(min(total, int(room.sum())))
    open_ = (room > 0) & (weights > 0)
    while left > 0:
        if not open_.any():  # only classes without weight have room left: fill those
            open_ = room > parts
        shares = np.where(open_, weights, 0.0)
        share = apportion(shares if shares.sum() > 0 else open_.astype(np.float64), left)
        taken = np.minimum(share, room - parts)
        parts += taken
        left -= int(taken.sum())
        open_ &= room > parts
    return parts


def fit_copies(
    copies: np.ndarray, codes: np.ndarray, total: int, weights: np.ndarray, g: torch.Generator
) -> np.ndarray:
    """Cut or pad one reader's planned ``copies`` (per sample; ``codes``: each sample's class)
    to ``total``, taking from or adding to each class in proportion to ``weights`` (the
    epoch's planned count of each class: then the cut and pad of all readers together take
    from each class in proportion to its planned count, within one copy per reader), and
    within a class from or to its planned copies chosen uniformly at random (each at most once
    per round). A class cannot lose more copies than the reader plans of it, nor gain any
    where the reader plans none: its share goes to the other classes, in proportion.

    Example:
        >>> copies, codes = np.array([1, 1, 1, 1, 4]), np.array([0, 0, 0, 0, 1])
        >>> cut = fit_copies(copies, codes, 4, np.array([4.0, 4.0]), torch.Generator())
        >>> int(cut[:4].sum()), int(cut[4])
        (2, 2)
    """
    planned = int(copies.sum())
    if total == planned:
        return copies
    # a reader that plans nothing at all pads from the samples it reads, each once a round
    base = copies if planned > 0 else np.ones_like(copies)
    per_class = np.bincount(codes, weights=base, minlength=weights.shape[0]).astype(np.int64)
    if total < planned:
        change = -split_in_proportion(planned - total, weights, per_class)
    else:
        room = np.where(per_class > 0, total, 0)
        change = split_in_proportion(total - planned, weights, room)
    fitted = copies.copy()
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(weights.shape[0] + 1))
    for code in np.flatnonzero(change).tolist():
        mine = order[bounds[code] : bounds[code + 1]]
        have, step = int(per_class[code]), int(change[code])
        owner = np.repeat(mine, base[mine])  # one entry per planned copy
        if step < 0:  # the cut: which planned copies go
            picks = torch.randperm(have, generator=g)[:-step]
            fitted -= np.bincount(owner[picks.numpy()], minlength=copies.shape[0])
        else:  # the pad: which planned copies are repeated
            rounds = -(-step // have)
            picks = torch.cat([torch.randperm(have, generator=g) for _ in range(rounds)])
            fitted += np.bincount(owner[picks[:step].numpy()], minlength=copies.shape[0])
    return fitted


def within_class_index(codes: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Each sample's index within its class over the whole collection: ``before[c]`` samples
    of class c come before this shard, plus its rank among the shard's samples of c.

    Example:
        >>> within_class_index(np.array([1, 0, 1, 1]), np.array([5, 2])).tolist()
        [2, 5, 3, 4]
    """
    codes = np.asarray(codes, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    grouped = codes[order]
    rank = np.empty(codes.shape[0], dtype=np.int64)
    rank[order] = np.arange(codes.shape[0]) - np.searchsorted(grouped, grouped, side="left")
    return before[codes] + rank


def keyed_copies(
    codes: np.ndarray,
    index: np.ndarray,
    counts: np.ndarray,
    targets: np.ndarray,
    seed: int,
    epoch: int,
) -> np.ndarray:
    """Copies of samples of class ``codes`` at within-class ``index`` in a manifest epoch:
    class c's ``targets[c]`` copies over its ``counts[c]`` samples are ``q = t // n`` each,
    and one more for the ``r = t % n`` samples whose image under the class's keyed
    permutation (:func:`~torch_balance.draws.permute.permute`, keyed by seed, epoch and
    class) is below ``r``. Over every reader each class gets exactly its target, each sample
    ``floor`` or ``ceil`` of its class's share, whoever computes which part.

    Example:
        >>> codes, index = np.array([0, 0, 0, 1]), np.array([0, 1, 2, 0])
        >>> keyed_copies(codes, index, np.array([3, 1]), np.array([3, 3]), 0, 0).tolist()
        [1, 1, 1, 3]
        >>> int(keyed_copies(codes, index, np.array([3, 1]), np.array([1, 1]), 0, 0)[:3].sum())
        1
    """
    codes = np.asarray(codes, dtype=np.int64)
    n, t = counts[codes], targets[codes]
    copies = t // n
    rest = t % n
    some = np.flatnonzero(rest > 0)
    if some.size:
        present = np.unique(codes[some])
        keys = np.array(
            [mix_seed(seed, Stream.STREAM_COPIES, epoch, c) for c in present.tolist()],
            dtype=np.uint64,
        )
        key = keys[np.searchsorted(present, codes[some])]
        copies[some] += permute(index[some], n[some], key) < rest[some]
    return copies


def reader_copies(
    manifest: Manifest,
    parts: list[tuple[int, int, int]],
    targets: np.ndarray,
    seed: int,
    epoch: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each part ``(shard, start, step)`` a reader reads: the class codes and the copies
    of its samples (positions ``start::step`` of the shard), in time and memory of those
    shards plus one row of per-class counts each, never of the whole collection.

    Example:
        >>> from torch_balance.streams.manifest import Manifest
        >>> m = Manifest({"a": [0, 0], "b": [0, 1]})
        >>> [c.tolist() for _, c in reader_copies(m, [(1, 0, 1)], np.array([3, 3]), 0, 0)]
        [[1, 3]]
    """
    counts = manifest.class_counts()
    out = []
    for shard, start, step in parts:
        codes = manifest.shard_codes(shard)
        index = within_class_index(codes, manifest.class_prefix(shard))[start::step]
        mine = codes[start::step]
        out.append((mine, keyed_copies(mine, index, counts, targets, seed, epoch)))
    return out
