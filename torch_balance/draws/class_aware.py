"""Class-aware sampling's kernel: choose a class, then the next image of that class's walk
(Shen et al., ECCV 2016, §3.3; mmdetection's ``ClassAwareSampler``).

Pure functions of (the images of each class, the plan's choices per class, seed, epoch):

* :func:`members_by_class`: the images of every class, as one CSR layout;
* :func:`class_choices` and :func:`choice_ranks`: the epoch's sequence of class choices (the
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

__all__ = [
    "GROUP",
    "LAZY_ABOVE",
    "PIECE",
    "PIECES_UP_TO",
    "BucketCycle",
    "WalkGroups",
    "bucket_count",
    "bucket_cycle_reference",
    "choice_ranks",
    "class_aware_epoch",
    "class_aware_reference",
    "class_choices",
    "group_cycles",
    "members_by_class",
    "permutation",
    "walk_group",
    "walk_parts",
    "walk_positions",
]

GROUP = 4096  # walk positions drawn at once for a small class: cycles of n images per group
PIECE = 16384  # the size of a piece of a permutation shuffled at once (see permutation)
PIECES_UP_TO = 2**18  # larger permutations are one torch.randperm
SORT_BELOW = 256  # classes with fewer images draw a group's cycles with one sort, not a loop
NUMPY_ROWS_FROM = 8  # cycles of this many images and more are sorted by numpy
LAZY_ABOVE = 2 * PIECE  # classes with more images draw a cycle bucket by bucket (BucketCycle)
_KEY_BITS = 15  # bucket keys are read as 16-bit words of 63-bit draws: at most 2**15 buckets


def _small_codes(codes: np.ndarray, num_classes: int) -> np.ndarray:
    """Codes in the narrowest unsigned type: numpy sorts 8- and 16-bit keys by radix."""
    if num_classes <= 256:
        return codes.astype(np.uint8, copy=False)
    if num_classes <= 65536:
        return codes.astype(np.uint16, copy=False)
    return codes.astype(np.int64, copy=False)


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
    grouped = np.argsort(_small_codes(codes, num_classes), kind="stable")
    offsets = np.zeros(num_classes + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=num_classes), out=offsets[1:])
    return offsets, torch.from_numpy(rows[grouped])


def class_choices(targets: np.ndarray, g: torch.Generator) -> np.ndarray:
    """The epoch's class choices: class ``c`` exactly ``targets[c]`` times, in random order
    (codes in the narrowest unsigned type that holds them).

    Example:
        >>> choices = class_choices(np.array([2, 0, 1]), generator(0, Stream.CLASS_AWARE))
        >>> sorted(choices.tolist())
        [0, 0, 2]
    """
    total = int(targets.sum())
    dtype = torch.int32 if total < 2**31 else torch.int64
    codes = _small_codes(np.arange(targets.shape[0]), targets.shape[0])
    grouped = torch.from_numpy(np.repeat(codes, targets))
    return grouped.index_select(0, permutation(total, g, dtype)).numpy()


def choice_ranks(choices: np.ndarray) -> np.ndarray:
    """For each choice, its place in the class-grouped layout: choice ``i`` of class ``c`` that
    had ``r`` choices of ``c`` before it gets ``start[c] + r`` (``start``: choices of the
    classes before ``c``). 8- and 16-bit codes sort by radix.

    Example:
        >>> choice_ranks(np.array([1, 0, 1, 0], dtype=np.uint8)).tolist()
        [2, 0, 3, 1]
    """
    grouped = np.argsort(choices, kind="stable")
    dtype = np.int32 if grouped.shape[0] < 2**31 else np.int64
    ranks = np.empty(grouped.shape[0], dtype=dtype)
    ranks[grouped] = np.arange(grouped.shape[0], dtype=dtype)
    return ranks


def permutation(n: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """A uniformly random permutation of ``range(n)``; for ``n`` in ``(2 * PIECE, PIECES_UP_TO]``
    drawn in pieces of about ``PIECE`` (Rao 1961; Sandelius 1962): every item goes to a
    random bucket, the buckets are laid out in order, and each bucket is shuffled on its own.

    ``torch.randperm`` hands sizes past 2**15 to its parallel path, whose start costs about
    as much as shuffling a million items on a busy 2-core machine (measured 15 ms for 40,000
    items, against 0.16 ms on one thread); the pieces stay on the sequential path. Past
    ``PIECES_UP_TO`` the parallel path pays for itself.

    Example:
        >>> perm = permutation(100_000, torch.Generator().manual_seed(0), torch.int32)
        >>> bool((perm.sort().values == torch.arange(100_000, dtype=torch.int32)).all())
        True
    """
    if n <= 2 * PIECE or n > PIECES_UP_TO:
        return torch.randperm(n, generator=g, dtype=dtype)
    buckets = -(-n // PIECE)
    keys = torch.randint(buckets, (n,), generator=g, dtype=torch.int32).numpy()
    laid = np.argsort(_small_codes(keys, buckets), kind="stable")
    out = torch.from_numpy(laid.astype(np.int32 if dtype == torch.int32 else np.int64))
    at = 0
    for size in np.bincount(keys, minlength=buckets).tolist():
        piece = out[at : at + size]
        piece.copy_(piece.index_select(0, torch.randperm(size, generator=g)))
        at += size
    return out


def group_cycles(n: int) -> int:
    """Cycles per group of a class with ``n`` images: one for ``n >= GROUP``.

    Example:
        >>> group_cycles(1), group_cycles(100), group_cycles(10**6)
        (4096, 41, 1)
    """
    return max(1, -(-GROUP // n))


def bucket_count(n: int) -> int:
    """Buckets of a cycle of ``n`` images drawn by :class:`BucketCycle`: the smallest power of
    two with at most ``PIECE`` images a bucket on average.

    Example:
        >>> bucket_count(LAZY_ABOVE + 1), bucket_count(10**6)
        (4, 64)
    """
    return 1 << (-(-n // PIECE) - 1).bit_length()


def _bucket_keys(n: int, code: int, cycle: int, seed: int) -> np.ndarray:
    """Each image's bucket in cycle ``cycle`` of class ``code`` (``bucket_count(n)`` buckets)."""
    buckets = bucket_count(n)
    width = 1 if buckets <= 128 else 2  # the top byte (word) of a draw holds 7 (15) bits
    g = generator(seed, Stream.CLASS_AWARE_WALK, code, cycle)
    words = torch.empty(-(-n * width // 8), dtype=torch.int64).random_(generator=g)
    return words.numpy().view("<u1" if width == 1 else "<u2")[:n] & (buckets - 1)


def bucket_cycle_reference(n: int, code: int, cycle: int, seed: int) -> torch.Tensor:
    """The plain reference of :class:`BucketCycle`: the whole cycle, bucket after bucket, each
    bucket's images found by a scan of the keys and shuffled. A property test holds every way
    of reading a :class:`BucketCycle` equal to it.

    Example:
        >>> whole = BucketCycle(40_000, code=0, cycle=0, seed=0).positions(0, 40_000)
        >>> bool((bucket_cycle_reference(40_000, 0, 0, seed=0) == whole).all())
        True
    """
    keys = _bucket_keys(n, code, cycle, seed)
    pieces = []
    for bucket in range(bucket_count(n)):
        members = torch.from_numpy(np.flatnonzero(keys == bucket))
        g = generator(seed, Stream.CLASS_AWARE_WALK, code, cycle, bucket)
        pieces.append(members[torch.randperm(members.shape[0], generator=g)])
    return torch.cat(pieces).to(torch.int32 if n < 2**31 else torch.int64)


class BucketCycle:
    """One cycle of a large class's walk, a uniformly random permutation of ``range(n)`` drawn
    as the walk reaches it (Rao 1961; Sandelius 1962): every image goes to one of
    ``bucket_count(n)`` buckets at random, the buckets are laid out in order, and each
    bucket is shuffled on its own, the first time a position inside it is read.

    The bucket keys come from the generator ``(seed, CLASS_AWARE_WALK, code, cycle)`` (about
    a byte of randomness an image), bucket ``b``'s shuffle from ``(seed, CLASS_AWARE_WALK,
    code, cycle, b)``: a position is a pure function of (seed, class, cycle, position),
    whichever buckets were read before. The first read of a cycle (an epoch that starts
    inside it: the first after construction or a resume) finds its buckets by counting keys
    and lists only the buckets it reads, one pass over the keys each; a cycle opened
    ``whole`` (a walk that goes on into it), or read a second time, lists every bucket in
    one stable sort of the keys, since the walk will read them all.

    Example:
        >>> cycle = BucketCycle(40_000, code=0, cycle=0, seed=0)
        >>> whole = cycle.positions(0, 40_000)
        >>> bool((whole.sort().values == torch.arange(40_000, dtype=torch.int32)).all())
        True
        >>> fresh = BucketCycle(40_000, code=0, cycle=0, seed=0)
        >>> bool((fresh.positions(30_000, 5) == whole[30_000:30_005]).all())
        True
    """

    def __init__(self, n: int, code: int, cycle: int, seed: int, whole: bool = False) -> None:
        buckets = bucket_count(n)
        internal(buckets <= 1 << _KEY_BITS, f"BucketCycle: {n} images need too many buckets")
        self.n, self.code, self.cycle, self.seed = n, code, cycle, seed
        self.dtype = torch.int32 if n < 2**31 else torch.int64
        self.keys: np.ndarray | None = _bucket_keys(n, code, cycle, seed)  # None once listed
        self.buckets = buckets
        self.whole = whole  # list every bucket at the first read: the walk will read them all
        self.reads = 0  # reads so far (a second read lists every bucket)
        self.ends = {-1: 0}  # ends[b]: the images of buckets 0..b, for the buckets counted
        self.listed: dict[int, np.ndarray] = {}  # listed buckets' images, in increasing order
        self.pieces: dict[int, torch.Tensor] = {}

    def _keys(self) -> np.ndarray:
        internal(self.keys is not None, "BucketCycle: the keys are gone, yet a bucket is unlisted")
        return self.keys  # type: ignore[return-value]

    def _end(self, bucket: int) -> int:
        """Where bucket ``bucket`` ends (the images of buckets ``0..bucket``), counted once."""
        end = self.ends.get(bucket)
        if end is None:
            end = int(np.count_nonzero(self._keys() <= bucket))
            self.ends[bucket] = end
        return end

    def _bucket_of(self, position: int) -> int:
        """The bucket that holds ``position``: from where it would be with buckets of equal
        size, the few counts it takes to step to it."""
        bucket = min(position * self.buckets // self.n, self.buckets - 1)
        while self._end(bucket) <= position:
            bucket += 1
        while bucket > 0 and self._end(bucket - 1) > position:
            bucket -= 1
        return bucket

    def _list_all(self) -> None:
        """List every bucket not yet shuffled: one stable sort of the keys (by bucket, then
        by image); the keys are then no longer needed."""
        keys = self._keys()
        laid = np.argsort(keys, kind="stable")
        ends = np.cumsum(np.bincount(keys, minlength=self.buckets))
        self.ends.update(enumerate(ends.tolist()))
        for bucket, members in enumerate(np.split(laid, ends[:-1])):
            if bucket not in self.pieces:
                self.listed[bucket] = members
        self.keys = None

    def _list(self, first: int, last: int) -> None:
        """List buckets ``first..last``: every bucket (see :meth:`_list_all`) for a cycle
        opened ``whole`` or read before, otherwise each of those in one pass over the keys
        (about a third of the cost of a stable sort of the keys)."""
        wanted = [
            b for b in range(first, last + 1) if b not in self.pieces and b not in self.listed
        ]
        if not wanted:
            return
        if self.whole or self.reads:
            self._list_all()
            return
        keys = self._keys()
        for bucket in wanted:
            self.listed[bucket] = np.flatnonzero(keys == bucket)

    def piece(self, bucket: int) -> torch.Tensor:
        """Bucket ``bucket``'s images in their shuffled order (drawn once, then kept)."""
        held = self.pieces.get(bucket)
        if held is None:
            if bucket not in self.listed:
                self._list(bucket, bucket)
            members = torch.from_numpy(self.listed.pop(bucket)).to(self.dtype)
            g = generator(self.seed, Stream.CLASS_AWARE_WALK, self.code, self.cycle, bucket)
            shuffle = torch.randperm(members.shape[0], generator=g, dtype=self.dtype)
            held = members.index_select(0, shuffle)
            self.pieces[bucket] = held
        return held

    def parts(self, start: int, count: int) -> list[torch.Tensor]:
        """Positions ``start, ..., start + count - 1`` of the cycle, one view per bucket."""
        end = min(start + count, self.n)
        if start >= end:
            return []
        first, last = self._bucket_of(start), self._bucket_of(end - 1)
        self._list(first, last)
        self.reads += 1
        parts = []
        for bucket in range(first, last + 1):
            low, high = self._end(bucket - 1), self._end(bucket)
            if high > low:  # an empty bucket holds no position
                piece = self.piece(bucket)
                parts.append(piece[max(start, low) - low : min(end, high) - low])
        return parts

    def positions(self, start: int, count: int) -> torch.Tensor:
        """Positions ``start, ..., start + count - 1`` of the cycle."""
        parts = self.parts(start, count)
        if not parts:
            return torch.zeros(0, dtype=self.dtype)
        return parts[0] if len(parts) == 1 else torch.cat(parts)


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
    if LAZY_ABOVE < n <= PIECE << _KEY_BITS:
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
    choices = class_choices(targets, g)
    internal(
        0 < length <= choices.shape[0] * num_sample_class,
        "class_aware_epoch: the epoch is longer than its choices' picks",
    )
    ranks = torch.from_numpy(choice_ranks(choices))
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
