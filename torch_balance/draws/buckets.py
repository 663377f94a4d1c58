"""Permutations drawn bucket by bucket (Rao 1961; Sandelius 1962): every item goes to a
random bucket, the buckets are laid out in order, and each bucket is shuffled on its own.

* :func:`permutation`: a whole permutation in pieces, which keeps ``torch.randperm`` on its
  sequential path for mid-sized ``n``;
* :class:`BucketCycle`: one cycle of a large class's class-aware walk, each bucket listed and
  shuffled only when the walk reaches it, so an epoch pays for the positions it reads;
  :func:`bucket_cycle_reference` is the same cycle drawn plainly, the reference the property
  tests hold it to.
"""

from __future__ import annotations

import numpy as np
import torch

from torch_balance._rng import Stream, generator
from torch_balance._validation import internal

__all__ = [
    "BUCKETS_UP_TO",
    "PIECE",
    "PIECES_UP_TO",
    "SCANS",
    "BucketCycle",
    "bucket_count",
    "bucket_cycle_reference",
    "permutation",
    "small_codes",
]

PIECE = 16384  # the size of a piece of a permutation shuffled at once (see permutation)
PIECES_UP_TO = 2**18  # larger permutations are one torch.randperm
_KEY_BITS = 15  # bucket keys are read as 16-bit words of 63-bit draws: at most 2**15 buckets
BUCKETS_UP_TO = PIECE << _KEY_BITS  # the most images a BucketCycle draws
SCANS = 4  # a BucketCycle lists this many buckets one pass each, then every bucket at once


def small_codes(codes: np.ndarray, num_classes: int) -> np.ndarray:
    """Codes in the narrowest unsigned type: numpy sorts 8- and 16-bit keys by radix."""
    if num_classes <= 256:
        return codes.astype(np.uint8, copy=False)
    if num_classes <= 65536:
        return codes.astype(np.uint16, copy=False)
    return codes.astype(np.int64, copy=False)


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
    laid = np.argsort(small_codes(keys, buckets), kind="stable")
    out = torch.from_numpy(laid.astype(np.int32 if dtype == torch.int32 else np.int64))
    at = 0
    for size in np.bincount(keys, minlength=buckets).tolist():
        piece = out[at : at + size]
        piece.copy_(piece.index_select(0, torch.randperm(size, generator=g)))
        at += size
    return out


def bucket_count(n: int) -> int:
    """Buckets of a cycle of ``n`` images drawn by :class:`BucketCycle`: the smallest power of
    two with at most ``PIECE`` images a bucket on average.

    Example:
        >>> bucket_count(2 * PIECE + 1), bucket_count(10**6)
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
    whichever buckets were read before. A cycle's first reads (the epochs that start inside
    it: after construction or a resume) find their buckets by counting keys and list only
    the buckets they read, one pass over the keys each, up to ``SCANS`` buckets; past that,
    and for a cycle opened ``whole`` (a walk that goes on into it), every bucket is listed
    in one stable sort of the keys (the cost of about five passes), since the walk will
    read them all.

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
        self.scans = 0  # buckets listed one pass each
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
        """List buckets ``first..last``: each in one pass over the keys, or every bucket
        (see :meth:`_list_all`) for a cycle opened ``whole`` or past ``SCANS`` passes."""
        wanted = [
            b for b in range(first, last + 1) if b not in self.pieces and b not in self.listed
        ]
        if not wanted:
            return
        if self.whole or self.scans + len(wanted) > SCANS:
            self._list_all()
            return
        self.scans += len(wanted)
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
