"""Samplers: the seed, epoch, rank and resume shell around the plan and the draws.

Data flows one way: labels -> :class:`~torch_balance.labels.LabelIndex` -> plan
(:mod:`torch_balance.strategies`) -> draws (:mod:`torch_balance.draws`) -> shard
(:mod:`torch_balance.distributed`) -> indices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DistributedSampler

from torch_balance._epoch import EpochShell, describe_plan, plan_for
from torch_balance._validation import check_bool, fail
from torch_balance.distributed import iter_shard
from torch_balance.draws import draw_epoch, shuffle_order
from torch_balance.strategies import Strategy

__all__ = ["BalancedSampler", "RandomOverSampler", "RandomUnderSampler"]


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
            ``Power(q)``, ``Progressive(T)``, ``Deferred(E)`` or a callable
            ``(counts, epoch) -> dict``; see :mod:`torch_balance.strategies`.
        sampling_strategy: imbalanced-learn's ``sampling_strategy`` for ``"over"`` and
            ``"under"``, with exactly its meaning.
        num_samples: Epoch length for power strategies, schedules and callables.
        replacement: Draw each class i.i.d. with replacement instead of walking through it.
        seed: Shared seed; must be the same on every rank.
        num_replicas: Number of ranks; default: looked up from ``torch.distributed`` when each
            epoch starts (1 without a process group).
        rank: This rank; default: looked up likewise (0 without a process group).
        drop_last: Drop the tail of the epoch so that it divides evenly among ranks, instead of
            padding it.
        label_fn: ``label_fn(dataset, i) -> label``, to read labels a cheap way.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For invalid values, with the fix in the message.

    Example:
        >>> sampler = BalancedSampler([0, 0, 0, 0, 1], "over", seed=1)
        >>> len(sampler), sampler.target_counts()
        (8, {0: 4, 1: 4})
        >>> sorted(sampler)
        [0, 1, 2, 3, 4, 4, 4, 4]
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
        drop_last: bool = False,
        label_fn: Callable[[Any, int], Any] | None = None,
    ) -> None:
        self._open(seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last)
        self.replacement = check_bool("replacement", replacement)
        self.index, self.plan = plan_for(
            dataset_or_labels,
            strategy,
            sampling_strategy=sampling_strategy,
            num_samples=num_samples,
            label_fn=label_fn,
        )
        self.strategy = strategy
        self._global_length = self.plan.length
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
        picks = draw_epoch(self.plan, self.seed, epoch, replacement=self.replacement)
        return picks.index_select(0, shuffle_order(picks.shape[0], self.seed, epoch))

    def __iter__(self) -> Iterator[int]:
        current, world, rank = self._begin()
        picks = draw_epoch(self.plan, self.seed, current.epoch, replacement=self.replacement)
        order = shuffle_order(picks.shape[0], self.seed, current.epoch)
        chunks = iter_shard(picks, order, world, rank, self.drop_last, current.base)
        return self._state.run(current, chunks)

    def _own_settings(self, epoch: int) -> dict[str, Any]:
        return {"replacement": self.replacement, **describe_plan(self.plan, epoch)}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(strategy={self.strategy!r}, num_samples={self.plan.length}, "
            f"classes={self.index.num_classes}, {self._where()})"
        )


class RandomOverSampler(BalancedSampler):
    """Random oversampling with imbalanced-learn's ``sampling_strategy``, redrawn each epoch.

    Shortcut for ``BalancedSampler(dataset_or_labels, "over", sampling_strategy=...)``.

    Example:
        >>> RandomOverSampler([0, 0, 0, 1, 2], sampling_strategy="minority").target_counts()
        {0: 3, 1: 3, 2: 1}
    """

    def __init__(
        self, dataset_or_labels: Any, sampling_strategy: Any = "auto", **kwargs: Any
    ) -> None:
        if "strategy" in kwargs:
            fail(
                "strategy",
                "no strategy argument (this sampler is 'over')",
                kwargs["strategy"],
                "Use BalancedSampler to choose a strategy",
                kind=TypeError,
            )
        super().__init__(dataset_or_labels, "over", sampling_strategy=sampling_strategy, **kwargs)


class RandomUnderSampler(BalancedSampler):
    """Random undersampling with imbalanced-learn's ``sampling_strategy``, redrawn each epoch.

    Successive epochs walk through each undersampled class, so every sample is used before
    any is used again. Shortcut for ``BalancedSampler(dataset_or_labels, "under", ...)``.

    Example:
        >>> RandomUnderSampler([0, 0, 0, 1, 2]).target_counts()
        {0: 1, 1: 1, 2: 1}
    """

    def __init__(
        self, dataset_or_labels: Any, sampling_strategy: Any = "auto", **kwargs: Any
    ) -> None:
        if "strategy" in kwargs:
            fail(
                "strategy",
                "no strategy argument (this sampler is 'under')",
                kwargs["strategy"],
                "Use BalancedSampler to choose a strategy",
                kind=TypeError,
            )
        super().__init__(dataset_or_labels, "under", sampling_strategy=sampling_strategy, **kwargs)
