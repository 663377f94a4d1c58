"""The label encoder: sorted distinct values, a code per sample, counts, the grouping by
class and the digest that identifies it. :mod:`~torch_balance.labels.index` builds both
indexes with it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from torch_balance._validation import Text, fail, internal

__all__ = ["GROUP_CHUNK", "Coder", "encode", "fingerprint", "group_by_class"]


GROUP_CHUNK = 1 << 18
"""Labels handled at a time when grouping by class: 256K codes (and their argsort) stay in L2."""


def _count_8bit(part: np.ndarray, low: int, span: int) -> torch.Tensor:
    """How many of ``part`` (labels in ``low .. low + span - 1``, ``span <= 256``) hold each
    value, counted by torch on 8-bit offsets: 2x numpy's bincount of int64 here."""
    small = (part - low if low else part).astype(np.uint8)
    return torch.bincount(torch.from_numpy(small), minlength=span)


class Coder:
    """The sorted distinct values of a label vector, their counts, and codes for any slice.

    Integers spanning a short range are counted (in the same chunked pass that finds their
    range, where they lie in ``0 .. 255``) and coded through a lookup table (none where the
    labels are already ``0 .. C - 1``: a cast codes them), a slice on demand, so no
    N-long code array is ever held; anything else goes through
    ``numpy.unique`` once. Codes are ``uint8`` up to 256 classes (numpy's stable argsort is then
    one radix pass), ``int16`` below 2**15, else ``int32``.
    """

    def __init__(self, values: np.ndarray, name: str, what: str) -> None:
        self.values = values
        self.low = 0
        self.lut: np.ndarray | None = None
        self.codes: np.ndarray | None = None
        if values.dtype.kind in "iu" and values.shape[0]:
            low, high, small = self._scan(values)
            span = high - low + 1
            if span <= max(1 << 20, 4 * values.shape[0]):
                counts = (
                    small[low : high + 1]
                    if small is not None
                    else self._bincount(values, low, span)
                )
                present = np.flatnonzero(counts)
                self.low = low
                self.classes = (present + low).astype(values.dtype)
                self.counts = counts[present]
                self.dtype = _code_dtype(present.shape[0])
                if low or present.shape[0] < span:  # else each label is its own code
                    lut = np.zeros(span, dtype=self.dtype)
                    lut[present] = np.arange(present.shape[0], dtype=self.dtype)
                    self.lut = lut
                return
        try:
            classes, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        except TypeError as error:
            fail(
                name,
                f"{what} of one sortable kind (all integers or all strings)",
                Text(f"a mix that cannot be sorted ({error})"),
                kind=TypeError,
            )
        self.classes, self.counts = classes, counts
        self.dtype = _code_dtype(classes.shape[0])
        self.codes = inverse.reshape(-1).astype(self.dtype)

    @staticmethod
    def _scan(values: np.ndarray) -> tuple[int, int, np.ndarray | None]:
        """The smallest and largest label and, where every label lies in ``0 .. 255``, the
        count of each of those values (else None), in one pass over the labels a chunk at a
        time: each chunk's minimum, maximum and 8-bit count read it from cache, where a
        minimum, a maximum and a count of the whole vector read it from memory three times."""
        low, high = int(values[:1].min()), int(values[:1].max())
        tally: torch.Tensor | None = torch.zeros(256, dtype=torch.int64)
        for begin in range(0, values.shape[0], GROUP_CHUNK):
            part = values[begin : begin + GROUP_CHUNK]
            lo, hi = int(part.min()), int(part.max())
            low, high = min(low, lo), max(high, hi)
            if tally is not None:
                if lo < 0 or hi > 255:
                    tally = None  # counted later, once the range is known
                else:
                    tally += _count_8bit(part, 0, 256)
        return low, high, None if tally is None else tally.numpy()

    @staticmethod
    def _bincount(values: np.ndarray, low: int, span: int) -> np.ndarray:
        if span <= 256:
            tally = torch.zeros(span, dtype=torch.int64)
            for begin in range(0, values.shape[0], GROUP_CHUNK):
                tally += _count_8bit(values[begin : begin + GROUP_CHUNK], low, span)
            result: np.ndarray = tally.numpy()
            return result
        if low == 0:
            return np.bincount(values, minlength=span)
        if span > GROUP_CHUNK:  # one shifted copy beats many span-long partial counts
            return np.bincount(values - low, minlength=span)
        counts = np.zeros(span, dtype=np.int64)
        for begin in range(0, values.shape[0], GROUP_CHUNK):
            counts += np.bincount(values[begin : begin + GROUP_CHUNK] - low, minlength=span)
        return counts

    def code(self, begin: int = 0, stop: int | None = None) -> np.ndarray:
        """The codes of ``values[begin:stop]``."""
        if self.codes is not None:
            return self.codes[begin:stop]
        part = self.values[begin:stop]
        if self.lut is None:  # the classes are 0, 1, ..., C - 1: a cast, not a lookup
            return part.astype(self.dtype)
        return self.lut[part - self.low if self.low else part]


def _code_dtype(num_classes: int) -> type[np.integer[Any]]:
    if num_classes <= 256:
        return np.uint8
    return np.int16 if num_classes < 2**15 else np.int32


def encode(
    values: np.ndarray, name: str = "labels", what: str = "values"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the sorted distinct values, the code of each value and the count of each code.

    Integers spanning a short range are encoded with one ``bincount`` and a lookup table;
    anything else with ``numpy.unique``. Codes are ``uint8`` up to 256 classes, ``int16`` below
    2**15, else ``int32``.

    Args:
        values: A 1-D numpy array of integers, booleans or sortable objects.
        name: The argument name used in error messages.
        what: What the values are, in error messages.

    Returns:
        ``(classes, codes, counts)``: ``classes[codes]`` equals ``values``.

    Raises:
        TypeError: For values of kinds that cannot be sorted together.

    Example:
        >>> classes, codes, counts = encode(np.array([7, 3, 7]))
        >>> classes.tolist(), codes.tolist(), counts.tolist()
        ([3, 7], [1, 0, 1], [1, 2])
    """
    coder = Coder(values, name, what)
    return coder.classes, coder.code(), coder.counts


def group_by_class(coder: Coder, offsets: np.ndarray) -> np.ndarray:
    """Sample indices grouped by class code, increasing within each class.

    The same result as a stable argsort of the codes, built a chunk of ``GROUP_CHUNK`` labels
    at a time: each chunk's stable argsort (a radix sort for 8- and 16-bit codes, in cache) is
    copied class by class to where that class has got to in the output. Beside the output
    (``int32`` below 2**31 samples) it holds only one chunk's codes and argsort.

    Example:
        >>> coder = Coder(np.array([2, 0, 2, 1, 0]), "labels", "values")
        >>> group_by_class(coder, np.array([0, 2, 3, 5])).tolist()
        [1, 4, 3, 0, 2]
    """
    n = coder.values.shape[0]
    num_classes = offsets.shape[0] - 1
    order = np.empty(n, dtype=np.int32 if n < 2**31 else np.int64)  # LabelIndex.dtype
    cursor = offsets[:-1].copy()
    per_class = num_classes <= 1024  # else one vectorised scatter per chunk
    for begin in range(0, n, GROUP_CHUNK):
        codes = coder.code(begin, begin + GROUP_CHUNK)
        ranks = np.argsort(codes, kind="stable")
        here = np.bincount(codes, minlength=num_classes)
        if per_class:
            source = 0
            for code in np.flatnonzero(here).tolist():
                k = int(here[code])
                at = int(cursor[code])
                np.add(ranks[source : source + k], begin, out=order[at : at + k], casting="unsafe")
                source += k
        else:
            start = np.cumsum(here) - here
            shift = np.repeat(cursor - start, here)
            shift += np.arange(ranks.shape[0])
            order[shift] = ranks + begin
        cursor += here
    internal(bool((cursor == offsets[1:]).all()), "group_by_class: counts do not match")
    return order


def fingerprint(keys: list[Any], *arrays: np.ndarray) -> str:
    """A digest of sorted keys and the arrays that group samples by them.

    Example:
        >>> len(fingerprint([0, 1], np.array([2, 1])))
        32
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(keys).encode())
    for array in arrays:
        digest.update(array.tobytes())
    return digest.hexdigest()
