"""Multi-label and detection labels: one set of category ids per image, read without images.

:func:`get_labelsets` reads, for every sample, the sorted tuple of distinct categories it holds
(an empty tuple for an image with no annotation). :class:`MultiLabelIndex` keeps those sets in
compressed sparse rows (one flat array of category codes and one array of row offsets), which
is what :class:`~torch_balance.samplers.RepeatFactorSampler` works from: no Python object per
image once the sets are indexed.

Readers that never decode an image:

=======================================  ====================================================
dataset                                  where the categories come from
=======================================  ====================================================
``torchvision.datasets.CocoDetection``   its COCO index (``coco.imgToAnns``), in ``ids`` order
``torchvision.datasets.VOCDetection``    the annotation XML files only (object ``name``)
``torchvision.datasets.CelebA``          its ``attr`` table: attributes set to 1, as ints
``Subset`` / ``ConcatDataset``           their parts, read the same way
``.labelsets`` or ``.targets``           a per-sample list of category ids (or a multi-hot
                                         matrix)
``label_fn(dataset, i)``                 whatever it returns (any iterable of ids)
anything else                            one scan of ``dataset[i][1]`` with a warning
=======================================  ====================================================
"""

from __future__ import annotations

import hashlib
import numbers
import sys
import warnings
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, pairwise
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from torch_balance._validation import check_bool, check_int, fail

__all__ = ["MultiLabelIndex", "as_labelsets", "get_labelsets", "resolve_labelsets"]

_CONTAINERS = (tuple, list, set, frozenset, range)


class _Raw:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


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
            fail(name, "one collection of category ids per sample", _Raw(f"an array at {i}"))
        if value.dtype.kind not in "iuUSO":
            fail(
                name,
                "integer or string category ids",
                _Raw(f"{value.dtype} values at index {i}"),
                "Cast whole-number ids with .astype(int); for a multi-hot row pass the whole "
                "2-D matrix instead",
                kind=TypeError,
            )
        value = value.tolist() if value.ndim else [value.item()]
    if not isinstance(value, _CONTAINERS):
        fail(
            name,
            "a collection of category ids (tuple, list, set, array) or one id per sample",
            _Raw(f"{type(value).__name__} {value!r:.40} at index {i}"),
            "Use an empty tuple for an image without annotations",
            kind=TypeError,
        )
    items = tuple(value)
    for item in items:
        if not _is_scalar_id(item):
            fail(
                name,
                "integer or string category ids",
                _Raw(f"{item!r:.40} in the set at index {i}"),
                kind=TypeError,
            )
    return items


def _encode(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct categories, code per value)."""
    if values.dtype.kind in "iu" and values.shape[0]:
        low, high = int(values.min()), int(values.max())
        span = high - low + 1
        if span <= max(1 << 20, 4 * values.shape[0]):
            shifted = values - low
            present = np.flatnonzero(np.bincount(shifted, minlength=span))
            lut = np.zeros(span, dtype=np.int32)
            lut[present] = np.arange(present.shape[0], dtype=np.int32)
            return (present + low).astype(np.int64), lut[shifted]
    try:
        categories, codes = np.unique(values, return_inverse=True)
    except TypeError as error:
        fail(
            "labelsets",
            "category ids of one sortable kind (all integers or all strings)",
            _Raw(f"a mix that cannot be sorted ({error})"),
            kind=TypeError,
        )
    return categories, codes.reshape(-1).astype(np.int32)


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
                flat = np.asarray(flat_list, dtype=np.int64)
            return flat, lengths
    sets = [_one_set(value, i, name) for i, value in enumerate(values)]
    lengths = np.fromiter(map(len, sets), dtype=np.int64, count=n)
    flat_list = list(chain.from_iterable(sets))
    if flat_list and all(isinstance(v, numbers.Integral) for v in flat_list):
        return np.asarray([int(v) for v in flat_list], dtype=np.int64), lengths
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
        labelsets: Anything :func:`as_labelsets` accepts: a sequence or object array with one
            collection of category ids per image (an empty one for an image without
            annotations), a 1-D vector of single labels, or a 2-D multi-hot matrix.

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
                    _Raw(f"{array.dtype} values"),
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
            fail("values", "a 1-D array of integer or string category ids", _Raw(str(flat.dtype)))
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
                _Raw(f"an array of {offs.shape[0]} offsets"),
            )
        index = cls.__new__(cls)
        index._build(flat.astype(object) if flat.dtype.kind == "U" else flat, offs, "values")
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
                    _Raw(f"a {matrix.dtype} matrix with other values"),
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
        categories, codes = _encode(flat)
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
            codes = (keys - rows * width).astype(np.int32)
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
        self.categories = categories
        self.codes = codes.astype(np.int32, copy=False)
        self.offsets = offsets.astype(np.int64, copy=False)
        self.counts = np.bincount(self.codes, minlength=categories.shape[0]).astype(np.int64)
        self._fingerprint = None

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def num_categories(self) -> int:
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
            digest = hashlib.blake2b(digest_size=16)
            digest.update(repr(self.keys()).encode())
            digest.update(self.codes.tobytes())
            digest.update(self.offsets.tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def __repr__(self) -> str:
        return (
            f"MultiLabelIndex(images={len(self)}, categories={self.num_categories}, "
            f"pairs={self.codes.shape[0]})"
        )


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


def resolve_labelsets(
    dataset_or_labelsets: Any, label_fn: Callable[[Any, int], Iterable[Any]] | None = None
) -> MultiLabelIndex:
    """Index the category sets of a dataset, or of label sets given directly."""
    if isinstance(dataset_or_labelsets, MultiLabelIndex):
        return dataset_or_labelsets
    if label_fn is None and isinstance(
        dataset_or_labelsets, np.ndarray | torch.Tensor | list | tuple
    ):
        return MultiLabelIndex(dataset_or_labelsets, "dataset_or_labelsets")
    return MultiLabelIndex(get_labelsets(dataset_or_labelsets, label_fn=label_fn, progress=False))


# -- readers -------------------------------------------------------------------------------


class _Scan(Dataset):
    """``dataset`` seen through ``read(dataset, i)``, for a DataLoader over label reads."""

    def __init__(self, dataset: Any, read: Callable[[Any, int], Any], what: str) -> None:
        self.dataset = dataset
        self.read = read
        self.what = what

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        try:
            value = self.read(self.dataset, i)
        except Exception as error:
            raise ValueError(
                f"{self.what}: expected an iterable of category ids, got "
                f"{type(error).__name__}: {error} at index {i}"
            ) from error
        return _one_set(value, i, self.what)


def _identity(batch: list[Any]) -> list[Any]:
    return batch


def _scan(
    dataset: Any,
    read: Callable[[Any, int], Any],
    what: str,
    num_workers: int,
    progress: bool,
) -> np.ndarray:
    from tqdm.auto import tqdm

    view = _Scan(dataset, read, what)
    n = len(view)
    out = np.empty(n, dtype=object)
    if num_workers == 0:
        with tqdm(total=n, disable=not progress, desc="label sets", unit="img") as bar:
            for i in range(n):
                out[i] = view[i]
                bar.update(1)
        return out
    loader = DataLoader(view, batch_size=256, num_workers=num_workers, collate_fn=_identity)
    position = 0
    with tqdm(total=n, disable=not progress, desc="label sets", unit="img") as bar:
        for batch in loader:
            for item in batch:
                out[position] = item
                position += 1
            bar.update(len(batch))
    return out


def _target_ids(dataset: Any, i: int) -> Any:
    """Category ids from the target of ``dataset[i]`` (the fallback scan)."""
    item = dataset[i]
    target = item[1] if isinstance(item, tuple | list) and len(item) >= 2 else item
    if isinstance(target, dict):
        if "labels" in target:
            return target["labels"]
        if "annotation" in target:  # VOC's parsed XML
            objects = target["annotation"].get("object", [])
            objects = objects if isinstance(objects, list) else [objects]
            return [obj["name"] for obj in objects]
    if isinstance(target, list) and target and isinstance(target[0], dict):
        return [annotation["category_id"] for annotation in target]
    if isinstance(target, torch.Tensor) and target.dtype == torch.bool:
        return torch.nonzero(target).reshape(-1)
    return target


def _coco_sets(dataset: Any) -> np.ndarray:
    coco = dataset.coco
    index = getattr(coco, "imgToAnns", None)
    out = np.empty(len(dataset.ids), dtype=object)
    for position, image_id in enumerate(dataset.ids):
        if index is not None:
            annotations = index.get(image_id, ())
        else:
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        try:
            out[position] = tuple(sorted({int(a["category_id"]) for a in annotations}))
        except KeyError:
            fail(
                "dataset",
                "COCO annotations with a 'category_id' (CocoDetection, instances_*.json)",
                _Raw(f"an annotation without one for image id {image_id}"),
                "Captions files have no categories; pass label_fn for other annotation files",
            )
    return out


def _voc_sets(dataset: Any, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    paths = list(dataset.annotations)
    out = np.empty(len(paths), dtype=object)
    for position, path in enumerate(tqdm(paths, disable=not progress, desc="VOC XML")):
        try:
            root = ElementTree.parse(path).getroot()
        except (OSError, ElementTree.ParseError) as error:
            fail(
                "dataset",
                "readable VOC annotation XML files",
                _Raw(f"{type(error).__name__}: {error} at index {position} ({path})"),
            )
        names = {(obj.findtext("name") or "").strip() for obj in root.iter("object")}
        names.discard("")
        out[position] = tuple(sorted(names))
    return out


def _read(dataset: Any, num_workers: int, progress: bool) -> np.ndarray:
    """Category sets of ``dataset`` (not called for plain label containers)."""
    # a torchvision dataset object exists only once torchvision.datasets has been imported,
    # so there is no need to pay for that import here
    tvd: Any = sys.modules.get("torchvision.datasets")
    inner = getattr(dataset, "_dataset", None)
    if type(dataset).__name__ == "VisionDatasetTVTensorWrapper" and inner is not None:
        return _read(inner, num_workers, progress)
    if isinstance(dataset, Subset):
        parent = _read(dataset.dataset, num_workers, progress)
        picked = np.empty(len(dataset.indices), dtype=object)
        picked[:] = [parent[int(i)] for i in dataset.indices]
        return picked
    if isinstance(dataset, ConcatDataset):
        parts = [_read(part, num_workers, progress) for part in dataset.datasets]
        return np.concatenate(parts) if parts else np.empty(0, dtype=object)
    if tvd is not None:
        if isinstance(dataset, tvd.CocoDetection) and hasattr(dataset, "coco"):
            return _coco_sets(dataset)
        if isinstance(dataset, tvd.VOCDetection):
            return _voc_sets(dataset, progress)
        if isinstance(dataset, tvd.CelebA) and hasattr(dataset, "attr"):
            attr = torch.as_tensor(dataset.attr) > 0
            return MultiLabelIndex(attr, "CelebA.attr").labelsets()
    for attribute in ("labelsets", "targets"):
        values = getattr(dataset, attribute, None)
        if values is not None and not callable(values):
            return as_labelsets(values, f"{type(dataset).__name__}.{attribute}")
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return as_labelsets(dataset.tensors[-1], "TensorDataset.tensors[-1]")
    warnings.warn(
        f"get_labelsets: no reader for {type(dataset).__name__}, so every sample is loaded once "
        "(images included) to read its target. Pass label_fn=lambda ds, i: ... or give the "
        "dataset a .labelsets attribute to avoid this scan",
        UserWarning,
        stacklevel=3,
    )
    return _scan(dataset, _target_ids, "dataset[i] target", num_workers, progress)


def get_labelsets(
    dataset: Any,
    *,
    label_fn: Callable[[Any, int], Iterable[Any]] | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """Return the categories of every sample as sorted tuples, without decoding images.

    See the module table for the readers. An image without annotations gets ``()``.

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
        ValueError: For an empty dataset, or a ``label_fn`` that raises (naming the index).

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
    check_int("num_workers", num_workers, minimum=0)
    check_bool("progress", progress)
    if label_fn is not None and not callable(label_fn):
        fail("label_fn", "a callable label_fn(dataset, i)", label_fn, kind=TypeError)
    if label_fn is None and isinstance(dataset, np.ndarray | torch.Tensor | list | tuple):
        return as_labelsets(dataset)
    try:
        n = len(dataset)
    except TypeError:
        fail("dataset", "a map-style dataset with a length", type(dataset).__name__, kind=TypeError)
    if n == 0:
        fail("dataset", "at least one sample", "an empty dataset")
    if label_fn is not None:
        return as_labelsets(_scan(dataset, label_fn, "label_fn", num_workers, progress), "label_fn")
    sets = _read(dataset, num_workers, progress)
    return as_labelsets(sets, "dataset")
