"""Samplers: the seed, epoch, rank and resume shell around the plan and the draws.

Data flows one way: labels -> :class:`~torch_balance.labels.LabelIndex` -> plan
(:mod:`torch_balance.strategies`) -> draws (:mod:`torch_balance.draws`) -> shard
(:mod:`torch_balance.sharding`) -> indices.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from torch_balance._epoch import EpochShell, describe_plan, describe_weights
from torch_balance._rng import Stream, generator
from torch_balance._threads import alongside, helper_allowed
from torch_balance._validation import check_bool, check_epoch_size, fail
from torch_balance.draws import (
    NextOrder,
    WalkCache,
    draw_within_class,
    group_sample_weights,
    repeat_copies,
    repeat_values,
    shuffle_order,
    shuffled_epoch,
)
from torch_balance.labels import MultiLabelIndex, resolve_labelsets
from torch_balance.sharding import iter_shard
from torch_balance.strategies import EPOCH_BYTES, Strategy, plan_for

__all__ = [
    "BalancedSampler",
    "RandomOverSampler",
    "RandomUnderSampler",
    "RepeatFactorSampler",
    "repeat_factors",
]


def ahead_pays(length: int) -> bool:
    """Whether a helper should draw the next epoch's permutation while this one is handed
    out: for epochs of ``MIN_WORK`` to ``NextOrder.LIMIT`` indices, where helpers may run.

    The sampler asks only from its second pass on (it is being run epoch after epoch) and
    not while a ``WalkCache`` is in use: there the epoch is short beside the data and the
    thread, measured, cost more than the permutation it hid.
    """
    return length <= NextOrder.LIMIT and helper_allowed(length)


class BalancedSampler(EpochShell, DistributedSampler[int]):
    """Over- or undersample a dataset at the index level, redrawn every epoch.

    It is a ``DistributedSampler`` (without its constructor): trainers that wrap every other
    sampler for DDP (Lightning's ``use_distributed_sampler=True``) leave it alone and call its
    ``set_epoch``. Ranks are looked up when each epoch starts, so it can be built anywhere,
    before or after ``init_process_group``; under accelerate's ``prepare()`` (and so the
    Hugging Face ``Trainer``), which shards batches itself, it yields the whole epoch.

    Args:
        dataset_or_labels: A dataset (labels are read with :func:`get_labels`) or a 1-D array,
            tensor or sequence of labels.
        strategy: ``"over"``, ``"under"``, ``"instance"``, ``"sqrt"``, ``"class"``,
            ``Power(q)``, ``Progressive(T)``, ``Deferred(E)``, ``Feedback(base)`` or a callable
            ``(counts, epoch) -> dict``; see :mod:`torch_balance.strategies`.
        sampling_strategy: imbalanced-learn's ``sampling_strategy`` for ``"over"`` and
            ``"under"``, with exactly its meaning.
        num_samples: Epoch length for power strategies, schedules and callables.
        replacement: Draw each class i.i.d. with replacement instead of walking through it.
        seed: Shared seed; must be the same on every rank.
        num_replicas: Number of ranks; default: looked up from ``torch.distributed`` when each
            epoch starts (1 without a process group).
        rank: This rank; default: looked up likewise (0 without a process group).
        process_group: The data-parallel group (a ``ProcessGroup`` or a 1-D ``DeviceMesh``)
            whose ranks share the epoch; default the default group. Name it under tensor,
            context or pipeline parallelism, where the default group holds every process.
        drop_last: Drop the tail of the epoch so that it divides evenly among ranks, instead of
            padding it.
        label_fn: ``label_fn(dataset, i) -> label``, to read labels a cheap way.
        sample_weights: One weight ``>= 0`` per sample (fixed at construction). The plan
            still fixes how many samples each class gets; within a class, member ``j`` fills
            them in proportion to ``w_j`` (i.i.d. with ``replacement=True``, otherwise
            ``floor`` or ``ceil`` of its share, see
            :func:`~torch_balance.draws.draw_within_class`); weight 0 is never drawn.
            ``state_dict()`` holds a digest of the weights, so a state saved for other
            weights is refused.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For invalid values, with the fix in the message.

    Example:
        >>> sampler = BalancedSampler([0, 0, 0, 0, 1], "over", seed=1)
        >>> len(sampler), sampler.target_counts()
        (8, {0: 4, 1: 4})
        >>> sorted(sampler)
        [0, 1, 2, 3, 4, 4, 4, 4]
        >>> weighted = BalancedSampler([0, 0, 0, 0, 1], "over", sample_weights=[3, 1, 0, 0, 1])
        >>> sorted(weighted)
        [0, 0, 0, 1, 4, 4, 4, 4]
    """

    def __init__(
        self,
        dataset_or_labels: Any,
        strategy: Strategy = "over",
        *,
        sampling_strategy: Any = "auto",
        num_samples: int | None = None,
        replacement: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        process_group: Any = None,
        drop_last: bool = False,
        label_fn: Callable[[Any, int], Any] | None = None,
        sample_weights: Any = None,
    ) -> None:
        self._open(seed, num_replicas, rank, drop_last, process_group)
        self.replacement = check_bool("replacement", replacement)
        self.index, self.plan = plan_for(
            dataset_or_labels,
            strategy,
            sampling_strategy=sampling_strategy,
            num_samples=num_samples,
            label_fn=label_fn,
        )
        self._weights = group_sample_weights(self.index, self.plan, sample_weights)
        self.strategy = strategy
        self._global_length = self.plan.length
        self._walks = WalkCache()
        self._next_order = NextOrder()
        self._passes = 0
        self._ready()

    def target_counts(self, epoch: int | None = None) -> dict[Any, int]:
        """Per-class composition of one global epoch (all ranks together, before padding).

        Args:
            epoch: Which epoch; default the epoch of the next pass.
        """
        return self.plan.as_dict(self._epoch_arg(epoch))

    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor:
        """The global epoch (before sharding) as one tensor, in iteration order."""
        epoch = self._epoch_arg(epoch)
        picks, order = self._draw(epoch, helper=False)
        return picks.index_select(0, order)

    def _draw(self, epoch: int, *, helper: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(picks, order)``: the epoch is ``picks[order]``."""
        if self._weights is not None:  # a separate path: the plain epochs stay as they are
            picks = draw_within_class(
                self.plan, self._weights, self.seed, epoch, replacement=self.replacement
            )
            order = self._next_order.take(self.plan.length, self.seed, epoch)
            return picks, order if order is not None else shuffle_order(
                self.plan.length, self.seed, epoch
            )
        # a helper thread draws the permutation while this one groups and draws
        return shuffled_epoch(
            self.plan,
            self.seed,
            epoch,
            replacement=self.replacement,
            cache=self._walks,
            helper=helper,
            drawn_ahead=self._next_order,
        )

    def _draw_ahead(self, epoch: int) -> None:
        """The permutation of ``epoch``, drawn ahead (one torch call: a helper holds the GIL
        only to start it and to store it, so it runs beside the hand-out's Python loop)."""
        length = self.plan.length
        self._next_order.put(length, self.seed, epoch, shuffle_order(length, self.seed, epoch))

    def __iter__(self) -> Iterator[int]:
        """Yield this rank's indices of the current epoch."""
        current, world, rank = self._begin()
        picks, order = self._draw(current.epoch, helper=helper_allowed(self.plan.length))
        chunks = iter_shard(picks, order, world, rank, self.drop_last, current.start)
        self._passes += 1
        if self._passes > 1 and self._walks.buffer is None and ahead_pays(self.plan.length):
            chunks = alongside(chunks, partial(self._draw_ahead, current.epoch + 1), helper=True)
        return self._state.run(current, chunks)

    def _own_settings(self, epoch: int) -> dict[str, Any]:
        return {
            "replacement": self.replacement,
            **describe_plan(self.plan, epoch),
            **describe_weights(self._weights),
        }

    def extra_repr(self) -> str:
        """The settings shown by ``repr()``."""
        return (
            f"strategy={self.strategy!r}, num_samples={self.plan.length}, "
            f"classes={self.index.num_classes}"
        )


class _ImblearnSampler(BalancedSampler):
    """imbalanced-learn's random over- or undersampler: what differs is ``_strategy``."""

    _strategy: str

    def __init__(
        self, dataset_or_labels: Any, sampling_strategy: Any = "auto", **kwargs: Any
    ) -> None:
        if "strategy" in kwargs:
            fail(
                "strategy",
                f"no strategy argument (this sampler is {self._strategy!r})",
                kwargs["strategy"],
                "Use BalancedSampler to choose a strategy",
                kind=TypeError,
            )
        super().__init__(
            dataset_or_labels, self._strategy, sampling_strategy=sampling_strategy, **kwargs
        )


class RandomOverSampler(_ImblearnSampler):
    """Random oversampling with imbalanced-learn's ``sampling_strategy``, redrawn each epoch.

    Shortcut for ``BalancedSampler(dataset_or_labels, "over", sampling_strategy=...)``.

    Example:
        >>> RandomOverSampler([0, 0, 0, 1, 2], sampling_strategy="minority").target_counts()
        {0: 3, 1: 3, 2: 1}
    """

    _strategy = "over"


class RandomUnderSampler(_ImblearnSampler):
    """Random undersampling with imbalanced-learn's ``sampling_strategy``, redrawn each epoch.

    Successive epochs walk through each undersampled class, so every sample is used before
    any is used again. Shortcut for ``BalancedSampler(dataset_or_labels, "under", ...)``.

    Example:
        >>> RandomUnderSampler([0, 0, 0, 1, 2]).target_counts()
        {0: 1, 1: 1, 2: 1}
    """

    _strategy = "under"


def check_threshold(threshold: Any) -> float:
    """A repeat-factor threshold: a positive finite number."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        fail("threshold", "a positive number such as 0.001", threshold, kind=TypeError)
    try:
        value = float(threshold)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or value <= 0:
        fail(
            "threshold",
            "a positive finite number such as 0.001 (LVIS)",
            threshold,
            "Categories in fewer than this fraction of images get repeated",
        )
    return value


def image_factors(index: MultiLabelIndex, threshold: float, sqrt: bool) -> np.ndarray:
    # t / f(c) with f(c) = count / images, written with one rounding step
    ratio = threshold * len(index) / index.counts.astype(np.float64)
    category = np.maximum(1.0, np.sqrt(ratio) if sqrt else ratio)
    factors = np.ones(len(index), dtype=np.float64)
    sizes = index.sizes()
    labelled = sizes > 0
    if labelled.any():
        values = category[index.codes]
        factors[labelled] = np.maximum.reduceat(values, index.offsets[:-1][labelled])
    return factors


def repeat_factors(labelsets: Any, threshold: float = 0.001, *, sqrt: bool = True) -> torch.Tensor:
    """Per-image repeat factors of LVIS (Gupta et al., CVPR 2019), as detectron2 defines them.

    ``f(c)`` is the fraction of images that contain category ``c``;
    ``r(c) = max(1, sqrt(threshold / f(c)))`` (or ``threshold / f(c)`` with ``sqrt=False``);
    an image's factor is the largest ``r(c)`` over its categories, 1 for an image without any.

    Args:
        labelsets: Per-image category collections (anything
            :class:`~torch_balance.labels.MultiLabelIndex` accepts), a
            ``MultiLabelIndex``, or a dataset (read with
            :func:`~torch_balance.labels.get_labelsets`).
        threshold: Categories present in fewer than this fraction of images are repeated.
        sqrt: Use the square root of ``threshold / f(c)`` (LVIS, detectron2's default).

    Returns:
        A ``float64`` tensor with one factor (>= 1) per image.

    Raises:
        TypeError: For a non-numeric threshold or malformed label sets.
        ValueError: For a threshold that is not positive.

    Example:
        >>> repeat_factors([(0,), (0,), (0, 1), ()], threshold=0.5)
        tensor([1.0000, 1.0000, 1.4142, 1.0000], dtype=torch.float64)
        >>> repeat_factors([(0,), (0,), (0, 1), ()], threshold=0.5, sqrt=False)
        tensor([1., 1., 2., 1.], dtype=torch.float64)
    """
    threshold = check_threshold(threshold)
    check_bool("sqrt", sqrt)
    index = resolve_labelsets(labelsets)
    return torch.from_numpy(image_factors(index, threshold, sqrt))


Rounding = Literal["stochastic", "ceil"]


class RepeatFactorSampler(EpochShell, DistributedSampler[int]):
    """Repeat-factor sampling for multi-label and detection data (LVIS; detectron2, mmengine).

    Image ``i`` is repeated ``r_i`` times per epoch on average, with ``r_i`` from
    :func:`repeat_factors`. ``rounding="stochastic"`` draws ``trunc(r_i) + Bernoulli(frac(r_i))``
    copies afresh every epoch (detectron2's ``RepeatFactorTrainingSampler``);
    ``rounding="ceil"`` uses ``ceil(r_i)`` copies every epoch (mmengine's
    ``ClassBalancedDataset``).

    Fixed epoch length: with stochastic rounding the number of copies drawn changes from epoch
    to epoch, but DDP needs every rank to yield the same, fixed number of indices. The global
    epoch therefore always has ``num_samples = round(sum_i r_i)`` indices (``sum_i ceil(r_i)``
    with ``"ceil"``): the copies drawn are shuffled, then cut to that length or, when fewer
    were drawn, extended by repeating the start of the shuffled order. It is then sharded with
    ``DistributedSampler``'s padding and ``drop_last`` rules. :meth:`image_copies` gives the
    copies drawn before the cut.

    Args:
        dataset_or_labelsets: A dataset (sets via
            :func:`~torch_balance.labels.get_labelsets`), per-image category collections,
            a 2-D multi-hot matrix, a vector of single labels, or a ``MultiLabelIndex``.
        threshold: Categories present in fewer than this fraction of images are repeated.
        sqrt: ``r(c) = max(1, sqrt(t / f(c)))``; ``False`` for ``max(1, t / f(c))``.
        rounding: ``"stochastic"`` or ``"ceil"``.
        seed: Shared seed; must be the same on every rank.
        num_replicas: Number of ranks; default from ``torch.distributed`` or 1.
        rank: This rank; default from ``torch.distributed`` or 0.
        process_group: The data-parallel group (a ``ProcessGroup`` or a 1-D ``DeviceMesh``)
            whose ranks share the epoch; default the default group. Name it under tensor,
            context or pipeline parallelism, where the default group holds every process.
        drop_last: Drop the tail so that it divides evenly among ranks, instead of padding.
        label_fn: ``label_fn(dataset, i) -> iterable of category ids``.

    Attributes:
        repeat_factors: ``float64`` tensor, one factor per image.
        num_samples: Length of the global epoch.

    Example:
        >>> sets = [(0,), (0,), (0,), (0, 1), ()]
        >>> sampler = RepeatFactorSampler(sets, threshold=0.8, sqrt=False, rounding="ceil")
        >>> sampler.repeat_factors.tolist()
        [1.0, 1.0, 1.0, 4.0, 1.0]
        >>> len(sampler), sorted(sampler)
        (8, [0, 1, 2, 3, 3, 3, 3, 4])
    """

    def __init__(
        self,
        dataset_or_labelsets: Any,
        threshold: float = 0.001,
        *,
        sqrt: bool = True,
        rounding: Rounding = "stochastic",
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        process_group: Any = None,
        drop_last: bool = False,
        label_fn: Callable[[Any, int], Iterable[Any]] | None = None,
    ) -> None:
        self.threshold = check_threshold(threshold)
        self.sqrt = check_bool("sqrt", sqrt)
        if not isinstance(rounding, str) or rounding not in ("stochastic", "ceil"):
            fail(
                "rounding",
                "'stochastic' (detectron2) or 'ceil' (mmengine)",
                rounding,
                kind=ValueError if isinstance(rounding, str) else TypeError,
            )
        self.rounding: Rounding = rounding
        self._open(seed, num_replicas, rank, drop_last, process_group)
        self.index = resolve_labelsets(dataset_or_labelsets, label_fn)
        factors = image_factors(self.index, self.threshold, self.sqrt)
        check_epoch_size(
            "threshold",
            int(min(float(np.ceil(factors).sum()), 2.0**80)),
            EPOCH_BYTES,
            "Use a smaller threshold: the repeat factors ask for more copies than memory holds",
        )
        self.repeat_factors: torch.Tensor = torch.from_numpy(factors)
        if rounding == "ceil":
            self._whole = torch.from_numpy(np.ceil(factors).astype(np.int64))
            self._fraction: torch.Tensor | None = None
            self.num_samples = int(self._whole.sum())
        else:
            self._whole = torch.from_numpy(np.floor(factors).astype(np.int64))
            self._fraction = self.repeat_factors - self._whole
            self.num_samples = max(len(self.index), math.floor(float(factors.sum()) + 0.5))
        self._global_length = self.num_samples
        self._ready()

    def _draw(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(copies per image, positions)``: the epoch is ``repeat_values(copies)[positions]``."""
        g = generator(self.seed, Stream.REPEAT, epoch)
        return repeat_copies(self._whole, self._fraction, self.num_samples, g)

    def image_copies(self, epoch: int | None = None) -> torch.Tensor:
        """Copies of each image drawn for ``epoch`` (before the cut to ``num_samples``)."""
        epoch = self._epoch_arg(epoch)
        return self._draw(epoch)[0].clone()

    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor:
        """The global epoch (before sharding) as one tensor, in iteration order."""
        epoch = self._epoch_arg(epoch)
        copies, order = self._draw(epoch)
        return repeat_values(copies).index_select(0, order)

    def category_counts(self, epoch: int | None = None) -> dict[Any, int]:
        """Occurrences of each category in the global epoch (an image counts once for each of
        its categories; images without categories are not counted)."""
        per_image = np.bincount(self.epoch_indices(epoch).numpy(), minlength=len(self.index))
        weights = np.repeat(per_image, self.index.sizes()).astype(np.float64)
        counts = np.bincount(self.index.codes, weights, minlength=self.index.num_categories)
        return dict(zip(self.index.keys(), counts.astype(np.int64).tolist(), strict=True))

    def __iter__(self) -> Iterator[int]:
        """Yield this rank's indices of the current epoch."""
        current, world, rank = self._begin()
        copies, order = self._draw(current.epoch)
        values = repeat_values(copies)
        chunks = iter_shard(values, order, world, rank, self.drop_last, current.start)
        return self._state.run(current, chunks)

    def _own_settings(self, epoch: int) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "sqrt": self.sqrt,
            "rounding": self.rounding,
        }

    def extra_repr(self) -> str:
        """The settings shown by ``repr()``."""
        return (
            f"threshold={self.threshold}, sqrt={self.sqrt}, rounding={self.rounding!r}, "
            f"images={len(self.index)}, num_samples={self.num_samples}"
        )
