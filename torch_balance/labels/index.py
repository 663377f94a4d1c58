"""Labels indexed by class: :class:`LabelIndex` (one label per sample) and
:class:`MultiLabelIndex` (one set of categories per sample).

Both are built by one encoder (:func:`~torch_balance.labels.encode.encode`: sorted distinct
values and a code per value) and identified by one digest
(:func:`~torch_balance.labels.encode.fingerprint`), which a saved state is checked against.
The labels given are checked first (:mod:`~torch_balance.labels.check`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from torch_balance._validation import Text, fail, internal, tensor_values
from torch_balance.labels.check import as_label_array, dataset_fix, flatten_sets
from torch_balance.labels.encode import Coder, encode, fingerprint, group_by_class

__all__ = [
    "CountIndex",
    "LabelIndex",
    "MultiLabelIndex",
    "as_label_array",
    "encode",
    "fingerprint",
    "group_by_class",
]


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
        coder = Coder(array, "labels", "values")
        self.classes: np.ndarray = coder.classes
        self.counts: np.ndarray = coder.counts.astype(np.int64)
        self.offsets: np.ndarray = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self._coder: Coder | None = coder
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
            array = tensor_values(name, array)
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
                    dataset_fix(array, "get_labelsets", "RepeatFactorSampler or repeat_factors"),
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
            flat, lengths = flatten_sets(array, name)
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
