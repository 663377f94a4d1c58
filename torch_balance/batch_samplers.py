"""Batch samplers: balance inside every batch.

* :class:`ClassBalancedBatchSampler` yields batches of ``samples_per_class`` samples of each of
  ``classes_per_batch`` distinct classes (P x K batches for metric learning and few-shot).
* :class:`StratifiedBatchSampler` splits the epoch :class:`~torch_balance.BalancedSampler`
  would draw into batches whose class counts each follow the epoch's proportions within 1.

The batches come from pure kernels in :mod:`torch_balance.draws` (:func:`~torch_balance.draws.
stratified_order`, :func:`~torch_balance.draws.class_sequence`,
:func:`~torch_balance.draws.class_balanced_grid`); the classes add seed, epoch, rank and
resumable state around them through the one epoch layer (:mod:`torch_balance._epoch`).

Batch samplers shard *whole batches* with ``DistributedSampler``'s rules applied to the list of
batches: rank ``r`` of ``R`` takes batches ``r, r + R, ...``; without ``drop_last`` the list is
padded by repeating its first batches so every rank gets ``ceil(G / R)`` batches, with
``drop_last`` its tail is dropped so every rank gets ``floor(G / R)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from torch_balance._epoch import EpochShell, describe_plan, describe_weights
from torch_balance._rng import Stream, generator
from torch_balance._validation import check_bool, check_epoch_size, check_int, fail
from torch_balance.draws import (
    WalkCache,
    class_balanced_grid,
    class_sequence,
    draw_epoch,
    draw_within_class,
    group_sample_weights,
    stratified_order,
)
from torch_balance.labels import resolve_labels
from torch_balance.sharding import CHUNK, iter_shard
from torch_balance.strategies import EPOCH_BYTES, Strategy, plan_for

__all__ = ["ClassBalancedBatchSampler", "StratifiedBatchSampler"]


class _EpochHandle:
    """Forwards ``set_epoch`` to its owner.

    Lightning and accelerate set the epoch of ``loader.batch_sampler.sampler``; a batch
    sampler here has no inner sampler, so it offers this handle in that place.
    """

    def __init__(self, owner: EpochShell) -> None:
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)

    def __repr__(self) -> str:
        return f"<set_epoch handle of {type(self._owner).__name__}>"


def _batch_lists(flat: torch.Tensor, batch_size: int, num_full: int, ids: list[int]) -> list[Any]:
    grid = flat[: num_full * batch_size].view(num_full, batch_size)
    full_ids = [i for i in ids if i < num_full]
    rows = iter(grid[torch.tensor(full_ids, dtype=torch.int64)].tolist() if full_ids else [])
    if len(full_ids) == len(ids):
        return list(rows)
    short = flat[num_full * batch_size :].tolist()
    return [next(rows) if i < num_full else list(short) for i in ids]


def _shard_batches(
    flat: torch.Tensor,
    batch_size: int,
    num_batches: int,
    num_replicas: int,
    rank: int,
    drop_last: bool,
    start: int,
) -> Iterator[list[Any]]:
    """This rank's whole batches from global batch position ``start`` on, in chunks of lists."""
    num_full = min(num_batches, flat.shape[0] // batch_size)
    ids = torch.arange(num_batches)
    step = max(1, CHUNK // batch_size)
    for chunk in iter_shard(ids, ids, num_replicas, rank, drop_last, start):
        for begin in range(0, len(chunk), step):
            yield _batch_lists(flat, batch_size, num_full, chunk[begin : begin + step])


class _BatchShell(EpochShell):
    """Iteration shared by the batch samplers: this rank's whole batches of ``_flat(epoch)``."""

    batch_size: int
    num_batches: int
    drop_last: bool

    def _flat(self, epoch: int) -> torch.Tensor:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this rank's batches of the current epoch, as lists of dataset indices."""
        current, world, rank = self._begin()
        chunks = _shard_batches(
            self._flat(current.epoch),
            self.batch_size,
            self.num_batches,
            world,
            rank,
            self.drop_last,
            current.start,
        )
        return self._state.run(current, chunks)

    @property
    def sampler(self) -> _EpochHandle:
        """What trainers reach as ``loader.batch_sampler.sampler`` to call ``set_epoch`` on.

        Lightning and accelerate set the epoch through that attribute; this handle passes it
        on, so those trainers' epoch counter drives this batch sampler too.
        """
        return _EpochHandle(self)


class ClassBalancedBatchSampler(_BatchShell, Sampler[list[int]]):
    """Batches of ``samples_per_class`` samples from each of ``classes_per_batch`` classes.

    P x K batches for metric learning and few-shot training: every batch holds exactly
    ``samples_per_class`` (K) samples of each of ``classes_per_batch`` (P) distinct classes.
    Over an epoch every class fills the same number of places, within one; inside a class the
    samples walk through a random permutation, so each is used before any repeats. A class with
    fewer than K samples is filled by repeating its samples (with a warning at construction).
    Each epoch starts fresh permutations from (seed, epoch).

    Pass it as ``DataLoader(dataset, batch_sampler=...)``.

    Args:
        dataset_or_labels: A dataset (labels via ``get_labels``) or a 1-D label vector.
        classes_per_batch: P, at most the number of classes.
        samples_per_class: K.
        num_batches: Batches in one global epoch; default enough for every sample of the
            largest class to be used once: ``ceil(C * ceil(n_max / K) / P)``.
        seed: Shared seed; must be the same on every rank.
        num_replicas: Number of ranks; default from ``torch.distributed`` or 1.
        rank: This rank; default from ``torch.distributed`` or 0.
        process_group: The data-parallel group (a ``ProcessGroup`` or a 1-D ``DeviceMesh``)
            whose ranks share the epoch; default the default group. Name it under tensor,
            context or pipeline parallelism, where the default group holds every process.
        drop_last: Drop the last batches so they divide evenly among ranks, instead of
            repeating the first ones.
        label_fn: ``label_fn(dataset, i) -> label``, to read labels a cheap way.

    Raises:
        ValueError: If ``classes_per_batch`` exceeds the number of classes.

    Example:
        >>> labels = [0, 0, 0, 0, 1, 1, 2, 2, 2]
        >>> sampler = ClassBalancedBatchSampler(labels, 2, 2, seed=0)
        >>> len(sampler), sampler.target_counts()
        (3, {0: 4, 1: 4, 2: 4})
        >>> [len(batch) for batch in sampler]
        [4, 4, 4]
    """

    def __init__(
        self,
        dataset_or_labels: Any,
        classes_per_batch: int,
        samples_per_class: int,
        *,
        num_batches: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        process_group: Any = None,
        drop_last: bool = False,
        label_fn: Callable[[Any, int], Any] | None = None,
    ) -> None:
        self._open(seed, num_replicas, rank, drop_last, process_group)
        self.index = resolve_labels(dataset_or_labels, label_fn)
        classes = self.index.num_classes
        self.classes_per_batch = check_int("classes_per_batch", classes_per_batch, minimum=1)
        if self.classes_per_batch > classes:
            fail(
                "classes_per_batch",
                f"at most the number of classes in the labels ({classes})",
                classes_per_batch,
                f"Lower classes_per_batch to {classes} or fewer",
            )
        self.samples_per_class = check_int("samples_per_class", samples_per_class, minimum=1)
        k = self.samples_per_class
        small = np.flatnonzero(self.index.counts < k)
        if small.shape[0]:
            keys = self.index.keys()
            shown = ", ".join(f"{keys[c]!r} ({int(self.index.counts[c])})" for c in small[:5])
            more = f" and {small.shape[0] - 5} more" if small.shape[0] > 5 else ""
            warnings.warn(
                f"ClassBalancedBatchSampler: classes with fewer than samples_per_class={k} "
                f"samples, filled by repeating them: {shown}{more}",
                UserWarning,
                stacklevel=2,
            )
        sized_by = "num_batches" if num_batches is not None else "samples_per_class"
        if num_batches is None:
            most = int(self.index.counts.max())
            num_batches = -(-classes * -(-most // k) // self.classes_per_batch)
        self.num_batches = check_int("num_batches", num_batches, minimum=1, allow_none=False)
        self.batch_size = self.classes_per_batch * k
        check_epoch_size(
            sized_by,
            self.num_batches * self.batch_size,
            EPOCH_BYTES,
            "Ask for fewer batches or a smaller samples_per_class",
        )
        self._global_length = self.num_batches
        self._ready()

    def _groups(self, g: torch.Generator) -> np.ndarray:
        return class_sequence(self.index.num_classes, self.classes_per_batch, self.num_batches, g)

    def _grid(self, epoch: int) -> torch.Tensor:
        g = generator(self.seed, Stream.CLASS_BALANCED, epoch)
        groups = self._groups(g)
        return class_balanced_grid(self.index, groups, self.samples_per_class, g)

    def target_counts(self, epoch: int | None = None) -> dict[Any, int]:
        """Samples per class in one global epoch (all ranks together, before padding)."""
        epoch = self._epoch_arg(epoch)
        g = generator(self.seed, Stream.CLASS_BALANCED, epoch)
        places = np.bincount(self._groups(g).reshape(-1), minlength=self.index.num_classes)
        return dict(zip(self.index.keys(), (places * self.samples_per_class).tolist(), strict=True))

    def epoch_indices(self, epoch: int | None = None) -> list[list[int]]:
        """The global epoch (before sharding) as a list of batches, in iteration order."""
        epoch = self._epoch_arg(epoch)
        return self._grid(epoch).tolist()

    def _flat(self, epoch: int) -> torch.Tensor:
        return self._grid(epoch).reshape(-1)

    def _own_settings(self, epoch: int) -> dict[str, Any]:
        return {
            "classes_per_batch": self.classes_per_batch,
            "samples_per_class": self.samples_per_class,
            "num_batches": self.num_batches,
        }

    def extra_repr(self) -> str:
        """The settings shown by ``repr()``."""
        return (
            f"classes_per_batch={self.classes_per_batch}, "
            f"samples_per_class={self.samples_per_class}, num_batches={self.num_batches}, "
            f"classes={self.index.num_classes}"
        )


class StratifiedBatchSampler(_BatchShell, Sampler[list[int]]):
    """:class:`~torch_balance.BalancedSampler`'s epoch, cut into stratified batches.

    The epoch holds exactly what ``BalancedSampler`` with the same arguments would draw (same
    plan, same draws); it is then arranged so that every batch's class counts follow the
    epoch's class proportions: with ``k_c`` of ``K`` draws in class ``c``, a batch of ``B``
    holds ``floor(B k_c / K)`` or ``ceil(B k_c / K)`` of them. No batch is all-majority by
    chance. See :func:`stratified_order`.

    Pass it as ``DataLoader(dataset, batch_sampler=...)``.

    Args:
        dataset_or_labels: A dataset (labels via ``get_labels``) or a 1-D label vector.
        batch_size: Samples per batch.
        strategy: As for ``BalancedSampler``: ``"over"``, ``"under"``, ``"sqrt"``, ``Power``,
            ``Progressive``, ``Deferred`` or a callable.
        sampling_strategy: imbalanced-learn's ``sampling_strategy`` for ``"over"``/``"under"``.
        num_samples: Epoch length for power strategies, schedules and callables.
        replacement: Draw each class i.i.d. with replacement.
        drop_last: Drop the last, short batch, and the last batches so they divide evenly among
            ranks; otherwise keep it, and repeat the first batches to even out the ranks.
        seed: Shared seed; must be the same on every rank.
        num_replicas: Number of ranks; default from ``torch.distributed`` or 1.
        rank: This rank; default from ``torch.distributed`` or 0.
        process_group: The data-parallel group (a ``ProcessGroup`` or a 1-D ``DeviceMesh``)
            whose ranks share the epoch; default the default group. Name it under tensor,
            context or pipeline parallelism, where the default group holds every process.
        label_fn: ``label_fn(dataset, i) -> label``, to read labels a cheap way.
        sample_weights: Per-sample weights that choose the members filling each class's
            count, as for ``BalancedSampler``; the batches stay stratified.

    Example:
        >>> labels = [0] * 12 + [1] * 4
        >>> sampler = StratifiedBatchSampler(labels, 4, "instance", seed=0)
        >>> [sum(labels[i] for i in batch) for batch in sampler]
        [1, 1, 1, 1]
    """

    def __init__(
        self,
        dataset_or_labels: Any,
        batch_size: int,
        strategy: Strategy = "over",
        *,
        sampling_strategy: Any = "auto",
        num_samples: int | None = None,
        replacement: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        process_group: Any = None,
        label_fn: Callable[[Any, int], Any] | None = None,
        sample_weights: Any = None,
    ) -> None:
        self._open(seed, num_replicas, rank, drop_last, process_group)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
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
        full, rem = divmod(self.plan.length, self.batch_size)
        self.num_batches = full + (1 if rem and not self.drop_last else 0)
        if self.num_batches == 0:
            fail(
                "batch_size",
                f"at most the epoch length ({self.plan.length}) with drop_last=True",
                batch_size,
                "Use a smaller batch_size or drop_last=False",
            )
        self._global_length = self.num_batches
        self._walks = WalkCache()
        self._ready()

    def _flat(self, epoch: int) -> torch.Tensor:
        if self._weights is not None:
            picks = draw_within_class(
                self.plan, self._weights, self.seed, epoch, replacement=self.replacement
            )
        else:
            picks = draw_epoch(
                self.plan, self.seed, epoch, replacement=self.replacement, cache=self._walks
            )
        g = generator(self.seed, Stream.STRATIFIED, epoch)
        return stratified_order(picks, self.plan.targets(epoch), self.batch_size, g)

    def target_counts(self, epoch: int | None = None) -> dict[Any, int]:
        """Per-class composition of one global epoch (all ranks, before padding).

        The plan's counts, less the dropped short batch with ``drop_last``.
        """
        epoch = self._epoch_arg(epoch)
        counts = self.plan.as_dict(epoch)
        if self.drop_last and self.plan.length % self.batch_size:
            flat = self._flat(epoch)
            dropped = flat[self.num_batches * self.batch_size :].numpy()
            for label in self.index.labels[dropped].tolist():
                counts[label] -= 1
        return counts

    def epoch_indices(self, epoch: int | None = None) -> list[list[int]]:
        """The global epoch (before sharding) as a list of batches, in iteration order."""
        epoch = self._epoch_arg(epoch)
        flat = self._flat(epoch)
        return [chunk.tolist() for chunk in flat.split(self.batch_size)][: self.num_batches]

    def _own_settings(self, epoch: int) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "replacement": self.replacement,
            **describe_plan(self.plan, epoch),
            **describe_weights(self._weights),
        }

    def extra_repr(self) -> str:
        """The settings shown by ``repr()``."""
        return (
            f"batch_size={self.batch_size}, strategy={self.strategy!r}, "
            f"num_samples={self.plan.length}, classes={self.index.num_classes}"
        )
