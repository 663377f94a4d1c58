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

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from torch_balance._rng import ORDER, Stream, generator
from torch_balance._threads import Early
from torch_balance._validation import Text, check_sample_weights, fail, internal, scaled_weights
from torch_balance.labels import LabelIndex
from torch_balance.strategies import Plan

__all__ = [
    "NextOrder",
    "WalkCache",
    "class_balanced_grid",
    "class_sequence",
    "draw_epoch",
    "draw_within_class",
    "generator",
    "group_sample_weights",
    "pending_walks",
    "repeat_copies",
    "repeat_values",
    "shuffle_order",
    "shuffled_epoch",
    "stratified_order",
    "walk_orders",
    "walk_state",
]


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


def _walk_order(n: int, code: int, cycle: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """The permutation of a class's ``n`` positions that its walk follows in ``cycle``."""
    return torch.randperm(n, generator=generator(seed, Stream.WALK, code, cycle), dtype=dtype)


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
    internal(at == out.shape[0], f"draw_epoch wrote {at} of {out.shape[0]} indices")
    return out


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


def draw_within_class(
    plan: Plan,
    weights: torch.Tensor,
    seed: int,
    epoch: int,
    *,
    replacement: bool = False,
) -> torch.Tensor:
    """One epoch grouped by class, like :func:`draw_epoch`, the members chosen by weight.

    The plan fixes how many samples class ``c`` gets (``t``); ``weights`` decide which. With
    class weight ``W = sum_j w_j``, member ``j`` is expected ``t * w_j / W`` times, and a
    member of weight 0 is never drawn.

    * ``replacement=True``: ``t`` i.i.d. draws with ``P(j) = w_j / W``.
    * ``replacement=False``: systematic sampling, the low-variance choice: the class's members
      are put in a random order, their weights laid end to end on ``[0, W)``, and ``t`` points
      ``(u + i) * W / t`` (one uniform ``u``) pick the members they fall on. Member ``j`` gets
      ``floor(t w_j / W)`` or ``ceil(t w_j / W)`` copies, and its expected count is exact.

    Both search the cumulative weights, so no class size limit applies (``torch.multinomial``
    stops at 2**24 categories).

    Args:
        plan: Target counts per class.
        weights: ``float64``, one weight per sample **in** ``plan.index.order`` **order** (class
            ``c``'s weights are ``weights[offsets[c]:offsets[c + 1]]``), as
            :func:`group_sample_weights` returns them.
        seed: The shared seed.
        epoch: The epoch number.
        replacement: i.i.d. draws instead of systematic sampling.

    Returns:
        ``plan.length`` dataset indices grouped by class (class order, unshuffled).

    Raises:
        ValueError: If the plan gives a positive target to a class whose weights are all 0.

    Example:
        >>> from torch_balance.strategies import make_plan
        >>> plan = make_plan(LabelIndex([0, 0, 0, 1]), "over")  # 3 of each class
        >>> w = torch.tensor([1.0, 0.0, 2.0, 1.0], dtype=torch.float64)  # class 0: samples 0, 1, 2
        >>> sorted(draw_within_class(plan, w, seed=0, epoch=0).tolist())
        [0, 2, 2, 3, 3, 3]
    """
    index: LabelIndex = plan.index
    targets = plan.targets(epoch)
    out = torch.empty(int(targets.sum()), dtype=index.order.dtype)
    g = generator(seed, Stream.WITHIN_CLASS, epoch)
    offsets = index.offsets.tolist()
    at = 0
    for code in np.flatnonzero(targets).tolist():
        k = int(targets[code])
        lo, hi = offsets[code], offsets[code + 1]
        w = scaled_weights(weights[lo:hi])
        shuffle = None if replacement else torch.randperm(hi - lo, generator=g)
        cumulative = torch.cumsum(w if shuffle is None else w.index_select(0, shuffle), 0)
        total = float(cumulative[-1])
        if total <= 0.0:
            fail(
                "sample_weights",
                f"a positive weight in every class the plan draws from (epoch {epoch})",
                Text(f"class {index.keys()[code]!r} asked for {k} samples, all weights 0"),
                "Give some of its samples a weight > 0, or a strategy that gives it no samples",
            )
        if replacement:
            points = torch.rand(k, generator=g, dtype=torch.float64) * total
        else:
            u = float(torch.rand(1, generator=g, dtype=torch.float64))
            points = (torch.arange(k, dtype=torch.float64) + u) * (total / k)
        # the last member with a positive weight: where the cumulative sum first reaches W
        last = torch.searchsorted(cumulative, cumulative[-1:], right=False)
        picked = torch.minimum(torch.searchsorted(cumulative, points, right=True), last)
        if shuffle is not None:
            picked = shuffle.index_select(0, picked)
        torch.index_select(index.members(code), 0, picked.to(out.dtype), out=out[at : at + k])
        at += k
    internal(at == out.shape[0], f"draw_within_class wrote {at} of {out.shape[0]} indices")
    return out


def shuffle_order(length: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of ``range(length)`` for ``(seed, epoch)``, int32 when it fits."""
    dtype = torch.int32 if length < 2**31 else torch.int64
    return torch.randperm(
        length, generator=generator(seed, Stream.EPOCH, epoch, ORDER), dtype=dtype
    )


def stratified_order(
    picks: torch.Tensor, targets: np.ndarray, batch_size: int, g: torch.Generator
) -> torch.Tensor:
    """Arrange one epoch's draws into consecutive batches with stratified class counts.

    ``picks`` holds ``targets[c]`` draws of each class ``c``, grouped by class (as
    :func:`~torch_balance.draws.draw_epoch` returns them). With ``K`` draws in all, the result
    is cut into ``K // batch_size`` full batches and, when ``K % batch_size = m > 0``, a last
    batch of ``m``. Every full batch holds ``floor(B k_c / K)`` or ``ceil(B k_c / K)`` draws of
    class ``c``, and the last batch ``floor(m k_c / K)`` or ``ceil(m k_c / K)``: each count is
    within 1 of the epoch's proportion.

    How: each full batch first gets ``floor(B k_c / K)`` of every class and the short batch
    ``floor(m k_c / K)``; the short batch's missing places go to distinct classes with a
    fractional share, picked at random. What remains of each class is at most one per full
    batch; those leftovers are laid around a circle of the full batches class after class
    (classes in random order, from a random start), which gives every full batch the same
    number and no batch two leftovers of one class. Which draw of a class lands in which batch,
    the order of the full batches, and the order inside every batch are random; the short
    batch comes last.

    Args:
        picks: The epoch's draws grouped by class.
        targets: Draws per class (sums to ``len(picks)``).
        batch_size: ``B``.
        g: The epoch's generator.

    Returns:
        ``picks`` reordered so that batch ``b`` is ``result[b * B:(b + 1) * B]``.

    Example:
        >>> picks = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8])
        >>> out = stratified_order(picks, np.array([6, 3]), 3, torch.Generator().manual_seed(0))
        >>> [sorted(int(i) >= 6 for i in out[b : b + 3]) for b in (0, 3, 6)]
        [[False, False, True], [False, False, True], [False, False, True]]
    """
    k = np.asarray(targets, dtype=np.int64)
    total = int(k.sum())
    internal(total == picks.shape[0], "stratified_order: targets do not sum to the draws")
    full, rem = divmod(total, batch_size)
    classes = k.shape[0]
    floor_full = (batch_size * k) // total
    floor_rem = (rem * k) // total
    short_extra = np.zeros(classes, dtype=np.int64)
    missing = rem - int(floor_rem.sum())
    if missing > 0:
        eligible = np.flatnonzero((rem * k) % total)
        chosen = torch.randperm(eligible.shape[0], generator=g)[:missing].numpy()
        short_extra[eligible[chosen]] = 1
    head = floor_rem + short_extra
    tokens = k - full * floor_full - head
    per_batch = batch_size - int(floor_full.sum())
    internal(
        bool((tokens >= 0).all() and (tokens <= max(full, 0)).all())
        and int(tokens.sum()) == full * per_batch,
        "stratified_order: leftover counts do not fit the batches",
    )
    # Place every draw directly (no sort). A full batch b is laid out as the "base" block,
    # floor(B k_c / K) places per class at fixed offsets, then its per_batch leftover places.
    # Leftover number tau (counted around the circle from a random offset) goes to batch
    # (offset + tau) % full, in the next free leftover place of that batch.
    base_offset = np.concatenate([[0], np.cumsum(floor_full)[:-1]])
    base_total = int(floor_full.sum())
    head_offset = np.concatenate([[0], np.cumsum(head)[:-1]])
    laid = np.zeros(classes, dtype=np.int64)
    offset = 0
    if full:
        circle = torch.randperm(classes, generator=g).numpy()
        offset = int(torch.randint(full, (1,), generator=g))
        laid[circle] = np.concatenate([[0], np.cumsum(tokens[circle])[:-1]])
    out = torch.empty_like(picks)
    first = 0
    for code in range(classes):
        n = int(k[code])
        if n == 0:
            continue
        parts = []
        h, f, t = int(head[code]), int(floor_full[code]), int(tokens[code])
        if h:
            parts.append(full * batch_size + int(head_offset[code]) + np.arange(h))
        if f and full:  # rank q * full + b goes to place q of the class in batch b
            rows = np.arange(full, dtype=np.int64) * batch_size + int(base_offset[code])
            parts.append((rows[None, :] + np.arange(f, dtype=np.int64)[:, None]).reshape(-1))
        if t:
            u = offset + int(laid[code]) + np.arange(t)
            batch = u % full
            place = u // full - (batch < offset)
            parts.append(batch * batch_size + base_total + place)
        places = torch.from_numpy(np.concatenate(parts) if len(parts) > 1 else parts[0])
        # which draw of the class takes which place: a random permutation of the class
        mine = picks[first : first + n].index_select(0, torch.randperm(n, generator=g))
        out.index_copy_(0, places, mine)
        first += n
    if full:
        grid = out[: full * batch_size].view(full, batch_size)
        grid.copy_(grid.index_select(0, torch.randperm(full, generator=g)))  # batch order
        step = max(1, (1 << 20) // batch_size)
        for row in range(0, full, step):  # order inside each batch, a block of rows at a time
            block = grid[row : row + step]
            shuffle = torch.rand(block.shape, generator=g).argsort(dim=1)
            block.copy_(block.gather(1, shuffle))
    if rem:
        tail = out[full * batch_size :]
        tail.copy_(tail.index_select(0, torch.randperm(rem, generator=g)))
    return out


def class_sequence(
    num_classes: int, classes_per_batch: int, num_batches: int, g: torch.Generator
) -> np.ndarray:
    """The classes of every batch: ``(num_batches, classes_per_batch)`` distinct class codes.

    The slots are filled by random permutations of all classes laid end to end, so over the
    epoch every class fills ``floor(S / C)`` or ``ceil(S / C)`` of the ``S`` slots. Where a
    batch straddles two permutations, the head of the second is reordered (the first classes
    that the batch does not already hold move to the front, the rest keep their order), so no
    batch repeats a class and each permutation stays a permutation.

    Example:
        >>> groups = class_sequence(5, 3, 4, torch.Generator().manual_seed(0))
        >>> all(len(set(row)) == 3 for row in groups.tolist())
        True
        >>> sorted(np.bincount(groups.reshape(-1), minlength=5).tolist())
        [2, 2, 2, 3, 3]
    """
    c, p = num_classes, classes_per_batch
    slots = num_batches * p
    rows = -(-slots // c)
    perms = torch.rand(rows, c, generator=g).argsort(dim=1).numpy().astype(np.int64)
    seam_rows = np.arange(1, rows)
    tail_len = (seam_rows * c) % p
    seam_rows, tail_len = seam_rows[tail_len > 0], tail_len[tail_len > 0]
    if seam_rows.shape[0] and c >= 3 * p - 2:
        # the part of a row that a fix may reorder never reaches the tail the next seam reads
        width = min(c, 2 * p - 1)
        marks = np.zeros((seam_rows.shape[0], c), dtype=bool)
        for back in range(1, p):
            has = tail_len >= back
            marks[np.flatnonzero(has), perms[seam_rows[has] - 1, c - back]] = True
        window = perms[seam_rows, :width]
        clash = np.take_along_axis(marks, window, axis=1)
        free = ~clash
        rank = np.cumsum(free, axis=1) - 1
        front = free & (rank < (p - tail_len)[:, None])
        order = np.argsort(~front, axis=1, kind="stable")
        perms[seam_rows, :width] = np.take_along_axis(window, order, axis=1)
    elif seam_rows.shape[0]:
        table = perms.tolist()
        for row, t in zip(seam_rows.tolist(), tail_len.tolist(), strict=True):
            held = set(table[row - 1][c - t :])
            need = p - t
            ahead: list[int] = []
            rest: list[int] = []
            for value in table[row]:
                if len(ahead) < need and value not in held:
                    ahead.append(value)
                else:
                    rest.append(value)
            table[row] = ahead + rest
        perms = np.asarray(table, dtype=np.int64)
    return perms.reshape(-1)[:slots].reshape(num_batches, p)


def _walk(n: int, need: int, g: torch.Generator) -> torch.Tensor:
    """``need`` positions in ``range(n)``: random permutations of it, one after another."""
    cycles = -(-need // n)
    if cycles == 1:
        return torch.randperm(n, generator=g)[:need]
    if n >= 512:
        return torch.cat([torch.randperm(n, generator=g) for _ in range(cycles)])[:need]
    # many short permutations at once
    return torch.rand(cycles, n, generator=g).argsort(dim=1).reshape(-1)[:need]


def class_balanced_grid(
    index: LabelIndex, groups: np.ndarray, samples_per_class: int, g: torch.Generator
) -> torch.Tensor:
    """Fill the class groups of :func:`class_sequence` with samples: ``(num_batches, P * K)``.

    Each class walks through random permutations of its samples, one after another, so within
    the epoch every sample of a class is used once before any is used again. A batch lists its
    classes in turn, ``K`` consecutive samples each.

    Example:
        >>> index = LabelIndex([0, 0, 1, 1, 1, 2])
        >>> g = torch.Generator().manual_seed(0)
        >>> grid = class_balanced_grid(index, np.array([[0, 1], [2, 1]]), 2, g)
        >>> [sorted(index.labels[row].tolist()) for row in grid.tolist()]
        [[0, 0, 1, 1], [1, 1, 2, 2]]
    """
    num_batches, p = groups.shape
    k = samples_per_class
    flat = groups.reshape(-1)
    appearances = np.bincount(flat, minlength=index.num_classes)
    pieces = []
    for code in np.flatnonzero(appearances).tolist():
        need = int(appearances[code]) * k
        members = index.members(code)
        n = members.shape[0]
        pieces.append(members.index_select(0, _walk(n, need, g)))
    draws = torch.cat(pieces).view(-1, k)
    slot_order = torch.from_numpy(np.argsort(flat, kind="stable"))
    grid = torch.empty_like(draws)
    grid[slot_order] = draws
    return grid.view(num_batches, p * k)


def repeat_copies(
    whole: torch.Tensor, fraction: torch.Tensor | None, length: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch of repeat-factor sampling: ``(copies per image, positions)``.

    Image ``i`` gets ``whole[i]`` copies, plus one with probability ``fraction[i]`` when
    ``fraction`` is given (stochastic rounding). The copies are shuffled, then cut to
    ``length`` or, when fewer were drawn, extended by repeating the start of the shuffled
    order, so every epoch has the same length. The epoch is
    ``repeat_values(copies)[positions]``.

    Example:
        >>> copies, order = repeat_copies(torch.tensor([1, 3]), None, 4, generator(0, 1))
        >>> copies.tolist(), sorted(repeat_values(copies)[order].tolist())
        ([1, 3], [0, 1, 1, 1])
    """
    if fraction is None:
        copies = whole
    else:
        coin = torch.rand(fraction.shape[0], generator=g, dtype=torch.float64)
        copies = whole + (coin < fraction)
    drawn = int(copies.sum())
    dtype = torch.int32 if drawn < 2**31 else torch.int64
    order = torch.randperm(drawn, generator=g, dtype=dtype)
    if drawn > length:
        order = order[:length]
    elif drawn < length:
        order = order.repeat(-(-length // drawn))[:length]
    return copies, order


def repeat_values(copies: torch.Tensor) -> torch.Tensor:
    """Image ``i`` repeated ``copies[i]`` times, in image order."""
    n = copies.shape[0]
    images = torch.arange(n, dtype=torch.int32 if n < 2**31 else torch.int64)
    return torch.repeat_interleave(images, copies)


def group_sample_weights(index: LabelIndex, plan: Plan, sample_weights: Any) -> torch.Tensor | None:
    """Per-sample weights checked and put in class order (``index.order``), or None.

    A class the plan's first epoch draws from must hold a positive weight; later epochs of a
    changing plan are checked when they are drawn
    (:func:`~torch_balance.draws.draw_within_class`).
    """
    if sample_weights is None:
        return None
    weights = check_sample_weights("sample_weights", sample_weights, len(index))
    grouped = weights.index_select(0, index.order.long())
    # positive weights per class (a count: a sum of weights near 1e308 would overflow)
    positive = (grouped.numpy() > 0).astype(np.int64)
    totals = np.add.reduceat(positive, index.offsets[:-1]) if len(index) else np.zeros(0)
    starved = np.flatnonzero((totals <= 0) & (plan.targets(0) > 0))
    if starved.shape[0]:
        keys = index.keys()
        code = int(starved[0])
        fail(
            "sample_weights",
            "a positive weight in every class the plan draws from",
            Text(
                f"class {keys[code]!r} ({int(index.counts[code])} samples, "
                f"{int(plan.targets(0)[code])} asked for) with every weight 0"
            ),
            "Give some of its samples a weight > 0, or a strategy that gives it no samples",
        )
    return grouped
