"""Per-sample weights inside a class plan: which members fill each class's target."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from torch_balance._rng import Stream, generator
from torch_balance._validation import Text, check_sample_weights, fail, internal, scaled_weights
from torch_balance.labels import LabelIndex
from torch_balance.strategies import Plan

__all__ = ["draw_within_class", "group_sample_weights"]


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
