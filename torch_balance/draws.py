"""Pure kernels: (labels grouped by class, plan, seed, epoch) -> sample indices.

Nothing here keeps state. Every random choice comes from a ``torch.Generator`` made by
:func:`~torch_balance._rng.generator` from integers (seed, a :class:`~torch_balance._rng.Stream`
tag, and the epoch or walk position), so an epoch is a pure function of its inputs and the
global RNGs are never touched.

Without replacement, class c with ``n`` samples asked for ``k`` of them gets every sample
``k // n`` times plus ``r = k % n`` *extra* distinct samples. The extras walk through one
permutation of the class per *cycle*: each epoch takes the next ``r`` positions, so across
epochs every sample is used once before any is used again. An epoch that reaches the end of
a cycle takes what is left and tops up, still without duplicates, from the start of the same
permutation; the next epoch opens a new cycle with a fresh permutation.
"""

from __future__ import annotations

import numpy as np
import torch

from torch_balance._rng import ORDER, Stream, generator
from torch_balance.labels import LabelIndex
from torch_balance.strategies import Plan

__all__ = ["draw_epoch", "generator", "shuffle_order", "walk_state"]


def walk_state(plan: Plan, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each class's walk stands at the start of ``epoch``.

    Returns:
        ``(cycle, position, extras)``: per class, the cycle number, the position reached in
        that cycle's permutation, and this epoch's number of extra samples ``k % n``.
    """
    counts = plan.index.counts
    if plan.constant:
        extras = plan.targets(0) % counts
        safe = np.maximum(extras, 1)
        per_cycle = -(-counts // safe)  # epochs per cycle: ceil(n / r)
        cycle = np.where(extras > 0, epoch // per_cycle, 0)
        position = np.where(extras > 0, (epoch % per_cycle) * extras, 0)
        return cycle, position, extras
    cycle = np.zeros_like(counts)
    position = np.zeros_like(counts)
    for past in range(epoch):
        extras = plan.targets(past) % counts
        reach = position + extras
        wraps = reach >= counts
        cycle = np.where(wraps, cycle + 1, cycle)
        position = np.where(wraps, 0, reach)
    return cycle, position, plan.targets(epoch) % counts


def draw_epoch(plan: Plan, seed: int, epoch: int, *, replacement: bool = False) -> torch.Tensor:
    """The sample indices of one epoch, grouped by class (class order, unshuffled).

    Args:
        plan: Target counts per class.
        seed: The shared seed.
        epoch: The epoch number.
        replacement: Draw each class's samples i.i.d. with replacement instead.

    Returns:
        A 1-D integer tensor of ``plan.length`` dataset indices.

    Example:
        >>> from torch_balance.strategies import make_plan
        >>> plan = make_plan(LabelIndex([0, 0, 0, 1]), "over")
        >>> sorted(draw_epoch(plan, seed=0, epoch=0).tolist())
        [0, 1, 2, 3, 3, 3]
    """
    index: LabelIndex = plan.index
    targets = plan.targets(epoch)
    counts = index.counts
    order = index.order
    pieces: list[torch.Tensor] = []
    if replacement:
        g = generator(seed, Stream.EPOCH, epoch)
        for code in range(index.num_classes):
            k = int(targets[code])
            if k == 0:
                continue
            picks = torch.randint(int(counts[code]), (k,), generator=g, dtype=order.dtype)
            pieces.append(index.members(code).index_select(0, picks))
        return torch.cat(pieces)
    cycle, position, extras = walk_state(plan, epoch)
    for code in range(index.num_classes):
        k, n = int(targets[code]), int(counts[code])
        if k == 0:
            continue
        members = index.members(code)
        full = k // n
        if full == 1:
            pieces.append(members)
        elif full > 1:
            pieces.append(members.repeat(full))
        r = int(extras[code])
        if r:
            g = generator(seed, Stream.WALK, code, int(cycle[code]))
            perm = torch.randperm(n, generator=g, dtype=order.dtype)
            start = int(position[code])
            stop = start + r
            chosen = perm[start:stop]
            if stop > n:
                chosen = torch.cat([chosen, perm[: stop - n]])
            pieces.append(
                members[chosen.long()] if chosen.dtype != torch.int64 else members[chosen]
            )
    return torch.cat(pieces) if len(pieces) > 1 else pieces[0].clone()


def shuffle_order(length: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of ``range(length)`` for ``(seed, epoch)``, int32 when it fits."""
    dtype = torch.int32 if length < 2**31 else torch.int64
    return torch.randperm(
        length, generator=generator(seed, Stream.EPOCH, epoch, ORDER), dtype=dtype
    )
