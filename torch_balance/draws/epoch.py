"""One class-level epoch draw, written once for the samplers, batch samplers and datasets.

:class:`EpochDraw` holds what an epoch is drawn from (the plan, per-sample weights or none,
with or without replacement) and the caches that make drawing it fast: the walk cache
(:class:`~torch_balance.draws.fast.WalkCache`), the next epoch's order drawn ahead
(:class:`~torch_balance.draws.fast.NextOrder`) and the rule for when a helper thread pays.
``BalancedSampler``, ``StratifiedBatchSampler`` and ``ResampledDataset`` each hold one, so
the weights-or-walk choice and the thread policy live here and nowhere else. Every epoch is
a pure function of (seed, epoch): the same with or without the caches and threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import TypeVar

import torch

from torch_balance._threads import alongside, helper_allowed
from torch_balance.draws.fast import NextOrder, WalkCache, draw_epoch, shuffled_epoch
from torch_balance.draws.walk import shuffle_order
from torch_balance.draws.weights import draw_within_class
from torch_balance.strategies import Plan

__all__ = ["EpochDraw", "ahead_pays"]

T = TypeVar("T")


def ahead_pays(length: int) -> bool:
    """Whether a helper should draw the next epoch's permutation while this one is handed
    out: for epochs of ``MIN_WORK`` to ``NextOrder.LIMIT`` indices, where helpers may run.

    :meth:`EpochDraw.alongside` asks only from the second pass on (the epochs are being run
    one after the other) and not while a ``WalkCache`` is in use: there the epoch is short
    beside the data and the thread, measured, cost more than the permutation it hid.
    """
    return length <= NextOrder.LIMIT and helper_allowed(length)


class EpochDraw:
    """The draw of a class-level epoch: the plan's counts per class, filled by walking each
    class (or i.i.d. with ``replacement``), or by per-sample weight where ``weights`` (in
    class order, :func:`~torch_balance.draws.group_sample_weights`) are given.

    The seed is passed on every call (a sampler's seed is writable). A pickled draw arrives
    with empty caches.

    Args:
        plan: Target counts per class.
        weights: Per-sample weights in class order, or None.
        replacement: Draw each class i.i.d. with replacement.

    Example:
        >>> from torch_balance.labels import LabelIndex
        >>> from torch_balance.strategies import make_plan
        >>> draw = EpochDraw(make_plan(LabelIndex([0, 0, 0, 1]), "over"), None, False)
        >>> sorted(draw.picks(0, 0).tolist())
        [0, 1, 2, 3, 3, 3]
        >>> picks, order = draw.shuffled(0, 0)
        >>> torch.equal(picks, draw.picks(0, 0)), sorted(order.tolist())
        (True, [0, 1, 2, 3, 4, 5])
    """

    def __init__(self, plan: Plan, weights: torch.Tensor | None, replacement: bool) -> None:
        self.plan = plan
        self.weights = weights
        self.replacement = replacement
        self.cache = WalkCache()
        self.ahead = NextOrder()
        self.passes = 0  # passes handed out: the next order is drawn ahead from the second on

    def picks(self, seed: int, epoch: int) -> torch.Tensor:
        """The epoch's sample indices, grouped by class (class order, unshuffled)."""
        if self.weights is not None:
            return draw_within_class(
                self.plan, self.weights, seed, epoch, replacement=self.replacement
            )
        return draw_epoch(self.plan, seed, epoch, replacement=self.replacement, cache=self.cache)

    def shuffled(
        self, seed: int, epoch: int, *, helper: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(picks, order)``: the shuffled epoch is ``picks[order]``.

        With ``helper`` a helper thread draws the order (and walks) while this thread draws
        the picks; an order drawn ahead for this epoch is used. The result is the same.
        """
        length = self.plan.length
        if self.weights is not None:  # a separate path: the plain epochs stay as they are
            picks = self.picks(seed, epoch)
            order = self.ahead.take(length, seed, epoch)
            return picks, order if order is not None else shuffle_order(length, seed, epoch)
        return shuffled_epoch(
            self.plan,
            seed,
            epoch,
            replacement=self.replacement,
            cache=self.cache,
            helper=helper,
            drawn_ahead=self.ahead,
        )

    def for_pass(self, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`shuffled` for a pass: with a helper thread where one may run."""
        return self.shuffled(seed, epoch, helper=helper_allowed(self.plan.length))

    def alongside(self, chunks: Iterator[T], seed: int, epoch: int) -> Iterator[T]:
        """Hand out ``chunks`` (a pass over ``epoch``) while a helper draws the order of
        ``epoch + 1``, where that pays (see :func:`ahead_pays`)."""
        self.passes += 1
        length = self.plan.length
        if self.passes > 1 and self.cache.buffer is None and ahead_pays(length):
            return alongside(chunks, partial(self._draw_ahead, seed, epoch + 1), helper=True)
        return chunks

    def _draw_ahead(self, seed: int, epoch: int) -> None:
        """The permutation of ``epoch``, drawn ahead (one torch call: a helper holds the GIL
        only to start it and to store it, so it runs beside the hand-out's Python loop)."""
        length = self.plan.length
        self.ahead.put(length, seed, epoch, shuffle_order(length, seed, epoch))
