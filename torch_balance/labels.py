"""Class labels: read them from a dataset without decoding images, and index them by class.

``get_labels`` turns a dataset into a 1-D numpy array of labels. ``LabelIndex`` turns such an
array into what every sampler works from: the sorted classes, their counts, and the sample
indices grouped by class.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, IterableDataset, Subset, TensorDataset
from tqdm.auto import tqdm

from torch_balance._validation import check_bool, check_int, fail

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


# --------------------------------------------------------------------------------------------
# get_labels: read the labels of a dataset without decoding its samples.
# --------------------------------------------------------------------------------------------

_SCAN_BATCH_SIZE = 128
_HF_LABEL_COLUMNS = ("label", "labels", "fine_label", "target")
_ITEM_LABEL_KEYS = ("label", "labels", "target")
_AVOID_SCAN = (
    "pass label_fn=lambda dataset, i: <label of sample i>, or give the dataset a .targets "
    "attribute (a list, array or tensor with one label per sample)"
)
_UNLABELED_FIX = (
    "This split has samples without a class label (a test or 'unlabeled' split) and cannot "
    "be balanced; keep the labelled samples with torch.utils.data.Subset, or pass label_fn="
)

_Reader = Callable[[Any, str], tuple[Any, str, bool]]


class _LabelProblem(Exception):
    """A per-sample label that cannot be used; carries the parts of a ``fail`` message.

    Raised by the item/label helpers, which do not know the sample's index, and turned into
    the public error by :meth:`throw` once the index is known. Picklable, so a DataLoader
    worker can hand it back to the main process inside a batch.
    """

    def __init__(self, kind: type, expected: str, got: str, fix: str | None = None) -> None:
        super().__init__(kind, expected, got, fix)
        self.kind, self.expected, self.got, self.fix = kind, expected, got, fix

    def throw(self, name: str, where: str) -> NoReturn:
        fail(name, self.expected, _Raw(f"{self.got} {where}"), self.fix, kind=self.kind)


def _scalar_label(value: Any) -> Any:
    """Return one sample's label as a Python int, bool, str or bytes, or raise _LabelProblem."""
    if isinstance(value, torch.Tensor | np.ndarray):
        if value.ndim != 0:
            raise _LabelProblem(
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
        raise _LabelProblem(ValueError, "a class label for every sample", "None", _UNLABELED_FIX)
    if isinstance(value, numbers.Real):
        shown = "NaN" if math.isnan(value) else f"the float {value!r}"
        raise _LabelProblem(
            TypeError,
            "integer or string class labels",
            shown,
            "Cast whole-number float labels with int(label) / label.long(); class labels "
            "cannot be NaN",
        )
    if isinstance(value, list | tuple | set | frozenset | Mapping):
        raise _LabelProblem(
            ValueError,
            "one scalar class label per sample",
            f"a {type(value).__name__} of {len(value)} values",
            "For multi-label data use multilabel=True",
        )
    raise _LabelProblem(TypeError, "an integer or string class label", f"a {type(value).__name__}")


def _label_of_item(item: Any) -> Any:
    """The label inside one dataset item: ``(x, y)`` -> ``y``, a dict's label key, or a scalar."""
    if isinstance(item, tuple | list):
        if len(item) < 2:
            raise _LabelProblem(
                ValueError,
                "an (input, label) item",
                f"a {type(item).__name__} of length {len(item)}",
                f"Return (input, label) from __getitem__, or {_AVOID_SCAN}",
            )
        return item[-1]
    if isinstance(item, Mapping):
        for key in _ITEM_LABEL_KEYS:
            if key in item:
                return item[key]
        keys = sorted(str(key) for key in item)[:8]
        raise _LabelProblem(
            ValueError,
            "a dict item with a 'label', 'labels' or 'target' key",
            f"a dict with keys {keys}",
            "Pass label_fn=lambda dataset, i: dataset[i][<your key>]",
        )
    return item


def _collate_labels(batch: list[Any]) -> list[Any]:
    """DataLoader ``collate_fn`` of the scan: keep each item's label, drop the input.

    A label that cannot be used is returned as a ``_LabelProblem`` in its place, so that the
    main process can name the sample's index.
    """
    out: list[Any] = []
    for item in batch:
        try:
            out.append(_scalar_label(_label_of_item(item)))
        except _LabelProblem as problem:
            out.append(problem)
    return out


def _missing(array: np.ndarray) -> np.ndarray | None:
    """Mask of the samples without a label (``None``), or None when every sample has one."""
    if array.dtype != object:
        return None
    mask: np.ndarray = array == None  # noqa: E711 (elementwise comparison)
    return mask if bool(mask.any()) else None


def _vector(values: Any, name: str) -> np.ndarray:
    """A label attribute as a 1-D numpy array; ``None`` (no label) is kept, checked at the end."""
    if isinstance(values, torch.Tensor):
        array = values.detach().cpu().numpy()
    elif isinstance(values, np.ndarray):
        array = values
    else:
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            try:
                values = list(values)
            except TypeError:
                fail(
                    name,
                    "a list, array or tensor of labels",
                    _Raw(type(values).__name__),
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
        missing = _missing(array)
        if missing is not None:
            present = array[~missing]
            if present.shape[0]:
                as_label_array(present, name)
            return array
    return as_label_array(array, name)


def _dataset_length(dataset: Any) -> int | None:
    if not hasattr(dataset, "__len__"):
        return None
    try:
        return len(dataset)
    except TypeError:
        return None


def _check_length(dataset: Any, vector: np.ndarray, name: str) -> None:
    expected = _dataset_length(dataset)
    if expected is not None and vector.shape[0] != expected:
        fail(
            name,
            f"one label per sample ({expected}, the length of the dataset)",
            _Raw(f"{vector.shape[0]} labels"),
            "Keep the label attribute in step with the samples (rebuild it after filtering), "
            "or pass label_fn=",
        )


def _transformed(vector: np.ndarray, transform: Callable[[Any], Any], name: str) -> np.ndarray:
    """Apply a dataset's ``target_transform`` the way ``dataset[i]`` would, once per class.

    The transform gets each distinct label as a Python value (what torchvision hands it) and
    must return a scalar label; it is assumed to be a pure function of the label.
    """
    missing = _missing(vector)
    present = vector if missing is None else vector[~missing]
    if present.shape[0] == 0:
        return vector
    classes, codes, _ = _encode(present)
    mapped: list[Any] = []
    for value in classes.tolist():
        try:
            out = transform(value)
        except Exception as error:
            fail(
                name,
                "a target_transform that accepts every class label",
                _Raw(f"{type(error).__name__}: {error} for label {value!r}"),
                "Fix the transform, or pass label_fn=",
            )
        try:
            mapped.append(_scalar_label(out))
        except _LabelProblem as problem:
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


def _attr(attribute: str) -> _Reader:
    def read(dataset: Any, path: str) -> tuple[Any, str, bool]:
        return getattr(dataset, attribute), attribute, True

    return read


def _pairs(attribute: str) -> _Reader:
    """Reader for a list of ``(file or data, label)`` pairs."""

    def read(dataset: Any, path: str) -> tuple[Any, str, bool]:
        return [pair[1] for pair in getattr(dataset, attribute)], f"{attribute}[i][1]", True

    return read


def _target_types(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _refuse_tuple_transform(dataset: Any, path: str, types: list[str], argument: str) -> None:
    """With several target types, target_transform gets a tuple we cannot build cheaply."""
    if len(types) > 1 and getattr(dataset, "target_transform", None) is not None:
        fail(
            f"{path}.target_transform",
            "a target_transform that get_labels can apply to the class label alone",
            _Raw(f"one applied to the tuple of {argument}={types}"),
            "Use a single target type, or pass label_fn=lambda dataset, i: <class of sample i>",
        )


def _qmnist(dataset: Any, path: str) -> tuple[Any, str, bool]:
    targets = dataset.targets
    if isinstance(targets, torch.Tensor) and targets.ndim == 2:
        if not getattr(dataset, "compat", True) and dataset.target_transform is not None:
            fail(
                f"{path}.target_transform",
                "compat=True, or no target_transform",
                _Raw("compat=False, where target_transform gets the whole row of 8 values"),
                "Pass label_fn=lambda dataset, i: <class of sample i>",
            )
        return targets[:, 0], "targets[:, 0]", True
    return targets, "targets", True


def _stl10(dataset: Any, path: str) -> tuple[Any, str, bool]:
    labels = dataset.labels
    if labels is None:
        return [None] * len(dataset), "labels", True
    array = np.asarray(labels)
    unlabeled = array == -1
    if bool(unlabeled.any()):
        marked = array.astype(object)
        marked[unlabeled] = None
        return marked, "labels (-1 = unlabeled)", True
    return array, "labels", True


def _caltech101(dataset: Any, path: str) -> tuple[Any, str, bool]:
    types = _target_types(dataset.target_type)
    if "category" not in types:
        fail(
            f"{path}.target_type",
            "a target_type that includes 'category'",
            types,
            "Annotations are outlines, not class labels: build the dataset with "
            "target_type='category'",
        )
    _refuse_tuple_transform(dataset, path, types, "target_type")
    return dataset.y, "y", True


def _inaturalist(dataset: Any, path: str) -> tuple[Any, str, bool]:
    types = _target_types(dataset.target_type)
    _refuse_tuple_transform(dataset, path, types, "target_type")
    first = types[0]
    ids = np.fromiter(
        (entry[0] for entry in dataset.index), dtype=np.int64, count=len(dataset.index)
    )
    if first == "full":
        return ids, "index[i][0]", True
    table = np.asarray([mapping[first] for mapping in dataset.categories_map], dtype=np.int64)
    return table[ids], f"categories_map[index[i][0]][{first!r}]", True


def _oxford_pet(dataset: Any, path: str) -> tuple[Any, str, bool]:
    types = _target_types(dataset._target_types)
    classes = [t for t in types if t in ("category", "binary-category")]
    if not classes:
        fail(
            f"{path}.target_types",
            "target_types with 'category' or 'binary-category'",
            types,
            "Segmentation masks are not class labels",
        )
    _refuse_tuple_transform(dataset, path, types, "target_types")
    attribute = "_labels" if classes[0] == "category" else "_bin_labels"
    return getattr(dataset, attribute), attribute, True


# torchvision dataset class name -> reader. Order matters where one class subclasses another:
# QMNIST before MNIST (FashionMNIST, KMNIST and EMNIST also subclass MNIST); ImageNet,
# EuroSAT, Country211 and every ImageFolder subclass are DatasetFolders.
_TORCHVISION_READERS: tuple[tuple[str, _Reader], ...] = (
    ("QMNIST", _qmnist),
    ("MNIST", _attr("targets")),
    ("USPS", _attr("targets")),
    ("SEMEION", _attr("labels")),
    ("CIFAR10", _attr("targets")),
    ("SVHN", _attr("labels")),
    ("STL10", _stl10),
    ("DatasetFolder", _pairs("samples")),
    ("Flowers102", _attr("_labels")),
    ("Food101", _attr("_labels")),
    ("DTD", _attr("_labels")),
    ("FGVCAircraft", _attr("_labels")),
    ("SUN397", _attr("_labels")),
    ("CLEVRClassification", _attr("_labels")),
    ("OxfordIIITPet", _oxford_pet),
    ("StanfordCars", _pairs("_samples")),
    ("GTSRB", _pairs("_samples")),
    ("FER2013", _pairs("_samples")),
    ("Imagenette", _pairs("_samples")),
    ("RenderedSST2", _pairs("_samples")),
    ("Caltech101", _caltech101),
    ("Caltech256", _attr("y")),
    ("Places365", _pairs("imgs")),
    ("LFWPeople", _attr("targets")),
    ("LFWPairs", _attr("targets")),
    ("INaturalist", _inaturalist),
    ("Omniglot", _pairs("_flat_character_images")),
)


def _torchvision_reader(dataset: Any) -> _Reader | None:
    if not any(cls.__module__.startswith("torchvision.") for cls in type(dataset).__mro__):
        return None
    import torchvision.datasets as tv_datasets

    for class_name, reader in _TORCHVISION_READERS:
        cls = getattr(tv_datasets, class_name, None)
        if cls is not None and isinstance(dataset, cls):
            return reader
    return None


def _read_with(dataset: Any, path: str, reader: _Reader) -> np.ndarray:
    values, attribute, transformable = reader(dataset, path)
    vector = _vector(values, f"{path}.{attribute}")
    _check_length(dataset, vector, f"{path}.{attribute}")
    transform = getattr(dataset, "target_transform", None) if transformable else None
    if transform is not None:
        vector = _transformed(vector, transform, f"{path}.target_transform")
    return vector


def _hf_label_column(dataset: Any, path: str) -> str | None:
    """The label column of a Hugging Face-style dataset, or None for other objects."""
    names = getattr(dataset, "column_names", None)
    if names is None:
        features = getattr(dataset, "features", None)
        if isinstance(features, Mapping):
            names = list(features)
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        return None
    for column in _HF_LABEL_COLUMNS:
        if column in names:
            return column
    fail(
        path,
        f"a label column named one of {list(_HF_LABEL_COLUMNS)}",
        _Raw(f"columns {list(names)}"),
        "Rename your class column (dataset.rename_column('coarse_label', 'label')) or pass "
        "label_fn=",
    )


def _from_sequence(items: list[Any] | tuple[Any, ...], path: str) -> np.ndarray:
    """A list is a label vector, or an in-memory dataset of ``(x, y)``/dict items."""
    if len(items) == 0 or not isinstance(items[0], tuple | list | Mapping):
        return _vector(items, path)
    labels: list[Any] = []
    for i, item in enumerate(items):
        try:
            labels.append(_scalar_label(_label_of_item(item)))
        except _LabelProblem as problem:
            problem.throw(path, f"at index {i}")
    return _vector(labels, path)


def _subset_indices(indices: Any, size: int, name: str) -> np.ndarray:
    """Subset indices as a numpy integer array, checked against the parent's length."""
    if isinstance(indices, torch.Tensor):
        array = indices.detach().cpu().numpy()
    elif isinstance(indices, range):
        array = np.arange(indices.start, indices.stop, indices.step, dtype=np.int64)
    else:
        array = np.asarray(indices)
    if array.size == 0:
        return np.empty(0, dtype=np.int64)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        fail(
            name,
            "a 1-D sequence of integer indices",
            _Raw(f"{array.dtype} values of shape {array.shape}"),
            kind=TypeError,
        )
    low, high = int(array.min()), int(array.max())
    if low < -size or high >= size:
        position = int(np.flatnonzero((array < -size) | (array >= size))[0])
        fail(
            name,
            f"indices in [{-size}, {size}) (the parent dataset has {size} samples)",
            _Raw(f"index {int(array[position])} at position {position}"),
        )
    return array


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts)


class _Reading:
    """One call of get_labels: its options and a cache of what each (sub)dataset gave."""

    def __init__(self, num_workers: int, progress: bool) -> None:
        self.num_workers = num_workers
        self.progress = progress
        self.cache: dict[int, tuple[Any, np.ndarray | None]] = {}

    def fast(self, dataset: Any, path: str) -> np.ndarray | None:
        """The labels without touching a sample, or None when a scan would be needed."""
        key = id(dataset)
        if key not in self.cache:
            self.cache[key] = (dataset, self._fast(dataset, path))
        return self.cache[key][1]

    def _fast(self, dataset: Any, path: str) -> np.ndarray | None:
        if isinstance(dataset, np.ndarray | torch.Tensor):
            return _vector(dataset, path)
        if isinstance(dataset, list | tuple):
            return _from_sequence(dataset, path)
        if isinstance(dataset, Subset):
            base = self.fast(dataset.dataset, f"{path}.dataset")
            if base is None:
                return None
            return base[_subset_indices(dataset.indices, base.shape[0], f"{path}.indices")]
        if isinstance(dataset, ConcatDataset):
            parts = [
                self.fast(part, f"{path}.datasets[{k}]") for k, part in enumerate(dataset.datasets)
            ]
            if any(part is None for part in parts):
                return None
            return _concat([part for part in parts if part is not None])
        if isinstance(dataset, TensorDataset):
            return _vector(dataset.tensors[-1], f"{path}.tensors[-1]")
        reader = _torchvision_reader(dataset)
        if reader is not None:
            return _read_with(dataset, path, reader)
        if type(dataset).__module__.startswith("torchvision."):
            # Other torchvision datasets (VOC, Kitti, Cityscapes, CelebA, ...) keep file paths
            # or annotations in .targets, not class labels.
            return None
        column = _hf_label_column(dataset, path)
        if column is not None:
            vector = _vector(dataset[column], f"{path}[{column!r}]")
            _check_length(dataset, vector, f"{path}[{column!r}]")
            return vector
        for attribute in ("targets", "labels"):
            values = getattr(dataset, attribute, None)
            if values is not None and not callable(values):
                return _read_with(dataset, path, _attr(attribute))
        return None

    def read(self, dataset: Any, path: str, depth: int) -> np.ndarray:
        """The labels, scanning the parts that have no fast reader."""
        labels = self.fast(dataset, path)
        if labels is not None:
            return labels
        if isinstance(dataset, ConcatDataset):
            return _concat(
                [
                    self.read(part, f"{path}.datasets[{k}]", depth + 1)
                    for k, part in enumerate(dataset.datasets)
                ]
            )
        _check_map_style(dataset, path)
        return self.scan(dataset, path, depth + 1)

    def scan(self, dataset: Any, path: str, depth: int) -> np.ndarray:
        """Read every item once through a DataLoader whose collate_fn keeps the label only."""
        size = len(dataset)
        warnings.warn(
            f"get_labels: no label attribute known for {type(dataset).__name__} ({path}), so "
            f"all {size} samples are read once through a DataLoader "
            f"(num_workers={self.num_workers}), which loads every sample. To skip this scan, "
            f"{_AVOID_SCAN}.",
            UserWarning,
            stacklevel=depth + 2,
        )
        loader = DataLoader(
            dataset,
            batch_size=_SCAN_BATCH_SIZE,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_collate_labels,
        )
        labels: list[Any] = []
        with tqdm(
            total=size, desc="get_labels: scanning", unit="sample", disable=not self.progress
        ) as bar:
            for batch in loader:
                for value in batch:
                    if isinstance(value, _LabelProblem):
                        value.throw(path, f"at index {len(labels)}")
                    labels.append(value)
                bar.update(len(batch))
        return _vector(labels, path)


def _check_map_style(dataset: Any, path: str) -> None:
    if isinstance(dataset, IterableDataset):
        fail(
            path,
            "a map-style dataset (with __getitem__ and __len__)",
            _Raw(f"an IterableDataset ({type(dataset).__name__})"),
            "An iterable dataset cannot be indexed by a sampler; pass its labels directly",
            kind=TypeError,
        )
    if (
        isinstance(dataset, str | bytes | Mapping)
        or not hasattr(dataset, "__getitem__")
        or _dataset_length(dataset) is None
    ):
        fail(
            path,
            "a dataset (an object with __getitem__ and __len__, or with .targets) or a label "
            "vector",
            _Raw(f"a {type(dataset).__name__}"),
            "For a Hugging Face DatasetDict pick one split (dataset['train'])"
            if isinstance(dataset, Mapping)
            else None,
            kind=TypeError,
        )


def _from_label_fn(dataset: Any, label_fn: Callable[[Any, int], Any], progress: bool) -> np.ndarray:
    size = _dataset_length(dataset)
    if size is None:
        fail(
            "dataset",
            "a dataset with __len__ (label_fn is called for i in range(len(dataset)))",
            _Raw(f"a {type(dataset).__name__}"),
            kind=TypeError,
        )
    labels: list[Any] = []
    for i in tqdm(range(size), desc="get_labels: label_fn", unit="sample", disable=not progress):
        try:
            value = label_fn(dataset, i)
        except Exception as error:
            fail(
                "label_fn",
                "a function (dataset, i) -> label that works for every index",
                _Raw(f"{type(error).__name__}: {error} at index {i}"),
            )
        try:
            labels.append(_scalar_label(value))
        except _LabelProblem as problem:
            problem.throw("label_fn", f"returned at index {i}")
    return _vector(labels, "label_fn")


def get_labels(
    dataset: Any,
    *,
    label_fn: Callable[[Any, int], Any] | None = None,
    num_workers: int = 0,
    progress: bool = True,
    multilabel: bool = False,
) -> np.ndarray:
    """Return the class label of every sample of ``dataset`` as a 1-D numpy array.

    Labels are read from where the dataset keeps them in memory, without calling
    ``dataset[i]`` (so no image is decoded), for: every torchvision classification dataset
    (the MNIST family, USPS, SEMEION, CIFAR10/100, SVHN, STL10, ``ImageFolder`` /
    ``DatasetFolder`` and their subclasses such as ImageNet, EuroSAT and Country211,
    Flowers102, Food101, DTD, FGVCAircraft, OxfordIIITPet, StanfordCars, GTSRB, Caltech101,
    Caltech256, SUN397, Places365, LFWPeople/LFWPairs, INaturalist, FER2013, Imagenette,
    RenderedSST2, CLEVRClassification, Omniglot); ``Subset`` (also from ``random_split``,
    nested: indices are mapped with one numpy gather); ``ConcatDataset``; ``TensorDataset``
    (its last tensor); Hugging Face-style datasets (the first of the columns ``label``,
    ``labels``, ``fine_label``, ``target``; ``coarse_label`` is never picked on its own);
    any object with a ``.targets`` or ``.labels`` list, array or tensor (``.targets`` first);
    ``ResampledDataset`` (its ``.labels``: the current epoch); and label vectors (a numpy
    array, a tensor, or a list of labels; a list of ``(x, y)`` items gives its ``y``).

    Where a torchvision dataset (or any object read through ``.targets``/``.labels``) has a
    ``target_transform``, it is applied to the labels, since that is what ``dataset[i]``
    returns. It is called once per distinct label (it must be a pure function of the
    label) and must return a scalar label. A joint ``transforms=`` (Places365,
    OxfordIIITPet) is assumed to leave the class label unchanged. Where ``target_type`` lists
    several targets (Caltech101, INaturalist, OxfordIIITPet), the label is the first
    class-valued one. QMNIST's label is column 0 of its ``targets``.

    Anything else is read once through a ``DataLoader`` (``num_workers`` workers, a tqdm bar
    when ``progress``) whose ``collate_fn`` keeps only the label, with a ``UserWarning``: the
    label of an item is its last element (``(x, y)``), its ``label``/``labels``/``target``
    key (dicts), or the item itself (a scalar). In a ``Subset`` or ``ConcatDataset`` only
    the parts without a fast reader are scanned.

    Args:
        dataset: A map-style dataset or a label vector.
        label_fn: ``label_fn(dataset, i) -> label``, called for every index instead of any
            reader (a cheap way to read labels the readers do not know).
        num_workers: DataLoader workers for the scan.
        progress: Show a tqdm bar during a scan or ``label_fn`` loop.
        multilabel: Return, instead, one collection of category ids per sample, from
            :func:`torch_balance.multilabel.get_labelsets`.

    Returns:
        A 1-D ``numpy.ndarray`` with one label per sample: ``int64`` for integer labels,
        ``object`` holding the labels as given for strings.

    Raises:
        TypeError: For an object that is not a dataset, an ``IterableDataset``, float or
            NaN labels, or a bad argument.
        ValueError: For an empty dataset, a label attribute whose length differs from the
            dataset's, a label that is not a scalar or is missing (``None``, STL10's -1),
            Subset indices out of range, or a ``label_fn``/``target_transform`` that raises
            (the message names the index or label and the original error).

    Example:
        >>> from torch.utils.data import ConcatDataset, Subset, TensorDataset
        >>> ds = TensorDataset(torch.zeros(4, 2), torch.tensor([0, 1, 1, 2]))
        >>> get_labels(Subset(ds, [3, 0])).tolist()
        [2, 0]
        >>> get_labels(ConcatDataset([ds, ds])).tolist()
        [0, 1, 1, 2, 0, 1, 1, 2]
        >>> get_labels(ds, label_fn=lambda d, i: "odd" if i % 2 else "even").tolist()
        ['even', 'odd', 'even', 'odd']
    """
    check_bool("progress", progress)
    check_bool("multilabel", multilabel)
    num_workers = check_int("num_workers", num_workers, minimum=0)
    if label_fn is not None and not callable(label_fn):
        fail("label_fn", "a callable (dataset, i) -> label, or None", label_fn, kind=TypeError)
    if multilabel:
        from torch_balance.multilabel import get_labelsets

        labelsets: Any = get_labelsets(
            dataset, label_fn=label_fn, num_workers=num_workers, progress=progress
        )
        return labelsets
    if isinstance(dataset, str | bytes):
        fail(
            "dataset",
            "a dataset or a label vector",
            _Raw(f"a {type(dataset).__name__}"),
            kind=TypeError,
        )
    size = _dataset_length(dataset)
    if size == 0:
        fail("dataset", "at least one sample", _Raw(f"an empty {type(dataset).__name__}"))
    if label_fn is not None:
        labels = _from_label_fn(dataset, label_fn, progress)
    else:
        labels = _Reading(num_workers, progress).read(dataset, "dataset", 1)
    if labels.shape[0] == 0:
        fail("dataset", "at least one sample", _Raw(f"an empty {type(dataset).__name__}"))
    missing = _missing(labels)
    if missing is not None:
        fail(
            "dataset",
            "a class label for every sample",
            _Raw(f"no label at index {int(np.flatnonzero(missing)[0])}"),
            _UNLABELED_FIX,
        )
    return as_label_array(labels, "dataset")
