"""Class labels: read them from a dataset without decoding images, and index them by class.

``get_labels`` turns a dataset into a 1-D numpy array of labels. ``LabelIndex`` turns such an
array into what every sampler works from: the sorted classes, their counts, and the sample
indices grouped by class.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from torch_balance._validation import fail

__all__ = ["LabelIndex", "as_label_array", "get_labels"]


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
            except ValueError:
                array = np.empty(len(labels), dtype=object)
                array[:] = list(labels)
    if array.ndim != 1:
        fail(
            name,
            "a 1-D vector with one label per sample",
            _Shape(array.shape),
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
            _Raw(where),
            "Cast whole-number float labels with .long() / .astype(int); class labels cannot "
            "be NaN",
            kind=TypeError,
        )
    if kind == "O":
        for i, value in enumerate(array):
            if isinstance(value, float) or value is None:
                fail(
                    name,
                    "integer or string class labels",
                    _Raw(f"{value!r} at index {i}"),
                    kind=TypeError,
                )
            if isinstance(value, np.ndarray | list | tuple | set | frozenset):
                fail(
                    name,
                    "one label per sample",
                    _Raw(f"a {type(value).__name__} at index {i}"),
                    "For multi-label data use RepeatFactorSampler",
                )
        if all(isinstance(v, numbers.Integral) for v in array):
            array = array.astype(np.int64)
    if kind in "US":
        array = array.astype(object)
    return array


class _Shape:
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def __repr__(self) -> str:
        return f"an array of shape {self.shape}"


class _Raw:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


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
        classes, codes, counts = _encode(array)
        self.classes: np.ndarray = classes
        self.counts: np.ndarray = counts.astype(np.int64)
        self.offsets: np.ndarray = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        order = np.argsort(codes, kind="stable")
        del codes
        if order.shape[0] < 2**31:
            order = order.astype(np.int32)
        self.order: torch.Tensor = torch.from_numpy(order)
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
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
            digest = hashlib.blake2b(digest_size=16)
            digest.update(repr(self.keys()).encode())
            digest.update(self.counts.tobytes())
            digest.update(self.order.numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint


def _encode(array: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (sorted classes, class code per sample, count per class)."""
    if array.dtype.kind in "iub" and array.dtype.kind != "b":
        low, high = int(array.min()), int(array.max())
        span = high - low + 1
        if span <= max(1 << 20, 4 * array.shape[0]):
            shifted = array if low == 0 else array - low
            present_counts = np.bincount(shifted, minlength=span)
            present = np.flatnonzero(present_counts)
            code_dtype = np.int16 if present.shape[0] < 2**15 else np.int32
            lut = np.zeros(span, dtype=code_dtype)
            lut[present] = np.arange(present.shape[0], dtype=code_dtype)
            codes = lut[shifted]
            classes = (present + low).astype(array.dtype)
            return classes, codes, present_counts[present]
    try:
        classes, inverse, counts = np.unique(array, return_inverse=True, return_counts=True)
    except TypeError as error:
        fail(
            "labels",
            "values of one sortable kind (all integers or all strings)",
            _Raw(f"a mix that cannot be sorted ({error})"),
            kind=TypeError,
        )
    code_dtype = np.int16 if classes.shape[0] < 2**15 else np.int32
    return classes, inverse.reshape(-1).astype(code_dtype), counts


def get_labels(
    dataset: Any,
    *,
    label_fn: Callable[[Any, int], Any] | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """Return the class label of every sample of ``dataset`` as a 1-D numpy array.

    Placeholder reader: label vectors, ``.targets`` and ``.labels``. The full reader table
    comes in the same module.
    """
    if isinstance(dataset, np.ndarray | torch.Tensor | list | tuple):
        return as_label_array(dataset)
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return as_label_array(dataset.tensors[-1])
    for attribute in ("targets", "labels"):
        if hasattr(dataset, attribute):
            return as_label_array(getattr(dataset, attribute))
    fail("dataset", "a dataset with .targets or labels", type(dataset).__name__, kind=TypeError)
