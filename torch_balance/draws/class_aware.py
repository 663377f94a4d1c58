"""Class-aware sampling's kernel: choose a class, then the next image of that class's walk
(Shen et al., ECCV 2016, §3.3; mmdetection's ``ClassAwareSampler``).

Pure functions of (the images of each class, the plan's choices per class, seed, epoch):

* :func:`members_by_class`: the images of every class, as one CSR layout;
* :func:`class_choices` and :func:`choice_order`: the epoch's sequence of class choices (the
  plan's exact count per class, in one shuffled order) and, for each choice, how many
  choices of its class came before it;
* :func:`walk_positions`: where a class's walk stands. Each class goes through its images in
  *cycles*, one random permutation per cycle, every image once before any image twice; the
  walk runs on across epochs (epoch ``e`` starts where epoch ``e - 1`` stopped), so a class
  with more images than an epoch takes still has every image shown before any repeats.
  Permutations are drawn a *group* of cycles at a time (enough cycles for ``GROUP`` positions,
  one cycle for a large class), each group from its own generator, so a position of the walk
  is a pure function of (seed, class, position) whichever epoch reaches it. A class with more
  than ``LAZY_ABOVE`` images draws a cycle in buckets (:class:`BucketCycle`), each bucket
  shuffled only when the walk reaches it, so an epoch pays for the positions it uses (a
  class of a million images read 12,500 positions at a time shuffles one or two buckets of
  about 16,000, not the million). Cycles of fewer than ``SORT_BELOW`` images are drawn a
  group at a time by one row-wise sort of random keys. An epoch advances each class's walk
  by every pick planned for it, the few cut from the end of the epoch's last run included
  (they are skipped, not shown later);
* :func:`class_aware_epoch`: the epoch as ``(values, order, choices)``; the shell's source is
  ``(values, order)``.

Nothing here keeps randomness between calls; a :class:`WalkGroups` cache only saves drawing
a group twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from torch_balance._rng import Stream, generator
from torch_balance._validation import internal
from torch_balance.draws.buckets import (
    BUCKETS_UP_TO,
    PIECE,
    BucketCycle,
    permutation,
    small_codes,
)

__all__ = [
    "GROUP",
    "LAZY_ABOVE",
    "WalkGroups",
    "choice_order",
    "class_aware_epoch",
    "class_aware_reference",
    "class_choices",
    "group_cycles",
    "members_by_class",
    "walk_group",
    "walk_parts",
    "walk_positions",
]

GROUP = 4096  # walk positions drawn at once for a small class: cycles of n images per group
SORT_BELOW = 256  # classes with fewer images draw a group's cycles with one sort, not a loop
NUMPY_ROWS_FROM = 8  # cycles of this many images and more are sorted by numpy
LAZY_ABOVE = 2 * PIECE  # classes with more images draw a cycle bucket by bucket (BucketCycle)


def members_by_class(
    codes: np.ndarray, row_offsets: np.ndarray, num_classes: int
) -> tuple[np.ndarray, torch.Tensor]:
    """``(offsets, members)``: the images holding class ``c`` are
    ``members[offsets[c]:offsets[c + 1]]``, in increasing order.

    Args:
        codes: Flat class codes of every (image, class) pair, image by image (a
            :class:`~torch_balance.labels.MultiLabelIndex`'s ``codes``).
        row_offsets: Image ``i`` holds ``codes[row_offsets[i]:row_offsets[i + 1]]``.
        num_classes: The number of classes.

    Example:
        >>> offsets, members = members_by_class(np.array([0, 1, 1]), np.array([0, 2, 2, 3]), 2)
        >>> offsets.tolist(), members.tolist()
        ([0, 1, 3], [0, 0, 2])
    """
    n = row_offsets.shape[0] - 1
    dtype = np.int32 if n < 2**31 else np.int64
    rows = np.repeat(np.arange(n, dtype=dtype), np.diff(row_offsets))
    grouped = np.argsort(small_codes(codes, num_classes), kind="stable")
    offsets = np.zeros(num_classes + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=num_classes), out=offsets[1:])
    return offsets, torch.from_numpy(rows[grouped])


def class_choices(targets: np.ndarray, g: torch.Generator) -> np.ndarray:
    """The epoch's class choices: class ``c`` exactly ``targets[c]`` times, in random order
    (codes in the narrowest unsigned type that holds them): with ``q`` a random permutation
    from ``g``, the choices of class ``c`` take the positions ``q[start[c]:start[c + 1]]``
    (``start``: choices of the classes before ``c``).

    Example:
        >>> choices = class_choices(np.array([2, 0, 1]), generator(0, Stream.CLASS_AWARE))
        >>> sorted(choices.tolist())
        [0, 0, 2]
    """
    total = int(targets.sum())
    codes = small_codes(np.arange(targets.shape[0]), targets.shape[0])
    choices = np.empty(total, dtype=codes.dtype)
    choices[permutation(total, g, torch.int32 if total < 2**31 else torch.int64).numpy()] = (
        np.repeat(codes, targets)
    )
    return choices


def choice_order(targets: np.ndarray, g: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(ranks, choices)``: :func:`class_choices` and, for each choice, its place in the
    class-grouped layout (choice ``i`` of class ``c`` with ``r`` choices of ``c`` before it
    gets ``start[c] + r``), from each class's positions sorted (no sort by class).

    Example:
        >>> ranks, choices = choice_order(np.array([2, 1]), generator(0, Stream.CLASS_AWARE))
        >>> sorted(ranks.tolist()), choices.tolist() == class_choices(
        ...     np.array([2, 1]), generator(0, Stream.CLASS_AWARE)
        ... ).tolist()
        ([0, 1, 2], True)
    """
    total = int(targets.sum())
    positions = permutation(total, g, torch.int32 if total < 2**31 else torch.int64).numpy()
    at = 0
    for end in np.cumsum(targets).tolist():
        positions[at:end].sort()  # class c's positions, in epoch order
        at = end
    ranks = np.empty(total, dtype=positions.dtype)
    ranks[positions] = np.arange(total, dtype=positions.dtype)
    codes = small_codes(np.arange(targets.shape[0]), targets.shape[0])
    grouped = torch.from_numpy(np.repeat(codes, targets))
    return ranks, grouped.index_select(0, torch.from_numpy(ranks)).numpy()


def group_cycles(n: int) -> int:
    """Cycles per group of a class with ``n`` images: one for ``n >= GROUP``.

    Example:
        >>> group_cycles(1), group_cycles(100), group_cycles(10**6)
        (4096, 41, 1)
    """
    return max(1, -(-GROUP // n))


def walk_group(
    n: int, code: int, group: int, seed: int, whole: bool = False
) -> torch.Tensor | BucketCycle:
    """Group ``group`` of class ``code``'s walk: ``group_cycles(n)`` permutations of
    ``range(n)`` one after the other, from the generator ``(seed, CLASS_AWARE_WALK, code,
    group)``; for more than ``LAZY_ABOVE`` images, cycle ``group`` as a :class:`BucketCycle`
    (``whole``: its buckets listed in one pass, for a walk that goes on into it).

    Example:
        >>> walk = walk_group(3, 0, 0, seed=0)
        >>> walk.shape[0], [sorted(walk[i : i + 3].tolist()) for i in range(0, 9, 3)]
        (4098, [[0, 1, 2], [0, 1, 2], [0, 1, 2]])
    """
    if LAZY_ABOVE < n <= BUCKETS_UP_TO:
        return BucketCycle(n, code, group, seed, whole)
    cycles = group_cycles(n)
    dtype = torch.int32 if n < 2**31 else torch.int64
    if n == 1:
        return torch.zeros(cycles, dtype=dtype)
    g = generator(seed, Stream.CLASS_AWARE_WALK, code, group)
    if n >= SORT_BELOW:  # one permutation after another from the group's generator
        walks = [permutation(n, g, dtype) for _ in range(cycles)]
        return walks[0] if cycles == 1 else torch.cat(walks)
    # many short cycles: one sort of random keys, row by row (numpy sorts rows of 8 and more
    # about three times faster than torch; the keys, and so the order, are the same)
    keys = torch.rand(cycles, n, generator=g, dtype=torch.float64)
    if n < NUMPY_ROWS_FROM:
        return keys.argsort(dim=1).to(dtype).reshape(-1)
    return torch.from_numpy(np.argsort(keys.numpy(), axis=1).reshape(-1)).to(dtype)


class WalkGroups:
    """The last walk group drawn for each class, kept between epochs (a large class's group is
    one cycle, which many epochs read from). A pickled cache arrives empty.

    Example:
        >>> cache = WalkGroups()
        >>> bool((cache.get(5, 0, 0, seed=1) == walk_group(5, 0, 0, seed=1)).all())
        True
    """

    def __init__(self) -> None:
        self.groups: dict[int, tuple[int, torch.Tensor | BucketCycle]] = {}

    def get(self, n: int, code: int, group: int, seed: int) -> torch.Tensor | BucketCycle:
        """Group ``group`` of class ``code``'s walk, drawn or kept."""
        held = self.groups.get(code)
        if held is not None and held[0] == group:
            return held[1]
        # a walk that goes on from the group before reads this one to its end
        walk = walk_group(n, code, group, seed, whole=held is not None and held[0] == group - 1)
        self.groups[code] = (group, walk)
        return walk

    def clear(self) -> None:
        """Drop every group held."""
        self.groups.clear()

    def __getstate__(self) -> dict[str, Any]:
        return {"groups": {}}


def walk_parts(
    n: int, code: int, start: int, count: int, seed: int, cache: WalkGroups | None = None
) -> list[torch.Tensor]:
    """:func:`walk_positions` as a list of views, one per group or bucket read (no copy).

    Example:
        >>> parts = walk_parts(4, 0, 2, 10, seed=0)
        >>> bool((torch.cat(parts) == walk_positions(4, 0, 2, 10, seed=0)).all())
        True
    """
    span = group_cycles(n) * n
    parts = []
    at, end = start, start + count
    while at < end:
        group, offset = divmod(at, span)
        walk = cache.get(n, code, group, seed) if cache else walk_group(n, code, group, seed)
        take = min(span - offset, end - at)
        if isinstance(walk, BucketCycle):
            parts.extend(walk.parts(offset, take))
        else:
            parts.append(walk[offset : offset + take])
        at += take
    return parts


def walk_positions(
    n: int, code: int, start: int, count: int, seed: int, cache: WalkGroups | None = None
) -> torch.Tensor:
    """Positions ``start, ..., start + count - 1`` of class ``code``'s walk: which of its ``n``
    images (``0..n-1``, positions into the class's members) each step takes.

    Example:
        >>> steps = walk_positions(4, 0, 2, 10, seed=0)
        >>> whole = walk_positions(4, 0, 0, 12, seed=0)
        >>> bool((steps == whole[2:]).all()), [sorted(whole[i : i + 4].tolist()) for i in (0, 4)]
        (True, [[0, 1, 2, 3], [0, 1, 2, 3]])
    """
    parts = walk_parts(n, code, start, count, seed, cache)
    if not parts:
        return torch.zeros(0, dtype=torch.int32)
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def class_aware_epoch(
    offsets: np.ndarray,
    members: torch.Tensor,
    targets: np.ndarray,
    starts: list[int],
    num_sample_class: int,
    length: int,
    g: torch.Generator,
    seed: int,
    cache: WalkGroups | None = None,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """One epoch of class-aware sampling: ``(values, order, choices)``.

    The epoch is ``values[order]``: ``targets.sum()`` class choices in random order (from
    ``g``), each followed by ``num_sample_class`` consecutive steps of its class's walk
    (from ``starts[c]`` on, the walk positions the earlier epochs used), cut to ``length``.
    ``values`` holds every class's steps grouped by class; ``choices`` the class of each
    choice, in epoch order.

    Args:
        offsets: ``members_by_class``'s offsets.
        members: ``members_by_class``'s members.
        targets: Choices per class this epoch.
        starts: Per class, the walk position this epoch starts at.
        num_sample_class: Consecutive picks per class choice.
        length: Picks in the epoch (at most ``targets.sum() * num_sample_class``).
        g: The epoch's generator (the choices' order).
        seed: The walks' seed.
        cache: Walk groups kept between epochs.

    Example:
        >>> offsets, members = members_by_class(np.array([0, 1, 1]), np.array([0, 2, 2, 3]), 2)
        >>> g = generator(0, Stream.CLASS_AWARE, 0)
        >>> values, order, choices = class_aware_epoch(
        ...     offsets, members, np.array([1, 1]), [0, 0], 2, 3, g, seed=0
        ... )
        >>> sorted(values.tolist()), len(order), sorted(choices.tolist())
        ([0, 0, 0, 2], 3, [0, 1])
    """
    ranks_np, choices = choice_order(targets, g)
    internal(
        0 < length <= choices.shape[0] * num_sample_class,
        "class_aware_epoch: the epoch is longer than its choices' picks",
    )
    ranks = torch.from_numpy(ranks_np)
    if num_sample_class == 1:
        order = ranks
    else:
        steps = torch.arange(num_sample_class, dtype=torch.int64)
        order = (ranks.long().unsqueeze(1) * num_sample_class + steps).reshape(-1)
    values = torch.empty(choices.shape[0] * num_sample_class, dtype=members.dtype)
    at = 0
    sizes = np.diff(offsets).tolist()
    firsts = offsets.tolist()
    for code in np.flatnonzero(targets).tolist():
        count = int(targets[code]) * num_sample_class
        n = sizes[code]
        internal(n > 0, f"class_aware_epoch: class {code} has choices but no image")
        own = members[firsts[code] : firsts[code] + n]
        for steps in walk_parts(n, code, starts[code], count, seed, cache):
            size = steps.shape[0]
            torch.index_select(own, 0, steps, out=values[at : at + size])
            at += size
    internal(at == values.shape[0], "class_aware_epoch: the walks did not fill the epoch")
    return values, order[:length], choices


def class_aware_reference(
    offsets: np.ndarray,
    members: torch.Tensor,
    targets: np.ndarray,
    starts: list[int],
    num_sample_class: int,
    length: int,
    g: torch.Generator,
    seed: int,
) -> list[int]:
    """The plain reference of :func:`class_aware_epoch`: the same epoch's images, one pick at a
    time (each choice in order, each of its picks the next step of its class's walk). The
    property tests hold the two equal.

    Example:
        >>> offsets, members = members_by_class(np.array([0, 1, 1]), np.array([0, 2, 2, 3]), 2)
        >>> args = (offsets, members, np.array([1, 1]), [0, 0], 2, 3)
        >>> fast = class_aware_epoch(*args, generator(0, Stream.CLASS_AWARE, 0), seed=0)
        >>> reference = class_aware_reference(*args, generator(0, Stream.CLASS_AWARE, 0), seed=0)
        >>> fast[0][fast[1]].tolist() == reference
        True
    """
    steps = list(starts)
    picks: list[int] = []
    for code in class_choices(targets, g).tolist():
        first, n = int(offsets[code]), int(offsets[code + 1] - offsets[code])
        for _ in range(num_sample_class):
            position = int(walk_positions(n, code, steps[code], 1, seed)[0])
            picks.append(int(members[first + position]))
            steps[code] += 1
    return picks[:length]
