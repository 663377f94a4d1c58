"""Read the labels of a dataset without decoding its samples: :func:`get_labels` (one class
label per sample) and :func:`get_labelsets` (one set of category ids per sample).

Both walk a dataset the same way: label vectors, ``Subset`` (also from ``random_split``,
nested), ``ConcatDataset``, ``TensorDataset``, the torchvision tables of
:mod:`torch_balance.labels.torchvision`, Hugging Face-style label columns, label attributes
(``.targets``, ``.labels``, ``.labelsets``), ``label_fn``, and, for anything else, one scan
through a ``DataLoader`` that keeps the label of each item. What differs between the two is
a :class:`Kind`: what one label is, and where a dataset keeps it.

Beside it: the scan (:mod:`~torch_balance.labels.scan`), and the opening every sampler
shares, labels given or a dataset to read (:mod:`~torch_balance.labels.resolve`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    ConcatDataset,
    IterableDataset,
    Subset,
    TensorDataset,
)

from torch_balance._validation import Text, check_bool, check_int, fail
from torch_balance.labels.check import is_label_data
from torch_balance.labels.kinds import (
    MULTI,
    SINGLE,
    UNLABELED_FIX,
    Kind,
    LabelProblem,
    as_labelsets,
    missing_labels,
    transformed,
)
from torch_balance.labels.scan import ScanView, read_item, scan
from torch_balance.labels.torchvision import Reader, attribute_reader, reader_for

__all__ = ["as_labelsets", "get_labels", "get_labelsets"]


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
            Text(f"{vector.shape[0]} labels"),
            "Keep the label attribute in step with the samples (rebuild it after filtering), "
            "or pass label_fn=",
        )


def _hf_label_column(dataset: Any, path: str, columns: tuple[str, ...]) -> str | None:
    """The label column of a Hugging Face-style dataset, or None for other objects."""
    if not columns:
        return None
    names = getattr(dataset, "column_names", None)
    if names is None:
        features = getattr(dataset, "features", None)
        if isinstance(features, Mapping):
            names = list(features)
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        return None
    for column in columns:
        if column in names:
            return column
    fail(
        path,
        f"a label column named one of {list(columns)}",
        Text(f"columns {list(names)}"),
        "Rename your class column (dataset.rename_column('coarse_label', 'label')) or pass "
        "label_fn=",
    )


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
            Text(f"{array.dtype} values of shape {array.shape}"),
            kind=TypeError,
        )
    low, high = int(array.min()), int(array.max())
    if low < -size or high >= size:
        position = int(np.flatnonzero((array < -size) | (array >= size))[0])
        fail(
            name,
            f"indices in [{-size}, {size}) (the parent dataset has {size} samples)",
            Text(f"index {int(array[position])} at position {position}"),
        )
    return array


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts)


def _is_stream(dataset: Any) -> bool:
    """A torch ``IterableDataset`` or a Hugging Face streaming dataset (told by its type alone)."""
    if isinstance(dataset, IterableDataset):
        return True
    cls = type(dataset)
    return cls.__name__ == "IterableDataset" and cls.__module__.split(".")[0] == "datasets"


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__name__}"


def _refuse_stream(dataset: Any, path: str) -> None:
    """Refuse a stream before touching it: reading its labels would read all of it."""
    if _is_stream(dataset):
        fail(
            path,
            "a map-style dataset (with __getitem__ and __len__) or a label vector",
            Text(f"a stream, an IterableDataset ({_qualified(type(dataset))})"),
            "A sampler indexes samples, which a stream cannot do, and reading a stream's labels "
            "would read (for a remote one, download) all of it. Load it map-style "
            "(datasets.load_dataset(..., streaming=False)), or pass the labels directly",
            kind=TypeError,
        )


def _check_map_style(dataset: Any, path: str) -> None:
    if isinstance(dataset, IterableDataset):
        fail(
            path,
            "a map-style dataset (with __getitem__ and __len__)",
            Text(f"an IterableDataset ({type(dataset).__name__})"),
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
            Text(f"a {type(dataset).__name__}"),
            "For a Hugging Face DatasetDict pick one split (dataset['train'])"
            if isinstance(dataset, Mapping)
            else None,
            kind=TypeError,
        )


class _Reading:
    """One call of get_labels or get_labelsets: its options and what each part gave."""

    def __init__(self, kind: Kind, num_workers: int, progress: bool) -> None:
        self.kind = kind
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
        kind = self.kind
        _refuse_stream(dataset, path)
        if isinstance(dataset, list | tuple) and not is_label_data(
            dataset, label_sets=kind.multilabel
        ):
            return self._items(dataset, path)
        if is_label_data(dataset):
            return kind.vector(dataset, path)
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
            return kind.vector(dataset.tensors[-1], f"{path}.tensors[-1]")
        reader = reader_for(dataset, kind.multilabel)
        if reader is not None:
            return self._read_with(dataset, path, reader)
        column = _hf_label_column(dataset, path, kind.hf_columns)
        if column is not None:
            vector = kind.vector(dataset[column], f"{path}[{column!r}]")
            _check_length(dataset, vector, f"{path}[{column!r}]")
            return vector
        for attribute in kind.attributes:
            values = getattr(dataset, attribute, None)
            if values is not None and not callable(values):
                return self._read_with(dataset, path, attribute_reader(attribute))
        return None

    def _items(self, items: list[Any] | tuple[Any, ...], path: str) -> np.ndarray:
        """An in-memory dataset of ``(x, y)`` or dict items."""
        labels: list[Any] = []
        for i, item in enumerate(items):
            try:
                labels.append(self.kind.of_item(item))
            except LabelProblem as problem:
                problem.throw(path, f"at index {i}")
        return self.kind.vector(labels, path)

    def _read_with(self, dataset: Any, path: str, reader: Reader) -> np.ndarray | None:
        values, attribute, transformable = reader(dataset, path, self.progress)
        if values is None:
            return None
        vector = self.kind.vector(values, f"{path}.{attribute}")
        _check_length(dataset, vector, f"{path}.{attribute}")
        # A target_transform maps one class label; it does not apply to a set of categories.
        transform = getattr(dataset, "target_transform", None) if transformable else None
        if transform is not None and not self.kind.multilabel:
            vector = transformed(vector, transform, f"{path}.target_transform")
        return vector

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
        size = len(dataset)
        warnings.warn(
            f"{self.kind.function}: no label attribute known for {type(dataset).__name__} "
            f"({path}), so all {size} samples are read once through a DataLoader "
            f"(num_workers={self.num_workers}), which loads every sample; "
            f"{self.kind.item_rule}. To skip this scan, "
            f"{self.kind.avoid_scan}.",
            UserWarning,
            stacklevel=depth + 2,
        )
        view = ScanView(dataset, read_item, self.kind.of_item, None)
        return scan(view, self.kind, path, self.num_workers, self.progress, "scanning")


def _check_options(kind: Kind, label_fn: Any, num_workers: Any, progress: Any) -> int:
    check_bool("progress", progress)
    workers = int(check_int("num_workers", num_workers, minimum=0))
    if label_fn is not None and not callable(label_fn):
        fail(
            "label_fn", f"a callable (dataset, i) -> {kind.what}, or None", label_fn, kind=TypeError
        )
    return workers


def _read(
    dataset: Any,
    kind: Kind,
    label_fn: Callable[[Any, int], Any] | None,
    num_workers: int,
    progress: bool,
) -> np.ndarray:
    """The labels of ``dataset``: what get_labels and get_labelsets share past their options."""
    if isinstance(dataset, str | bytes):
        fail(
            "dataset",
            "a dataset or a label vector",
            Text(f"a {type(dataset).__name__}"),
            kind=TypeError,
        )
    _refuse_stream(dataset, "dataset")
    if isinstance(dataset, np.ndarray | torch.Tensor) and dataset.ndim == 0:
        fail(
            "dataset",
            "a dataset or a 1-D label vector",
            Text(f"a 0-d {type(dataset).__name__} ({dataset.item()!r})"),
            "Pass one label per sample",
            kind=TypeError,
        )
    size = _dataset_length(dataset)
    if size == 0:
        fail("dataset", "at least one sample", Text(f"an empty {type(dataset).__name__}"))
    if label_fn is not None:
        if size is None:
            fail(
                "dataset",
                "a dataset with __len__ (label_fn is called for i in range(len(dataset)))",
                Text(f"a {type(dataset).__name__}"),
                kind=TypeError,
            )
        expected = f"a function (dataset, i) -> {kind.what} that works for every index"
        view = ScanView(dataset, label_fn, kind.of_value, expected)
        labels = scan(view, kind, "label_fn", num_workers, progress, "label_fn")
    else:
        labels = _Reading(kind, num_workers, progress).read(dataset, "dataset", 2)
    if labels.shape[0] == 0:
        fail("dataset", "at least one sample", Text(f"an empty {type(dataset).__name__}"))
    missing = missing_labels(labels)
    if missing is not None:
        fail(
            "dataset",
            "a class label for every sample",
            Text(f"no label at index {int(np.flatnonzero(missing)[0])}"),
            UNLABELED_FIX,
        )
    return kind.final(labels, "dataset")


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
            reader (a cheap way to read labels the readers do not know), in this process.
        num_workers: DataLoader workers for the scan.
        progress: Show a tqdm bar during a scan or ``label_fn`` loop.
        multilabel: Return, instead, one collection of category ids per sample, from
            :func:`get_labelsets`.

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
    check_bool("multilabel", multilabel)
    num_workers = _check_options(SINGLE, label_fn, num_workers, progress)
    if multilabel:
        return get_labelsets(dataset, label_fn=label_fn, num_workers=num_workers, progress=progress)
    # get_labels has always called label_fn in this process (get_labelsets uses the workers)
    workers = 0 if label_fn is not None else num_workers
    return _read(dataset, SINGLE, label_fn, workers, progress)


def get_labelsets(
    dataset: Any,
    *,
    label_fn: Callable[[Any, int], Iterable[Any]] | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """Return the categories of every sample as sorted tuples, without decoding images.

    An image without annotations gets ``()``. The readers, none of which decodes an image:

    =======================================  ===============================================
    dataset                                  where the categories come from
    =======================================  ===============================================
    ``torchvision.datasets.CocoDetection``   its COCO index (``coco.imgToAnns``), in ``ids``
                                             order
    ``torchvision.datasets.VOCDetection``    the annotation XML files only (object ``name``)
    ``torchvision.datasets.CelebA``          its ``attr`` table: attributes set to 1, as ints
    ``Subset`` / ``ConcatDataset``           their parts, read the same way
    ``.labelsets`` or ``.targets``           a per-sample list of category ids (or a
                                             multi-hot matrix)
    ``label_fn(dataset, i)``                 whatever it returns (any iterable of ids)
    anything else                            one scan of ``dataset[i][1]`` with a warning
    =======================================  ===============================================

    Args:
        dataset: A dataset, or per-sample category collections given directly.
        label_fn: ``label_fn(dataset, i) -> iterable of category ids``; used instead of the
            readers.
        num_workers: DataLoader workers for ``label_fn`` and the fallback scan.
        progress: Show a progress bar for reads that take one step per sample.

    Returns:
        A 1-D ``numpy`` object array with one tuple of sorted distinct ids per sample.

    Raises:
        TypeError: For ids that are floats or ``None``, or of mixed kinds.
        ValueError: For an empty dataset, Subset indices out of range, or a ``label_fn``
            that raises (naming the index).

    Example:
        >>> class Tagged(torch.utils.data.Dataset):
        ...     labelsets = [["dog", "cat"], [], ["cat"]]
        ...     def __len__(self):
        ...         return 3
        >>> get_labelsets(Tagged()).tolist()
        [('cat', 'dog'), (), ('cat',)]
        >>> get_labelsets(Tagged(), label_fn=lambda ds, i: [i, 0]).tolist()
        [(0,), (0, 1), (0, 2)]
    """
    num_workers = _check_options(MULTI, label_fn, num_workers, progress)
    return _read(dataset, MULTI, label_fn, num_workers, progress)
