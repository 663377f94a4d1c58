"""Labels indexed by class: :class:`LabelIndex` (one label per sample) and
:class:`MultiLabelIndex` (one set of categories per sample).

Both are built by one encoder (:func:`encode`: sorted distinct values and a code per value)
and identified by one digest (:func:`fingerprint`), which a saved state is checked against.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Mapping, Sequence
from itertools import chain, pairwise
from typing import Any

import numpy as np
import torch

from torch_balance._validation import Text, fail, internal

__all__ = [
    "CountIndex",
    "LabelIndex",
    "MultiLabelIndex",
    "as_label_array",
    "encode",
    "fingerprint",
    "group_by_class",
]

_CONTAINERS = (tuple, list, set, frozenset, range)


GROUP_CHUNK = 1 << 18
"""Labels handled at a time when grouping by class: 256K codes (and their argsort) stay in L2."""


def _count_8bit(part: np.ndarray, low: int, span: int) -> torch.Tensor:
    """How many of ``part`` (labels in ``low .. low + span - 1``, ``span <= 256``) hold each
    value, counted by torch on 8-bit offsets: 2x numpy's bincount of int64 here."""
    small = (part - low if low else part).astype(np.uint8)
    return torch.bincount(torch.from_numpy(small), minlength=span)


class _Coder:
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
    coder = _Coder(values, name, what)
    return coder.classes, coder.code(), coder.counts


def group_by_class(coder: _Coder, offsets: np.ndarray) -> np.ndarray:
    """Sample indices grouped by class code, increasing within each class.

    The same result as a stable argsort of the codes, built a chunk of ``GROUP_CHUNK`` labels
    at a time: each chunk's stable argsort (a radix sort for 8- and 16-bit codes, in cache) is
    copied class by class to where that class has got to in the output. Beside the output
    (``int32`` below 2**31 samples) it holds only one chunk's codes and argsort.

    Example:
        >>> coder = _Coder(np.array([2, 0, 2, 1, 0]), "labels", "values")
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


def as_label_array(labels: Any, name: str = "labels") -> np.ndarray:
    """Check a label vector and return it as a 1-D numpy array, without copying when possible.

    Labels may be integers, booleans or strings (any hashable, sortable values). Floats are
    refused: a float label is almost always a regression target or a forgotten ``.long()``.

    Args:
        labels: A 1-D numpy array, torch tensor or sequence of labels.
        name: The argument name used in error messages.

    Returns:
        A 1-D ``numpy.ndarray`` with one label per sample.

    Raises:
        TypeError: For float, complex or unsortable labels.
        ValueError: For an empty vector or one that is not 1-D.

    Example:
        >>> as_label_array([0, 1, 1]).tolist()
        [0, 1, 1]
        >>> as_label_array(torch.tensor([[0], [1]]))
        Traceback (most recent call last):
        ...
        ValueError: labels: expected a 1-D vector with one label per sample, got an array ...
    """
    if isinstance(labels, torch.Tensor):
        array = labels.detach().cpu().numpy()
    elif isinstance(labels, np.ndarray):
        array = labels
    elif isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        fail(
            name,
            "a 1-D numpy array, torch tensor or sequence of labels",
            type(labels).__name__,
            kind=TypeError,
        )
    else:
        if len(labels) == 0:
            fail(name, "at least one label", "an empty sequence")
        first = labels[0]
        if isinstance(first, (str, bytes)):
            array = np.empty(len(labels), dtype=object)
            array[:] = list(labels)
        else:
            try:
                array = np.asarray(labels)
            except (ValueError, OverflowError):
                array = np.empty(len(labels), dtype=object)
                array[:] = list(labels)
            if array.dtype.kind in "US":  # numbers and text mixed: numpy made them all text
                array = np.empty(len(labels), dtype=object)
                array[:] = list(labels)
    if array.ndim != 1:
        fail(
            name,
            "a 1-D vector with one label per sample",
            Text(f"an array of shape {array.shape}"),
            "Squeeze the extra dimension (labels.reshape(-1)); for one-hot labels use "
            "labels.argmax(1); for multi-label data use RepeatFactorSampler",
        )
    if array.shape[0] == 0:
        fail(name, "at least one label", "an empty vector")
    kind = array.dtype.kind
    if kind in "fc":
        bad = np.flatnonzero(~np.isfinite(array)) if kind == "f" else np.array([], dtype=int)
        where = (
            f"NaN or inf at index {int(bad[0])}"
            if bad.size
            else f"{array.dtype} values such as {array[0]!r}"
        )
        fail(
            name,
            "integer or string class labels",
            Text(where),
            "Cast whole-number float labels with .long() / .astype(int); class labels cannot "
            "be NaN",
            kind=TypeError,
        )
    if kind == "O":
        for i, value in enumerate(array):
            if value is None or (
                isinstance(value, numbers.Number) and not isinstance(value, numbers.Integral)
            ):
                fail(
                    name,
                    "integer or string class labels",
                    Text(f"{value!r} at index {i}"),
                    kind=TypeError,
                )
            if isinstance(value, np.ndarray | list | tuple | set | frozenset):
                fail(
                    name,
                    "one label per sample",
                    Text(f"a {type(value).__name__} at index {i}"),
                    "For multi-label data use RepeatFactorSampler",
                )
        _refuse_mixed(name, array)
        if all(isinstance(v, numbers.Integral) for v in array):
            try:
                array = array.astype(np.int64)
            except OverflowError:
                fail(
                    name,
                    "integer labels that fit in 64 bits",
                    Text(f"an integer of {max(abs(int(v)) for v in array).bit_length()} bits"),
                    "Map the labels to 0..C-1 (or to strings) first",
                )
    if kind in "US":
        array = array.astype(object)
    return array


def _refuse_mixed(name: str, array: np.ndarray) -> None:
    """Numbers and strings in one label vector: ``1`` and ``"1"`` must not become one class."""
    first_text = next((i for i, v in enumerate(array) if isinstance(v, str | bytes)), None)
    first_number = next((i for i, v in enumerate(array) if isinstance(v, numbers.Number)), None)
    if first_text is not None and first_number is not None:
        fail(
            name,
            "labels of one kind: all integers or all strings",
            Text(
                f"{array[first_number]!r} at index {first_number} and "
                f"{array[first_text]!r} at index {first_text}"
            ),
            "Convert them to one kind first (e.g. str(label) for every label)",
            kind=TypeError,
        )


class LabelIndex:
    """Labels indexed by class: the shared input of every sampler and dataset wrapper.

    Classes are sorted; class ``c`` (by position) owns the sample indices
    ``order[offsets[c]:offsets[c + 1]]``, in increasing order. Memory is ``4 * N`` bytes for
    ``order`` (``8 * N`` past 2**31 samples) on top of the labels themselves.

    Args:
        labels: Anything :func:`as_label_array` accepts.

    Example:
        >>> index = LabelIndex(["cat", "dog", "cat"])
        >>> index.classes.tolist(), index.counts.tolist()
        (['cat', 'dog'], [2, 1])
        >>> index.members(0).tolist()
        [0, 2]
    """

    def __init__(self, labels: Any) -> None:
        array = as_label_array(labels)
        self.labels: np.ndarray = array
        coder = _Coder(array, "labels", "values")
        self.classes: np.ndarray = coder.classes
        self.counts: np.ndarray = coder.counts.astype(np.int64)
        self.offsets: np.ndarray = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self._coder: _Coder | None = coder
        self._order: torch.Tensor | None = None
        self._fingerprint: str | None = None

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of :attr:`order`: ``int32`` below 2**31 samples, else ``int64``."""
        return torch.int32 if self.labels.shape[0] < 2**31 else torch.int64

    @property
    def order(self) -> torch.Tensor:
        """Sample indices grouped by class (class ``c`` owns ``order[offsets[c]:offsets[c + 1]]``).

        Built on first use, so a sampler's first epoch can build it while a helper thread
        draws the epoch's permutation (which needs only the counts).
        """
        if self._order is None:
            internal(self._coder is not None, "LabelIndex: no coder to build the grouping")
            self._order = torch.from_numpy(group_by_class(self._coder, self.offsets))  # type: ignore[arg-type]
            self._coder = None
        return self._order

    def __len__(self) -> int:
        """The number of samples."""
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """The number of distinct classes."""
        return int(self.classes.shape[0])

    def keys(self) -> list[Any]:
        """The classes as plain Python values (what ``target_counts`` uses as keys)."""
        return list(self.classes.tolist())

    def count_dict(self) -> dict[Any, int]:
        """``{class: number of samples}`` in class order."""
        return dict(zip(self.keys(), self.counts.tolist(), strict=True))

    def members(self, code: int) -> torch.Tensor:
        """Sample indices of the class at position ``code``."""
        return self.order[int(self.offsets[code]) : int(self.offsets[code + 1])]

    def fingerprint(self) -> str:
        """A digest of the labels' grouping, used to refuse a state made for other labels."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.keys(), self.counts, self.order.numpy())
        return self._fingerprint


class CountIndex(LabelIndex):
    """Classes and how many samples each has, without the samples: all a plan reads.

    For labels known only as running counts (a stream read so far), where a label vector of
    the same counts could run to billions of entries. Strategies read the counts; a callable
    ``sampling_strategy``, which imbalanced-learn hands the labels, gets a label vector made
    on first use. There is no grouping (``order``): nothing can be drawn from it.

    Args:
        counts: ``{class: number of samples}``, counts ``>= 1``.

    Example:
        >>> index = CountIndex({"dog": 2, "cat": 5})
        >>> index.keys(), index.counts.tolist(), len(index)
        (['cat', 'dog'], [5, 2], 7)
    """

    def __init__(self, counts: Mapping[Any, int]) -> None:
        keys = list(counts)
        classes = as_label_array(keys, "counts")
        ranked = np.argsort(classes, kind="stable")
        self.classes = classes[ranked]
        self.counts = np.array([int(counts[keys[i]]) for i in ranked], dtype=np.int64)
        internal(bool((self.counts > 0).all()), "CountIndex: every count must be >= 1")
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self._coder = None
        self._order = None
        self._fingerprint = None
        self._length = int(self.offsets[-1])
        self._labels: np.ndarray | None = None

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = np.repeat(self.classes, self.counts)
        return self._labels

    @labels.setter
    def labels(self, value: np.ndarray) -> None:
        self._labels = value

    @property
    def dtype(self) -> torch.dtype:
        return torch.int32 if self._length < 2**31 else torch.int64

    def __len__(self) -> int:
        return self._length


def _is_scalar_id(value: Any) -> bool:
    return isinstance(value, str | bytes) or (
        isinstance(value, numbers.Integral) and not isinstance(value, bool)
    )


def _one_set(value: Any, i: int, name: str) -> tuple[Any, ...]:
    """Normalise the categories of sample ``i`` to a tuple (unsorted, maybe repeated)."""
    if _is_scalar_id(value):
        return (value,)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.ndim > 1:
            fail(name, "one collection of category ids per sample", Text(f"an array at {i}"))
        if value.dtype.kind not in "iuUSO":
            fail(
                name,
                "integer or string category ids",
                Text(f"{value.dtype} values at index {i}"),
                "Cast whole-number ids with .astype(int); for a multi-hot row pass the whole "
                "2-D matrix instead",
                kind=TypeError,
            )
        value = value.tolist() if value.ndim else [value.item()]
    if not isinstance(value, _CONTAINERS):
        fail(
            name,
            "a collection of category ids (tuple, list, set, array) or one id per sample",
            Text(f"{type(value).__name__} {value!r:.40} at index {i}"),
            "Use an empty tuple for an image without annotations",
            kind=TypeError,
        )
    items = tuple(value)
    for item in items:
        if not _is_scalar_id(item):
            fail(
                name,
                "integer or string category ids",
                Text(f"{item!r:.40} in the set at index {i}"),
                kind=TypeError,
            )
    return items


def _int64_ids(ids: list[int], name: str) -> np.ndarray:
    try:
        return np.asarray(ids, dtype=np.int64)
    except OverflowError:
        big = max(ids, key=lambda v: abs(v))
        fail(
            name,
            "category ids that fit in 64 bits",
            Text(f"an id of {abs(big).bit_length()} bits"),
            "Map the category ids to 0..C-1 (or to strings) first",
        )


def _flatten(values: Sequence[Any] | np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Flat category values and per-sample lengths of a sequence of sets."""
    n = len(values)
    kinds = set(map(type, values))
    if kinds and kinds <= {tuple, list, set, frozenset}:
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        flat_list = list(chain.from_iterable(values))
        item_kinds = set(map(type, flat_list))
        if item_kinds <= {int} or item_kinds <= {str}:
            if item_kinds <= {str}:
                flat = np.empty(len(flat_list), dtype=object)
                flat[:] = flat_list
            else:
                flat = _int64_ids(flat_list, name)
            return flat, lengths
    sets = [_one_set(value, i, name) for i, value in enumerate(values)]
    lengths = np.fromiter(map(len, sets), dtype=np.int64, count=n)
    flat_list = list(chain.from_iterable(sets))
    if flat_list and all(isinstance(v, numbers.Integral) for v in flat_list):
        return _int64_ids([int(v) for v in flat_list], name), lengths
    flat = np.empty(len(flat_list), dtype=object)
    flat[:] = flat_list
    if not flat_list:
        flat = np.zeros(0, dtype=np.int64)
    return flat, lengths


class MultiLabelIndex:
    """Per-image category sets in compressed sparse rows: the input of repeat-factor sampling.

    Categories are sorted; image ``i`` holds the category codes
    ``codes[offsets[i]:offsets[i + 1]]`` (positions into ``categories``), sorted and distinct.
    Memory is 4 bytes per (image, category) pair plus 8 per image.

    Args:
        labelsets: A sequence or object array with one collection of category ids per image
            (an empty one for an image without annotations), a 1-D vector of single labels,
            or a 2-D multi-hot matrix.
        name: The argument name used in error messages.

    Attributes:
        categories: The distinct categories, sorted (``numpy`` array).
        codes: Flat category codes, ``int32``.
        offsets: Row offsets, ``int64``, length ``len(self) + 1``.
        counts: Number of images that contain each category.

    Example:
        >>> index = MultiLabelIndex([(3, 1), (), [3, 3]])
        >>> index.categories.tolist(), index.counts.tolist(), len(index)
        ([1, 3], [1, 2], 3)
        >>> index.labelsets().tolist()
        [(1, 3), (), (3,)]
    """

    categories: np.ndarray
    codes: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    _fingerprint: str | None

    def __init__(self, labelsets: Any, name: str = "labelsets") -> None:
        if isinstance(labelsets, MultiLabelIndex):
            self._copy(labelsets)
            return
        array = labelsets
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        if isinstance(array, np.ndarray) and array.ndim == 2:
            self._from_multi_hot(array, name)
            return
        if isinstance(array, np.ndarray) and array.ndim == 1 and array.dtype.kind in "iu":
            flat = array.astype(np.int64)
            lengths = np.ones(flat.shape[0], dtype=np.int64)
        else:
            if isinstance(array, str | bytes) or not isinstance(array, Sequence | np.ndarray):
                fail(
                    name,
                    "a sequence with one collection of category ids per sample",
                    type(array).__name__,
                    kind=TypeError,
                )
            if isinstance(array, np.ndarray) and array.ndim != 1:
                fail(name, "a 1-D sequence of sets or a 2-D multi-hot matrix", array.shape)
            if isinstance(array, np.ndarray) and array.dtype.kind == "f":
                fail(
                    name,
                    "integer or string category ids",
                    Text(f"{array.dtype} values"),
                    "Cast whole-number ids with .astype(int)",
                    kind=TypeError,
                )
            flat, lengths = _flatten(array, name)
        offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        self._build(flat, offsets, name)

    @classmethod
    def from_csr(cls, values: Any, offsets: Any) -> MultiLabelIndex:
        """Build from flat category ids and row offsets (image ``i`` holds
        ``values[offsets[i]:offsets[i + 1]]``), with no Python object per image.

        Repeated ids within an image are merged and each row is sorted.

        Example:
            >>> index = MultiLabelIndex.from_csr([5, 2, 5, 7], [0, 3, 3, 4])
            >>> index.labelsets().tolist()
            [(2, 5), (), (7,)]
        """
        flat = np.asarray(values.numpy() if isinstance(values, torch.Tensor) else values)
        if flat.ndim != 1 or flat.dtype.kind not in "iuUO":
            fail("values", "a 1-D array of integer or string category ids", Text(str(flat.dtype)))
        offs = np.asarray(offsets.numpy() if isinstance(offsets, torch.Tensor) else offsets)
        if (
            offs.ndim != 1
            or offs.dtype.kind not in "iu"
            or offs.shape[0] < 2
            or int(offs[0]) != 0
            or int(offs[-1]) != flat.shape[0]
            or (np.diff(offs) < 0).any()
        ):
            fail(
                "offsets",
                "non-decreasing integer row offsets from 0 to len(values), one more than images",
                Text(f"an array of {offs.shape[0]} offsets"),
            )
        index = cls.__new__(cls)
        if flat.dtype.kind == "U":
            flat = flat.astype(object)
        elif flat.dtype.kind in "iu":
            flat = flat.astype(np.int64)  # categories are int64, whatever the ids' width
        index._build(flat, offs, "values")
        return index

    def _copy(self, other: MultiLabelIndex) -> None:
        self.categories = other.categories
        self.codes = other.codes
        self.offsets = other.offsets
        self.counts = other.counts
        self._fingerprint = other._fingerprint

    def _from_multi_hot(self, matrix: np.ndarray, name: str) -> None:
        if matrix.shape[0] == 0:
            fail(name, "at least one sample", "an empty matrix")
        if matrix.dtype.kind == "b":
            hot = matrix
        else:
            if matrix.dtype.kind not in "iuf" or not np.isin(matrix, (0, 1)).all():
                fail(
                    name,
                    "a multi-hot matrix of 0s and 1s (samples x categories)",
                    Text(f"a {matrix.dtype} matrix with other values"),
                    "For CelebA-style -1/1 attributes pass (attr > 0)",
                )
            hot = matrix != 0
        rows, columns = np.nonzero(hot)
        offsets = np.zeros(hot.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=hot.shape[0]), out=offsets[1:])
        self._build(columns.astype(np.int64), offsets, name)

    def _build(self, flat: np.ndarray, offsets: np.ndarray, name: str) -> None:
        n = offsets.shape[0] - 1
        if n <= 0:
            fail(name, "at least one sample", "an empty sequence")
        categories, codes, _ = encode(flat, name, "category ids")
        codes = codes.astype(np.int64)
        rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
        width = max(int(categories.shape[0]), 1)
        keys = rows * width + codes
        if keys.shape[0] > 1 and not (np.diff(keys) > 0).all():
            # rows are already in order, so a stable sort only has short runs to merge
            keys = np.sort(keys, kind="stable")
            fresh = np.empty(keys.shape[0], dtype=bool)
            fresh[0] = True
            np.not_equal(keys[1:], keys[:-1], out=fresh[1:])
            keys = keys[fresh]
            rows = keys // width
            codes = keys - rows * width
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
        self.categories = categories
        self.codes = codes.astype(np.int32)
        self.offsets = offsets.astype(np.int64, copy=False)
        self.counts = np.bincount(self.codes, minlength=categories.shape[0]).astype(np.int64)
        self._fingerprint = None

    def __len__(self) -> int:
        """The number of samples (images)."""
        return int(self.offsets.shape[0] - 1)

    @property
    def num_categories(self) -> int:
        """The number of distinct categories."""
        return int(self.categories.shape[0])

    def sizes(self) -> np.ndarray:
        """Number of distinct categories of each image."""
        return np.diff(self.offsets)

    def keys(self) -> list[Any]:
        """The categories as plain Python values."""
        return list(self.categories.tolist())

    def labelsets(self) -> np.ndarray:
        """The sets as a 1-D object array of sorted tuples (one Python object per image)."""
        values = self.categories[self.codes].tolist()
        bounds = self.offsets.tolist()
        out = np.empty(len(self), dtype=object)
        out[:] = [tuple(values[a:b]) for a, b in pairwise(bounds)]
        return out

    def fingerprint(self) -> str:
        """A digest of the sets, used to refuse a state made for other labels."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.keys(), self.codes, self.offsets)
        return self._fingerprint

    def __repr__(self) -> str:
        return (
            f"MultiLabelIndex(images={len(self)}, categories={self.num_categories}, "
            f"pairs={self.codes.shape[0]})"
        )
