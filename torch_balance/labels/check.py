"""Checks of the labels given: whether an object is labels or a dataset
(:func:`is_label_data`), a label vector (:func:`as_label_array`) and the category sets of
multi-label data (:func:`flatten_sets`), with messages that name what is wrong.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import torch

from torch_balance._validation import Text, fail, tensor_values

__all__ = ["as_label_array", "dataset_fix", "flatten_sets", "is_label_data"]

_CONTAINERS = (tuple, list, set, frozenset, range)


def dataset_fix(given: Any, reader: str, takers: str) -> str | None:
    """The call to use when a dataset was given where labels belong, or ``None``.

    ``reader`` reads the dataset's labels; ``takers`` names what takes the dataset itself.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> dataset_fix(TensorDataset(torch.zeros(2)), "get_labels", "the samplers")[:53]
        'Read the labels of a dataset with get_labels(dataset)'
        >>> dataset_fix(3, "get_labels", "the samplers") is None
        True
    """
    if not (hasattr(given, "__getitem__") and hasattr(given, "__len__")):
        return None
    return (
        f"Read the labels of a dataset with {reader}(dataset) from torch_balance, or pass the "
        f"dataset itself to {takers}"
    )


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
        array = tensor_values(name, labels)
    elif isinstance(labels, np.ndarray):
        array = labels
    elif isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        fail(
            name,
            "a 1-D numpy array, torch tensor or sequence of labels",
            type(labels).__name__,
            dataset_fix(
                labels,
                "get_labels",
                "the samplers, target_counts, class_weights or make_plan",
            ),
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


def _is_scalar_id(value: Any) -> bool:
    return isinstance(value, str | bytes) or (
        isinstance(value, numbers.Integral) and not isinstance(value, bool)
    )


def _one_set(value: Any, i: int, name: str) -> tuple[Any, ...]:
    """Normalise the categories of sample ``i`` to a tuple (unsorted, maybe repeated)."""
    if _is_scalar_id(value):
        return (value,)
    if isinstance(value, torch.Tensor):
        value = tensor_values(name, value)
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


def flatten_sets(values: Sequence[Any] | np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
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


def is_label_data(data: Any, *, label_sets: bool = True) -> bool:
    """Is ``data`` labels given directly (``True``) or a dataset to read them from?

    Arrays and tensors are labels; so is a list or tuple whose first item is a label. A list
    of samples such as ``[(image, label), ...]`` or of dicts is a dataset instead, except
    that with ``label_sets`` a first item that holds only ids (``[3, 7]``, ``("cat",)``) is a
    label set, so the list is labels.

    Args:
        data: Anything a sampler or reader accepts.
        label_sets: Count a list of id collections as labels (``False`` where a list of
            ``(x, y)`` pairs of plain values must be read as samples: :func:`get_labels`).

    Returns:
        Whether ``data`` is labels.

    Example:
        >>> is_label_data([0, 1]), is_label_data([[1, 2], [3]]), is_label_data([("img", 0)])
        (True, True, True)
        >>> is_label_data([("img", 0)], label_sets=False), is_label_data([{"label": 0}])
        (False, False)
    """
    if isinstance(data, np.ndarray | torch.Tensor):
        return True
    if not isinstance(data, list | tuple):
        return False
    if not data or not isinstance(data[0], list | tuple | Mapping):
        return True
    return (
        label_sets
        and not isinstance(data[0], Mapping)
        and all(isinstance(v, numbers.Integral | str) for v in data[0])
    )
