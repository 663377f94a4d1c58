"""What one label is: a class label (:func:`~torch_balance.labels.get_labels`) or a set of
category ids (:func:`~torch_balance.labels.get_labelsets`).

A :class:`Kind` holds everything that tells the two apart for the one reader of
:mod:`torch_balance.labels.read`: the check of one sample's label, of a part's label vector
and of the whole result, and where a dataset keeps its labels. :class:`LabelProblem` carries a
bad label from wherever it was found (a DataLoader worker too) to the message that names its
index.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import torch

from torch_balance._validation import Text, fail, tensor_values
from torch_balance.labels.index import MultiLabelIndex, as_label_array, encode

__all__ = [
    "MULTI",
    "SINGLE",
    "UNLABELED_FIX",
    "Kind",
    "LabelProblem",
    "as_labelsets",
    "missing_labels",
    "scalar_label",
    "transformed",
]

_HF_LABEL_COLUMNS = ("label", "labels", "fine_label", "target")
_ITEM_LABEL_KEYS = ("label", "labels", "target")
_AVOID_SCAN = (
    "pass label_fn=lambda dataset, i: <label of sample i>, or give the dataset a .targets "
    "attribute (a list, array or tensor with one label per sample)"
)
UNLABELED_FIX = (
    "This split has samples without a class label (a test or 'unlabeled' split) and cannot "
    "be balanced; keep the labelled samples with torch.utils.data.Subset, or pass label_fn="
)


class LabelProblem(Exception):
    """A per-sample label that cannot be used; carries the parts of a ``fail`` message.

    Raised by the item/label helpers, which do not know the sample's index, and turned into
    the public error by :meth:`throw` once the index is known. Picklable, so a DataLoader
    worker can hand it back to the main process inside a batch (without ``cause``, which
    may not pickle).

    Args:
        kind: ``TypeError`` or ``ValueError``.
        expected: What a valid label looks like.
        got: What was found, without its index.
        fix: What the user can do instead, if there is something.
        cause: The exception that made the label unusable (a ``label_fn`` that raised).

    Example:
        >>> problem = LabelProblem(TypeError, "integer labels", "the float 0.5")
        >>> problem.throw("label_fn", "at index 2")
        Traceback (most recent call last):
        ...
        TypeError: label_fn: expected integer labels, got the float 0.5 at index 2
    """

    def __init__(
        self,
        kind: type,
        expected: str,
        got: str,
        fix: str | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(kind, expected, got, fix)
        self.kind, self.expected, self.got, self.fix = kind, expected, got, fix
        self.cause = cause

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.kind, self.expected, self.got, self.fix)

    def throw(self, name: str, where: str) -> NoReturn:
        try:
            fail(name, self.expected, Text(f"{self.got} {where}"), self.fix, kind=self.kind)
        except (TypeError, ValueError) as error:
            if self.cause is not None:
                error.__cause__ = error.__context__ = self.cause
            raise


def scalar_label(value: Any) -> Any:
    """Return one sample's label as a Python int, bool, str or bytes, or raise LabelProblem."""
    if isinstance(value, torch.Tensor | np.ndarray):
        if value.ndim != 0:
            raise LabelProblem(
                ValueError,
                "one scalar class label per sample",
                f"a {type(value).__name__} of shape {tuple(value.shape)}",
                "Use label.item() for a one-element label and label.argmax() for a one-hot "
                "one; for multi-label data use multilabel=True",
            )
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str | bytes):
        return value
    if value is None:
        raise LabelProblem(ValueError, "a class label for every sample", "None", UNLABELED_FIX)
    if isinstance(value, numbers.Real):
        shown = "NaN" if math.isnan(value) else f"the float {value!r}"
        raise LabelProblem(
            TypeError,
            "integer or string class labels",
            shown,
            "Cast whole-number float labels with int(label) / label.long(); class labels "
            "cannot be NaN",
        )
    if isinstance(value, list | tuple | set | frozenset | Mapping):
        raise LabelProblem(
            ValueError,
            "one scalar class label per sample",
            f"a {type(value).__name__} of {len(value)} values",
            "For multi-label data use multilabel=True",
        )
    raise LabelProblem(TypeError, "an integer or string class label", f"a {type(value).__name__}")


def _item_label(item: Any) -> Any:
    """The class label of one dataset item: ``(x, y, ...)`` -> ``y``, a dict's label key, a scalar.

    Element 1 of a tuple, as torchvision's ``(input, target, ...)`` convention has it: items such
    as ``(image, label, index)`` or ``(image, label, path)`` keep their label in place 1.
    """
    if isinstance(item, tuple | list):
        if len(item) < 2:
            raise LabelProblem(
                ValueError,
                "an (input, label) item",
                f"a {type(item).__name__} of length {len(item)}",
                f"Return (input, label) from __getitem__, or {_AVOID_SCAN}",
            )
        return scalar_label(item[1])
    if isinstance(item, Mapping):
        for key in _ITEM_LABEL_KEYS:
            if key in item:
                return scalar_label(item[key])
        keys = sorted(str(key) for key in item)[:8]
        raise LabelProblem(
            ValueError,
            "a dict item with a 'label', 'labels' or 'target' key",
            f"a dict with keys {keys}",
            "Pass label_fn=lambda dataset, i: dataset[i][<your key>]",
        )
    return scalar_label(item)


def _item_labelset(item: Any) -> Any:
    """The category ids in the target of one dataset item (checked later, with its index)."""
    target = item[1] if isinstance(item, tuple | list) and len(item) >= 2 else item
    if isinstance(target, dict):
        if "labels" in target:
            return target["labels"]
        if "annotation" in target:  # VOC's parsed XML
            objects = target["annotation"].get("object", [])
            objects = objects if isinstance(objects, list) else [objects]
            return [obj["name"] for obj in objects]
    if isinstance(target, list) and target and isinstance(target[0], dict):
        try:
            return [annotation["category_id"] for annotation in target]
        except KeyError:
            raise LabelProblem(
                ValueError,
                "COCO-style annotations with a 'category_id'",
                "an annotation without one",
                "Pass label_fn=lambda dataset, i: <category ids of sample i>",
            ) from None
    if isinstance(target, torch.Tensor) and target.dtype == torch.bool:
        return torch.nonzero(target).reshape(-1)
    return target


def _as_is(value: Any) -> Any:
    return value


def as_labelsets(values: Any, name: str = "labelsets") -> np.ndarray:
    """Check per-sample category collections and return them as sorted tuples.

    Args:
        values: A sequence or 1-D object array with one collection of category ids (ints or
            strings) per sample, a 1-D vector of single labels, or a 2-D multi-hot matrix.
        name: The argument name used in error messages.

    Returns:
        A 1-D ``numpy`` object array of tuples of sorted distinct ids.

    Raises:
        TypeError: For float or ``None`` entries, or ids of mixed kinds.
        ValueError: For an empty input.

    Example:
        >>> as_labelsets([[3, 1, 3], [], {2}]).tolist()
        [(1, 3), (), (2,)]
        >>> as_labelsets(torch.tensor([[1, 0, 1], [0, 0, 0]])).tolist()
        [(0, 2), ()]
    """
    return MultiLabelIndex(values, name).labelsets()


def _labelset_vector(values: Any, name: str) -> np.ndarray:
    """Label sets as :func:`as_labelsets` gives them; an empty part of a dataset stays empty."""
    if not isinstance(values, str | bytes) and hasattr(values, "__len__") and len(values) == 0:
        return np.empty(0, dtype=object)
    return as_labelsets(values, name)


def missing_labels(array: np.ndarray) -> np.ndarray | None:
    """Mask of the samples without a label (``None``), or None when every sample has one.

    Example:
        >>> missing_labels(np.array([1, None, 2], dtype=object)).tolist()
        [False, True, False]
        >>> missing_labels(np.array([1, 2])) is None
        True
    """
    if array.dtype != object:
        return None
    mask: np.ndarray = array == None  # noqa: E711 (elementwise comparison)
    return mask if bool(mask.any()) else None


def _vector(values: Any, name: str) -> np.ndarray:
    """A label attribute as a 1-D numpy array; ``None`` (no label) is kept, checked at the end."""
    if isinstance(values, torch.Tensor):
        array = tensor_values(name, values)
    elif isinstance(values, np.ndarray):
        array = values
    else:
        if isinstance(values, Mapping):  # list() would read its keys as the labels
            fail(
                name,
                "a list, array or tensor of labels",
                Text(f"a {type(values).__name__} of {len(values)} entries"),
                "For labels keyed by index, pass label_fn=lambda dataset, i: <label of "
                "sample i>, or set .targets to [labels[i] for i in range(len(dataset))]",
                kind=TypeError,
            )
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            try:
                values = list(values)
            except TypeError:
                fail(
                    name,
                    "a list, array or tensor of labels",
                    Text(type(values).__name__),
                    kind=TypeError,
                )
        if len(values) == 0:
            return np.empty(0, dtype=np.int64)
        if not any(value is None for value in values):
            return as_label_array(values, name)
        array = np.fromiter(values, dtype=object, count=len(values))
    if array.ndim == 1 and array.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    if array.ndim == 1:
        missing = missing_labels(array)
        if missing is not None:
            present = array[~missing]
            if present.shape[0]:
                as_label_array(present, name)
            return array
    return as_label_array(array, name)


@dataclass(frozen=True)
class Kind:
    """What one label is and where a dataset keeps it: the only difference between
    :func:`~torch_balance.labels.get_labels` (:data:`SINGLE`) and
    :func:`~torch_balance.labels.get_labelsets` (:data:`MULTI`).

    Example:
        >>> SINGLE.vector([3, 1], "labels").tolist(), MULTI.vector([3, 1], "labels").tolist()
        ([3, 1], [(3,), (1,)])
        >>> MULTI.of_item((None, {"labels": [2, 5]}))
        [2, 5]
    """

    function: str
    multilabel: bool
    what: str  # one sample's label, in messages
    attributes: tuple[str, ...]  # label attributes, in the order they are looked for
    hf_columns: tuple[str, ...]  # Hugging Face label columns, in the order they are looked for
    avoid_scan: str
    item_rule: str  # which part of a scanned item holds the label, in the scan's warning
    vector: Callable[[Any, str], np.ndarray]  # a part's labels, checked
    final: Callable[[Any, str], np.ndarray]  # the whole dataset's labels, checked
    of_item: Callable[[Any], Any]  # the label inside one item of a scan
    of_value: Callable[[Any], Any]  # the label that label_fn returned


SINGLE = Kind(
    function="get_labels",
    multilabel=False,
    what="label",
    attributes=("targets", "labels"),
    hf_columns=_HF_LABEL_COLUMNS,
    avoid_scan=_AVOID_SCAN,
    item_rule=(
        "the label is element 1 of each (input, label, ...) item, or the 'label', 'labels' or "
        "'target' key of a dict item"
    ),
    vector=_vector,
    final=as_label_array,
    of_item=_item_label,
    of_value=scalar_label,
)
MULTI = Kind(
    function="get_labelsets",
    multilabel=True,
    what="category ids",
    attributes=("labelsets", "targets"),
    hf_columns=(),
    avoid_scan=(
        "pass label_fn=lambda dataset, i: <category ids of sample i>, or give the dataset a "
        ".labelsets attribute (a list with one collection of category ids per sample)"
    ),
    item_rule=(
        "the category ids come from element 1 of each (input, target, ...) item: its "
        "'labels' key, its COCO 'category_id's, its VOC object names, or a multi-hot tensor"
    ),
    vector=_labelset_vector,
    final=as_labelsets,
    of_item=_item_labelset,
    of_value=_as_is,
)


def transformed(vector: np.ndarray, transform: Callable[[Any], Any], name: str) -> np.ndarray:
    """Apply a dataset's ``target_transform`` the way ``dataset[i]`` would, once per class.

    The transform gets each distinct label as a Python value (what torchvision hands it) and
    must return a scalar label; it is assumed to be a pure function of the label.

    Example:
        >>> transformed(np.array([0, 1, 0]), lambda y: "ab"[y], "target_transform").tolist()
        ['a', 'b', 'a']
    """
    missing = missing_labels(vector)
    present = vector if missing is None else vector[~missing]
    if present.shape[0] == 0:
        return vector
    classes, codes, _ = encode(present)
    mapped: list[Any] = []
    for value in classes.tolist():
        try:
            out = transform(value)
        except Exception as error:
            fail(
                name,
                "a target_transform that accepts every class label",
                Text(f"{type(error).__name__}: {error} for label {value!r}"),
                "Fix the transform, or pass label_fn=",
            )
        try:
            mapped.append(scalar_label(out))
        except LabelProblem as problem:
            problem.throw(name, f"returned for label {value!r}")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in mapped):
        table = np.asarray(mapped, dtype=np.int64)
    else:
        table = np.empty(len(mapped), dtype=object)
        table[:] = mapped
    result = table[codes]
    if missing is None:
        return result
    full = np.empty(vector.shape[0], dtype=object)
    full[~missing] = result
    return full
