"""The plain reference: where each class's walk stands, its permutations, one epoch drawn class
by class, and the epoch's shuffle. Nothing here keeps state (see :mod:`torch_balance.draws`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from torch_balance._rng import ORDER, Stream, generator
from torch_balance._validation import internal
from torch_balance.labels import LabelIndex
from torch_balance.strategies import Plan

__all__ = ["WalkState", "draw_walks", "shuffle_order", "walk_orders", "walk_state"]


WalkState = tuple[np.ndarray, np.ndarray, np.ndarray]


def walk_state(plan: Plan, epoch: int) -> WalkState:
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


def _walk_order(n: int, code: int, cycle: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """The permutation of a class's ``n`` positions that its walk follows in ``cycle``."""
    return torch.randperm(n, generator=generator(seed, Stream.WALK, code, cycle), dtype=dtype)


def walk_orders(
    tasks: Iterator[tuple[int, int, int]],
    seed: int,
    dtype: torch.dtype,
    out: dict[int, torch.Tensor],
) -> None:
    """Draw the walk permutation of every task ``tasks`` yields into ``out``.

    Two threads may share one ``tasks`` iterator: each permutation has its own generator,
    so which thread draws it does not change it.
    """
    for code, n, cycle in tasks:
        out[code] = _walk_order(n, code, cycle, seed, dtype)


def draw_walks(
    index: LabelIndex,
    targets: np.ndarray,
    state: WalkState,
    seed: int,
    orders: dict[int, torch.Tensor],
    out: torch.Tensor,
) -> torch.Tensor:
    """The plain reference walk: one epoch without replacement into ``out``, class by class.

    Each class copies its members ``k // n`` times, then takes the ``k % n`` extras its walk
    reaches this epoch, drawing that walk's permutation (or taking it from ``orders``). The
    fast path (:class:`~torch_balance.draws.fast.WalkCache`) gives the same epochs; the
    property tests hold them equal.
    """
    cycle, position, extras = state
    counts = index.counts
    at = 0
    # Python ints up front: this loop runs once per class, every epoch.
    wanted, sizes, extra = targets.tolist(), counts.tolist(), extras.tolist()
    starts, cycles = position.tolist(), cycle.tolist()
    for code in np.flatnonzero(targets).tolist():
        k, n, r = wanted[code], sizes[code], extra[code]
        full = k // n
        if full:
            out[at : at + full * n].view(full, n).copy_(index.members(code))
            at += full * n
        if r:  # look up only the r positions this epoch takes
            start = starts[code]
            stop = min(start + r, n)
            wrap = start + r - stop  # past the end of the cycle: top up from its start
            walk = orders.pop(code, None)
            if walk is None:
                walk = _walk_order(n, code, cycles[code], seed, out.dtype)
            chosen = walk[start:stop] if not wrap else torch.cat([walk[start:stop], walk[:wrap]])
            torch.index_select(index.members(code), 0, chosen, out=out[at : at + r])
            at += r
    internal(at == out.shape[0], f"draw_walks wrote {at} of {out.shape[0]} indices")
    return out


def shuffle_order(length: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of ``range(length)`` for ``(seed, epoch)``, int32 when it fits."""
    dtype = torch.int32 if length < 2**31 else torch.int64
    return torch.randperm(
        length, generator=generator(seed, Stream.EPOCH, epoch, ORDER), dtype=dtype
    )
