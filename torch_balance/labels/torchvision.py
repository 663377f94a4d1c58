"""The torchvision reader tables: where each torchvision dataset keeps its labels in memory.

:func:`reader_for` picks the reader of a dataset for single-label data (the classification
datasets: MNIST, CIFAR, ``ImageFolder``, Flowers102, ...) or for multi-label data
(``CocoDetection``, ``VOCDetection``, ``CelebA``). A reader never calls ``dataset[i]``: it
returns ``(values, attribute, transformable)``, the labels, where they came from (for error
messages) and whether the dataset's ``target_transform`` applies to them.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from torch_balance._progress import progress_bar
from torch_balance._validation import Text, fail

__all__ = ["SINGLE_LABEL_READERS", "Reader", "attribute_reader", "reader_for"]

Reader = Callable[[Any, str, bool], tuple[Any, str, bool]]
"""``reader(dataset, path, progress) -> (values, attribute, transformable)``; ``values`` is
``None`` where the labels cannot be read without loading the samples."""


def attribute_reader(attribute: str) -> Reader:
    """The reader of labels kept in ``dataset.<attribute>`` (``target_transform`` applies).

    Example:
        >>> class Digits:
        ...     targets = [3, 1]
        >>> attribute_reader("targets")(Digits(), "dataset", False)
        ([3, 1], 'targets', True)
    """

    def read(dataset: Any, path: str, progress: bool) -> tuple[Any, str, bool]:
        return getattr(dataset, attribute), attribute, True

    return read


def _pairs(attribute: str) -> Reader:
    """Reader for a list of ``(file or data, label)`` pairs."""

    def read(dataset: Any, path: str, progress: bool) -> tuple[Any, str, bool]:
        return [pair[1] for pair in getattr(dataset, attribute)], f"{attribute}[i][1]", True

    return read


def _no_labels(dataset: Any, path: str, progress: bool) -> tuple[Any, str, bool]:
    """Other torchvision datasets (VOC, Kitti, Cityscapes, CelebA, ...) keep file paths or
    annotations in ``.targets``, not class labels: only a scan reads them."""
    return None, "", False


def _target_types(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _refuse_tuple_transform(dataset: Any, path: str, types: list[str], argument: str) -> None:
    """With several target types, target_transform gets a tuple we cannot build cheaply."""
    if len(types) > 1 and getattr(dataset, "target_transform", None) is not None:
        fail(
            f"{path}.target_transform",
            "a target_transform that get_labels can apply to the class label alone",
            Text(f"one applied to the tuple of {argument}={types}"),
            "Use a single target type, or pass label_fn=lambda dataset, i: <class of sample i>",
        )


def _qmnist(dataset: Any, path: str, progress: bool) -> tuple[Any, str, bool]:
    targets = dataset.targets
    if isinstance(targets, torch.Tensor) and targets.ndim == 2:
        if not getattr(dataset, "compat", True) and dataset.target_transform is not None:
            fail(
                f"{path}.target_transform",
                "compat=True, or no target_transform",
                Text("compat=False, where target_transform gets the whole row of 8 values"),
                "Pass label_fn=lambda dataset, i: <class of sample i>",
            )
        return targets[:, 0], "targets[:, 0]", True
    return targets, "targets", True


def _stl10(dataset: Any, path: str, progress: bool) -> tuple[Any, str, bool]:
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


def _caltech101(dataset: Any, path: str, progress: bool) -> tuple[Any, str, bool]:
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


def _inaturalist(dataset: Any, path: str, progress: bool) -> tuple[Any, str, bool]:
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


def _oxford_pet(dataset: Any, path: str, progress: bool) -> tuple[Any, str, bool]:
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
SINGLE_LABEL_READERS: tuple[tuple[str, Reader], ...] = (
    ("QMNIST", _qmnist),
    ("MNIST", attribute_reader("targets")),
    ("USPS", attribute_reader("targets")),
    ("SEMEION", attribute_reader("labels")),
    ("CIFAR10", attribute_reader("targets")),
    ("SVHN", attribute_reader("labels")),
    ("STL10", _stl10),
    ("DatasetFolder", _pairs("samples")),
    ("Flowers102", attribute_reader("_labels")),
    ("Food101", attribute_reader("_labels")),
    ("DTD", attribute_reader("_labels")),
    ("FGVCAircraft", attribute_reader("_labels")),
    ("SUN397", attribute_reader("_labels")),
    ("CLEVRClassification", attribute_reader("_labels")),
    ("OxfordIIITPet", _oxford_pet),
    ("StanfordCars", _pairs("_samples")),
    ("GTSRB", _pairs("_samples")),
    ("FER2013", _pairs("_samples")),
    ("Imagenette", _pairs("_samples")),
    ("RenderedSST2", _pairs("_samples")),
    ("Caltech101", _caltech101),
    ("Caltech256", attribute_reader("y")),
    ("Places365", _pairs("imgs")),
    ("LFWPeople", attribute_reader("targets")),
    ("LFWPairs", attribute_reader("targets")),
    ("INaturalist", _inaturalist),
    ("Omniglot", _pairs("_flat_character_images")),
)


def _coco(dataset: Any, path: str, progress: bool) -> tuple[Any, str, bool]:
    """Categories from the COCO index (``coco.imgToAnns``), in ``ids`` order."""
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
                path,
                "COCO annotations with a 'category_id' (CocoDetection, instances_*.json)",
                Text(f"an annotation without one for image id {image_id}"),
                "Captions files have no categories; pass label_fn for other annotation files",
            )
    return out, "coco.imgToAnns", False


def _voc(dataset: Any, path: str, progress: bool) -> tuple[Any, str, bool]:
    """Object names from the annotation XML files only (no image is opened)."""
    paths = list(dataset.annotations)
    out = np.empty(len(paths), dtype=object)
    for position, xml in enumerate(progress_bar(paths, enabled=progress, desc="VOC XML")):
        try:
            root = ElementTree.parse(xml).getroot()
        except (OSError, ElementTree.ParseError) as error:
            fail(
                path,
                "readable VOC annotation XML files",
                Text(f"{type(error).__name__}: {error} at index {position} ({xml})"),
            )
        names = {(obj.findtext("name") or "").strip() for obj in root.iter("object")}
        names.discard("")
        out[position] = tuple(sorted(names))
    return out, "annotations", False


def _celeba(dataset: Any, path: str, progress: bool) -> tuple[Any, str, bool]:
    """Attributes set to 1, as ints."""
    return torch.as_tensor(dataset.attr) > 0, "attr", False


def _multi_label_reader(dataset: Any) -> Reader | None:
    # a torchvision dataset object exists only once torchvision.datasets has been imported,
    # so there is no need to pay for that import here
    tvd: Any = sys.modules.get("torchvision.datasets")
    inner = getattr(dataset, "_dataset", None)
    if type(dataset).__name__ == "VisionDatasetTVTensorWrapper" and inner is not None:
        reader = _multi_label_reader(inner)
        if reader is None:
            return None
        wrapped = reader

        def unwrapped(dataset: Any, path: str, progress: bool) -> tuple[Any, str, bool]:
            values, attribute, _ = wrapped(dataset._dataset, f"{path}._dataset", progress)
            return values, f"_dataset.{attribute}", False

        return unwrapped
    if tvd is None:
        return None
    if isinstance(dataset, tvd.CocoDetection) and hasattr(dataset, "coco"):
        return _coco
    if isinstance(dataset, tvd.VOCDetection):
        return _voc
    if isinstance(dataset, tvd.CelebA) and hasattr(dataset, "attr"):
        return _celeba
    return None


def reader_for(dataset: Any, multilabel: bool) -> Reader | None:
    """The torchvision reader of ``dataset``, or ``None`` for a dataset torchvision did not make.

    Args:
        dataset: Any object.
        multilabel: Pick from the multi-label table (COCO, VOC, CelebA) instead of the
            classification one.

    Returns:
        A reader, or ``None``. For single-label data, a torchvision dataset that is in
        neither table gets a reader that returns ``None`` values (its ``.targets`` are
        not class labels, so it is scanned).

    Example:
        >>> reader_for([0, 1], multilabel=False) is None
        True
    """
    if multilabel:
        return _multi_label_reader(dataset)
    if not any(cls.__module__.startswith("torchvision.") for cls in type(dataset).__mro__):
        return None
    import torchvision.datasets as tv_datasets

    for class_name, reader in SINGLE_LABEL_READERS:
        cls = getattr(tv_datasets, class_name, None)
        if cls is not None and isinstance(dataset, cls):
            return reader
    if type(dataset).__module__.startswith("torchvision."):
        return _no_labels
    return None
