"""Copy counts of a manifest epoch: how many times each sample is emitted, and one reader's
cut or pad to its share of the rank's fixed length, taken from each class in proportion to the
plan.
"""

from __future__ import annotations

import numpy as np
import torch

from torch_balance._apportion import apportion
from torch_balance.draws import WalkCache, draw_epoch
from torch_balance.strategies import Plan

__all__ = ["epoch_copies", "fit_copies", "split_in_proportion"]


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
    per_class = np.bincount(codes, weights=copies, minlength=weights.shape[0]).astype(np.int64)
    if total < planned:
        change = -split_in_proportion(planned - total, weights, per_class)
    else:
        room = np.where(per_class > 0, total, 0)
        change = split_in_proportion(total - planned, weights, room)
    fitted = copies.copy()
    for code in np.flatnonzero(change).tolist():
        mine = np.flatnonzero(codes == code)
        have, step = int(per_class[code]), int(change[code])
        owner = np.repeat(mine, copies[mine])  # one entry per planned copy
        if step < 0:  # the cut: which planned copies go
            picks = torch.randperm(have, generator=g)[:-step]
            fitted -= np.bincount(owner[picks.numpy()], minlength=copies.shape[0])
        else:  # the pad: which planned copies are repeated
            rounds = -(-step // have)
            picks = torch.cat([torch.randperm(have, generator=g) for _ in range(rounds)])
            fitted += np.bincount(owner[picks[:step].numpy()], minlength=copies.shape[0])
    return fitted
