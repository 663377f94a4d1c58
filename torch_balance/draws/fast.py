"""The fast path beside the reference walk: the walk cache, the next epoch's order drawn ahead,
and the shuffled epoch with a helper thread. Same epochs as :mod:`torch_balance.draws.walk`.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from torch_balance._rng import Stream, generator
from torch_balance._threads import Early
from torch_balance.draws.walk import (
    WalkState,
    _walk_order,
    draw_walks,
    shuffle_order,
    walk_orders,
    walk_state,
)
from torch_balance.labels import LabelIndex
from torch_balance.strategies import Plan

__all__ = ["NextOrder", "WalkCache", "draw_epoch", "pending_walks", "shuffled_epoch"]


class WalkCache:
    """Each class's permutation for its current cycle, kept between epochs.

    Without it every epoch draws the permutation of every class it takes extras from, although
    an epoch that takes ``r`` of ``n`` samples reads only ``r`` of its positions: a
    ``RandomUnderSampler`` epoch would permute nearly the whole dataset to hand out a small
    part of it. The cache keeps one buffer laid out as the grouping (class ``c``'s samples in
    the order of its walk at ``offsets[c]:offsets[c + 1]``, 4 bytes a sample below 2**31
    samples) and the cycle each class holds, so each permutation is drawn once per cycle, an
    epoch takes every class's extras with one gather, and the epochs are the same as
    without it.

    It is used only where it pays: when the classes walked hold at least twice as many
    samples as the epoch hands out (undersampling), not where the epoch is as long as the
    data (``"class"``, ``"sqrt"``) and the extra memory would buy little. A pickled cache
    arrives empty, so DataLoader workers and checkpoints do not carry it.

    Example:
        >>> from torch_balance.strategies import make_plan
        >>> plan = make_plan(LabelIndex([0] * 50 + [1] * 2), "under")
        >>> cache = WalkCache()
        >>> [draw_epoch(plan, 0, e, cache=cache).tolist() == draw_epoch(plan, 0, e).tolist()
        ...  for e in range(3)]
        [True, True, True]
        >>> cache.walks
        {0: 0}
    """

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None
        self.cycles = np.empty(0, dtype=np.int64)  # the cycle held per class, -1: none

    @property
    def walks(self) -> dict[int, int]:
        """``{class code: cycle}`` of the walks held."""
        held = np.flatnonzero(self.cycles >= 0).tolist()
        return {code: int(self.cycles[code]) for code in held}

    def missing(self, cycle: np.ndarray, extras: np.ndarray) -> list[int]:
        """Codes of the classes that take extras (``extras > 0``) in a cycle (``cycle``, per
        class) whose walk is not held."""
        needed = extras > 0
        if self.cycles.shape[0] == cycle.shape[0]:
            needed &= self.cycles != cycle
        return np.flatnonzero(needed).tolist()

    def clear(self) -> None:
        """Drop every walk (and the buffer's memory)."""
        self.buffer = None
        self.cycles = np.empty(0, dtype=np.int64)

    def _ready(self, index: LabelIndex) -> torch.Tensor:
        order = index.order
        if self.buffer is None or self.buffer.shape[0] != order.shape[0]:
            self.buffer = torch.empty_like(order)
            self.cycles = np.full(index.num_classes, -1, dtype=np.int64)
        return self.buffer

    def _fill(
        self,
        index: LabelIndex,
        needed: list[tuple[int, int]],
        seed: int,
        orders: dict[int, torch.Tensor],
    ) -> None:
        """Draw the walk of each ``(code, cycle)`` into the buffer (``orders[code]``, where
        given, is that walk's permutation, already drawn)."""
        buffer = self._ready(index)
        for code, cycle in needed:
            members = index.members(code)
            n = members.shape[0]
            order = orders.pop(code, None)
            if order is None:
                order = _walk_order(n, code, cycle, seed, members.dtype)
            at = int(index.offsets[code])
            torch.index_select(members, 0, order, out=buffer[at : at + n])
            self.cycles[code] = cycle

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]


class NextOrder:
    """One epoch's permutation (:func:`shuffle_order`) drawn ahead of time, by a helper thread
    while the epoch before it is handed out; taken only for the same length, seed and epoch
    (asking for another epoch leaves it held). A pickled one arrives empty.

    Example:
        >>> ahead = NextOrder()
        >>> ahead.put(5, 0, 1, shuffle_order(5, 0, 1))
        >>> ahead.take(5, 0, 2) is None
        True
        >>> torch.equal(ahead.take(5, 0, 1), shuffle_order(5, 0, 1)), ahead.take(5, 0, 1)
        (True, None)
    """

    LIMIT = 1 << 24
    """Longest epoch whose permutation is drawn ahead (64 MiB of int32 held meanwhile)."""

    def __init__(self) -> None:
        self._held: tuple[tuple[int, int, int], torch.Tensor] | None = None

    def put(self, length: int, seed: int, epoch: int, order: torch.Tensor) -> None:
        """Hold ``order``, the permutation drawn ahead for ``(length, seed, epoch)``."""
        self._held = ((length, seed, epoch), order)

    def take(self, length: int, seed: int, epoch: int) -> torch.Tensor | None:
        """The permutation held for ``(length, seed, epoch)`` (no longer held after), or None."""
        held = self._held
        if held is None or held[0] != (length, seed, epoch):
            return None
        self._held = None
        return held[1]

    def __getstate__(self) -> dict[str, Any]:
        return {"_held": None}


def _cache_pays(counts: np.ndarray, extras: np.ndarray, length: int) -> bool:
    """A :class:`WalkCache` pays when the classes walked hold twice the epoch's length."""
    return int(counts[extras > 0].sum()) >= 2 * length


def pending_walks(
    plan: Plan, epoch: int, cache: WalkCache | None = None, state: WalkState | None = None
) -> list[tuple[int, int, int]]:
    """``(code, n, cycle)`` of every class whose walk permutation ``epoch`` needs and
    ``cache`` does not hold, largest class first (for :func:`walk_orders`). ``state`` is
    ``walk_state(plan, epoch)`` where the caller has it already."""
    counts = plan.index.counts
    cycle, _, extras = state if state is not None else walk_state(plan, epoch)
    if cache is not None and not _cache_pays(counts, extras, plan.length):
        cache = None
    codes = np.flatnonzero(extras).tolist() if cache is None else cache.missing(cycle, extras)
    tasks = [(code, int(counts[code]), int(cycle[code])) for code in codes]
    tasks.sort(key=lambda task: -task[1])
    return tasks


def shuffled_epoch(
    plan: Plan,
    seed: int,
    epoch: int,
    *,
    replacement: bool = False,
    cache: WalkCache | None = None,
    helper: bool = False,
    drawn_ahead: NextOrder | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch's draws (:func:`draw_epoch`) and its permutation (:func:`shuffle_order`,
    or the one ``drawn_ahead`` holds for this epoch).

    With ``helper``, a helper thread draws the permutation, which needs only the epoch's
    length, while this thread groups the labels by class (on first use), takes the classes'
    walk permutations (the helper shares them once its permutation is done) and draws. The
    walks are drawn ahead of the draw and held together until it ends (4 bytes per sample
    of the classes walked). The result is the same either way.

    Returns:
        ``(picks, order)``: the epoch is ``picks[order]``.

    Example:
        >>> from torch_balance.strategies import make_plan
        >>> plan = make_plan(LabelIndex([0] * 300 + [1] * 20), "class")
        >>> a, b = shuffled_epoch(plan, 0, 1), shuffled_epoch(plan, 0, 1, helper=True)
        >>> torch.equal(a[0][a[1]], b[0][b[1]])
        True
    """
    index = plan.index
    dtype = index.dtype
    state = None if replacement else walk_state(plan, epoch)
    # Without a helper, draw_epoch draws each walk when it reaches its class and drops it
    # after: drawn ahead, the walks of every class would be held at once (4 bytes a sample).
    ahead = helper and state is not None
    pending = pending_walks(plan, epoch, cache, state) if ahead else []
    tasks = iter(pending)
    orders: dict[int, torch.Tensor] = {}

    order = drawn_ahead.take(plan.length, seed, epoch) if drawn_ahead is not None else None

    def permutation_then_walks() -> torch.Tensor:
        drawn = order if order is not None else shuffle_order(plan.length, seed, epoch)
        walk_orders(tasks, seed, dtype, orders)
        return drawn

    early = Early(permutation_then_walks, helper=helper and (order is None or bool(pending)))
    index.order  # noqa: B018 (the grouping, built on first use)
    walk_orders(tasks, seed, dtype, orders)
    # Once this thread finds no walk left to take, it draws while the helper may still be
    # on its permutation; a walk the helper is still drawing, draw_epoch draws again itself
    # (the same permutation, from the same generator).
    picks = draw_epoch(
        plan, seed, epoch, replacement=replacement, cache=cache, orders=orders, state=state
    )
    return picks, early.result()


def draw_epoch(
    plan: Plan,
    seed: int,
    epoch: int,
    *,
    replacement: bool = False,
    cache: WalkCache | None = None,
    orders: dict[int, torch.Tensor] | None = None,
    state: WalkState | None = None,
) -> torch.Tensor:
    """The sample indices of one epoch, grouped by class (class order, unshuffled).

    Every class writes its part straight into one buffer of the epoch's length.

    Args:
        plan: Target counts per class.
        seed: The shared seed.
        epoch: The epoch number.
        replacement: Draw each class's samples i.i.d. with replacement instead.
        cache: Keeps each class's permutation for its cycle between calls (see
            :class:`WalkCache`); the result is the same with or without it.
        orders: Walk permutations already drawn by :func:`walk_orders`, by class code;
            each is removed from the dict once used.
        state: ``walk_state(plan, epoch)``, where the caller has computed it already.

    Returns:
        A 1-D integer tensor of ``plan.length`` dataset indices, of the dtype of
        ``plan.index.order``.

    Example:
        >>> from torch_balance.strategies import make_plan
        >>> plan = make_plan(LabelIndex([0, 0, 0, 1]), "over")
        >>> sorted(draw_epoch(plan, seed=0, epoch=0).tolist())
        [0, 1, 2, 3, 3, 3]
    """
    index: LabelIndex = plan.index
    targets = plan.targets(epoch)
    counts = index.counts
    out = torch.empty(int(targets.sum()), dtype=index.order.dtype)
    at = 0
    if replacement:
        g = generator(seed, Stream.EPOCH, epoch)
        for code in np.flatnonzero(targets).tolist():
            k = int(targets[code])
            picks = torch.randint(int(counts[code]), (k,), generator=g, dtype=out.dtype)
            torch.index_select(index.members(code), 0, picks, out=out[at : at + k])
            at += k
        return out
    cycle, position, extras = state if state is not None else walk_state(plan, epoch)
    if cache is not None and not _cache_pays(counts, extras, out.shape[0]):
        cache.clear()  # free what it holds
        cache = None
    orders = orders or {}
    if cache is not None:
        _draw_cached(index, targets, (cycle, position, extras), seed, cache, orders, out)
        return out
    return draw_walks(index, targets, (cycle, position, extras), seed, orders, out)


def _draw_cached(
    index: LabelIndex,
    targets: np.ndarray,
    state: WalkState,
    seed: int,
    cache: WalkCache,
    orders: dict[int, torch.Tensor],
    out: torch.Tensor,
) -> None:
    """:func:`draw_epoch`'s loop with a :class:`WalkCache`: the walks this epoch lacks are
    drawn into the cache, then the classes' extras come out of it in one gather per stretch
    of classes between two that are copied whole."""
    cycle, position, extras = state
    counts = index.counts
    buffer = cache._ready(index)
    missing = cache.missing(cycle, extras)
    cache._fill(index, [(code, int(cycle[code])) for code in missing], seed, orders)
    full = targets // counts
    begin = np.cumsum(targets) - targets  # where each class starts in the epoch
    after = begin + full * counts  # where its extras start
    # Each class's extras: positions [start, stop) of its walk, then [0, wrap) past the end
    # of the cycle: two runs of positions into the buffer, class after class.
    stop = np.minimum(position + extras, counts)
    first = np.where(extras > 0, stop - position, 0)
    lengths = np.stack([first, extras - first], axis=1).reshape(-1)
    source = np.stack([index.offsets[:-1] + position, index.offsets[:-1]], axis=1).reshape(-1)
    taken = torch.from_numpy(_runs(source, lengths)) if lengths.any() else None
    # The epoch is class after class: whole copies, then extras. Between two classes with
    # whole copies the extras of the classes in between lie together, in the epoch as in
    # ``taken``: one gather each.
    done = np.concatenate([[0], np.cumsum(extras)])  # extras of the classes before each
    whole = np.flatnonzero(full).tolist()
    bounds = [*sorted({0, *whole}), counts.shape[0]]
    for a, b in itertools.pairwise(bounds):
        if full[a]:
            f, n, at = int(full[a]), int(counts[a]), int(begin[a])
            out[at : at + f * n].view(f, n).copy_(index.members(a))
        lo, hi = int(done[a]), int(done[b])
        if hi > lo and taken is not None:
            at = int(after[a])
            torch.index_select(buffer, 0, taken[lo:hi], out=out[at : at + hi - lo])


def _runs(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(a, a + n) for a, n in zip(starts, lengths)])`` as one array and
    no other of its length (a cumulative sum of steps; int32 where the values fit).

    Example:
        >>> _runs(np.array([5, 0, 9]), np.array([2, 0, 3])).tolist()
        [5, 6, 9, 10, 11]
    """
    keep = lengths > 0
    starts, lengths = starts[keep], lengths[keep]
    fits = int((starts + lengths).max()) < 2**31
    steps = np.ones(int(lengths.sum()), dtype=np.int32 if fits else np.int64)
    at = np.cumsum(lengths) - lengths  # where each run begins
    steps[0] = starts[0]
    steps[at[1:]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)  # jump from the last run's end
    return np.cumsum(steps, out=steps)
