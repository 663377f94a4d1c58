"""Batch samplers and repeat-factor sampling: balance inside each batch, or per image.

* :class:`ClassBalancedBatchSampler` yields batches of ``samples_per_class`` samples of each of
  ``classes_per_batch`` distinct classes (P x K batches for metric learning and few-shot).
* :class:`StratifiedBatchSampler` splits the epoch :class:`~torch_balance.BalancedSampler`
  would draw into batches whose class counts each follow the epoch's proportions within 1.
* :class:`RepeatFactorSampler` repeats each image of a multi-label or detection dataset by its
  repeat factor (LVIS, Gupta et al., CVPR 2019), computed by :func:`repeat_factors`.

The work is done by pure functions of (labels, counts, generator) (:func:`repeat_factors`,
:func:`stratified_order`, :func:`class_sequence`, :func:`class_balanced_grid`); the classes add
seed, epoch, rank and resumable state around them through the one epoch layer
(:mod:`torch_balance._epoch`), as the other samplers do.

Batch samplers shard *whole batches* with ``DistributedSampler``'s rules applied to the list of
batches: rank ``r`` of ``R`` takes batches ``r, r + R, ...``; without ``drop_last`` the list is
padded by repeating its first batches so every rank gets ``ceil(G / R)`` batches, with
``drop_last`` its tail is dropped so every rank gets ``floor(G / R)``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Sampler

from torch_balance._epoch import EpochShell, _EpochHandle, describe_plan, plan_for, resolve_labels
from torch_balance._rng import Stream, generator
from torch_balance._validation import check_bool, check_int, fail, internal
from torch_balance.distributed import CHUNK, iter_shard
from torch_balance.draws import draw_epoch
from torch_balance.labels import LabelIndex, MultiLabelIndex, resolve_labelsets
from torch_balance.strategies import Strategy

__all__ = [
    "ClassBalancedBatchSampler",
    "RepeatFactorSampler",
    "StratifiedBatchSampler",
    "class_balanced_grid",
    "class_sequence",
    "repeat_factors",
    "stratified_order",
]


# -- pure kernels ----------------------------------------------------------------------------


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        fail("threshold", "a positive number such as 0.001", threshold, kind=TypeError)
    value = float(threshold)
    if not math.isfinite(value) or value <= 0:
        fail(
            "threshold",
            "a positive finite number such as 0.001 (LVIS)",
            threshold,
            "Categories in fewer than this fraction of images get repeated",
        )
    return value


def _image_factors(index: MultiLabelIndex, threshold: float, sqrt: bool) -> np.ndarray:
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
            :class:`~torch_balance.multilabel.MultiLabelIndex` accepts), a
            ``MultiLabelIndex``, or a dataset (read with
            :func:`~torch_balance.multilabel.get_labelsets`).
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
    threshold = _check_threshold(threshold)
    check_bool("sqrt", sqrt)
    index = resolve_labelsets(labelsets)
    return torch.from_numpy(_image_factors(index, threshold, sqrt))


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
        if f:  # rank q * full + b goes to place q of the class in batch b
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


# -- the shell -------------------------------------------------------------------------------


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
    """This rank's batches from ``start`` on, in chunks of lists (whole batches per rank)."""
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
        current, world, rank = self._begin()
        chunks = _shard_batches(
            self._flat(current.epoch),
            self.batch_size,
            self.num_batches,
            world,
            rank,
            self.drop_last,
            current.base,
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
        drop_last: bool = False,
        label_fn: Callable[[Any, int], Any] | None = None,
    ) -> None:
        self._open(seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last)
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
        if num_batches is None:
            most = int(self.index.counts.max())
            num_batches = -(-classes * -(-most // k) // self.classes_per_batch)
        self.num_batches = check_int("num_batches", num_batches, minimum=1, allow_none=False)
        self.batch_size = self.classes_per_batch * k
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

    def epoch_batches(self, epoch: int | None = None) -> list[list[int]]:
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

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(classes_per_batch={self.classes_per_batch}, "
            f"samples_per_class={self.samples_per_class}, num_batches={self.num_batches}, "
            f"classes={self.index.num_classes}, {self._where()})"
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
        label_fn: ``label_fn(dataset, i) -> label``, to read labels a cheap way.

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
        label_fn: Callable[[Any, int], Any] | None = None,
    ) -> None:
        self._open(seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.replacement = check_bool("replacement", replacement)
        self.index, self.plan = plan_for(
            dataset_or_labels,
            strategy,
            sampling_strategy=sampling_strategy,
            num_samples=num_samples,
            label_fn=label_fn,
        )
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
        self._ready()

    def _flat(self, epoch: int) -> torch.Tensor:
        picks = draw_epoch(self.plan, self.seed, epoch, replacement=self.replacement)
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

    def epoch_batches(self, epoch: int | None = None) -> list[list[int]]:
        """The global epoch (before sharding) as a list of batches, in iteration order."""
        epoch = self._epoch_arg(epoch)
        flat = self._flat(epoch)
        return [chunk.tolist() for chunk in flat.split(self.batch_size)][: self.num_batches]

    def _own_settings(self, epoch: int) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "replacement": self.replacement,
            **describe_plan(self.plan, epoch),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batch_size={self.batch_size}, strategy={self.strategy!r}, "
            f"num_samples={self.plan.length}, classes={self.index.num_classes}, "
            f"{self._where()})"
        )


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
    ``DistributedSampler``'s padding and ``drop_last`` rules. :meth:`epoch_counts` gives the
    copies drawn before the cut.

    Args:
        dataset_or_labelsets: A dataset (sets via
            :func:`~torch_balance.multilabel.get_labelsets`), per-image category collections,
            a 2-D multi-hot matrix, a vector of single labels, or a ``MultiLabelIndex``.
        threshold: Categories present in fewer than this fraction of images are repeated.
        sqrt: ``r(c) = max(1, sqrt(t / f(c)))``; ``False`` for ``max(1, t / f(c))``.
        rounding: ``"stochastic"`` or ``"ceil"``.
        seed: Shared seed; must be the same on every rank.
        num_replicas: Number of ranks; default from ``torch.distributed`` or 1.
        rank: This rank; default from ``torch.distributed`` or 0.
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
        drop_last: bool = False,
        label_fn: Callable[[Any, int], Iterable[Any]] | None = None,
    ) -> None:
        self.threshold = _check_threshold(threshold)
        self.sqrt = check_bool("sqrt", sqrt)
        if rounding not in ("stochastic", "ceil"):
            fail(
                "rounding",
                "'stochastic' (detectron2) or 'ceil' (mmengine)",
                rounding,
                kind=ValueError if isinstance(rounding, str) else TypeError,
            )
        self.rounding: Rounding = rounding
        self._open(seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last)
        self.index = resolve_labelsets(dataset_or_labelsets, label_fn)
        factors = _image_factors(self.index, self.threshold, self.sqrt)
        self.repeat_factors: torch.Tensor = torch.from_numpy(factors)
        if rounding == "ceil":
            self._fixed: torch.Tensor | None = torch.from_numpy(np.ceil(factors).astype(np.int64))
            self.num_samples = int(self._fixed.sum())
        else:
            self._fixed = None
            self._whole = torch.from_numpy(np.floor(factors).astype(np.int64))
            self._fraction = self.repeat_factors - self._whole
            self.num_samples = max(len(self.index), math.floor(float(factors.sum()) + 0.5))
        self._global_length = self.num_samples
        self._ready()

    def _draw(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(copies per image, positions)``: the epoch is ``repeat(images)[positions]``."""
        g = generator(self.seed, Stream.REPEAT, epoch)
        if self._fixed is not None:
            copies = self._fixed
        else:
            coin = torch.rand(self._fraction.shape[0], generator=g, dtype=torch.float64)
            copies = self._whole + (coin < self._fraction)
        drawn = int(copies.sum())
        dtype = torch.int32 if drawn < 2**31 else torch.int64
        order = torch.randperm(drawn, generator=g, dtype=dtype)
        if drawn > self.num_samples:
            order = order[: self.num_samples]
        elif drawn < self.num_samples:
            order = order.repeat(-(-self.num_samples // drawn))[: self.num_samples]
        return copies, order

    def _values(self, copies: torch.Tensor) -> torch.Tensor:
        n = copies.shape[0]
        images = torch.arange(n, dtype=torch.int32 if n < 2**31 else torch.int64)
        return torch.repeat_interleave(images, copies)

    def epoch_counts(self, epoch: int | None = None) -> torch.Tensor:
        """Copies of each image drawn for ``epoch`` (before the cut to ``num_samples``)."""
        epoch = self._epoch_arg(epoch)
        return self._draw(epoch)[0].clone()

    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor:
        """The global epoch (before sharding) as one tensor, in iteration order."""
        epoch = self._epoch_arg(epoch)
        copies, order = self._draw(epoch)
        return self._values(copies).index_select(0, order)

    def target_counts(self, epoch: int | None = None) -> dict[Any, int]:
        """Occurrences of each category in the global epoch (an image counts once for each of
        its categories; images without categories are not counted)."""
        per_image = np.bincount(self.epoch_indices(epoch).numpy(), minlength=len(self.index))
        weights = np.repeat(per_image, self.index.sizes()).astype(np.float64)
        counts = np.bincount(self.index.codes, weights, minlength=self.index.num_categories)
        return dict(zip(self.index.keys(), counts.astype(np.int64).tolist(), strict=True))

    def __iter__(self) -> Iterator[int]:
        current, world, rank = self._begin()
        copies, order = self._draw(current.epoch)
        chunks = iter_shard(self._values(copies), order, world, rank, self.drop_last, current.base)
        return self._state.run(current, chunks)

    def _own_settings(self, epoch: int) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "sqrt": self.sqrt,
            "rounding": self.rounding,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(threshold={self.threshold}, sqrt={self.sqrt}, "
            f"rounding={self.rounding!r}, images={len(self.index)}, "
            f"num_samples={self.num_samples}, {self._where()})"
        )
