"""The opening every sampler shares: labels given directly, or a dataset to read them from
(:func:`resolve_labels`, :func:`resolve_labelsets`), and the dataset a sampler was built on
(:func:`given_dataset`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch_balance.labels.check import is_label_data
from torch_balance.labels.index import LabelIndex, MultiLabelIndex
from torch_balance.labels.read import get_labels, get_labelsets

__all__ = ["given_dataset", "resolve_labels", "resolve_labelsets"]


def given_dataset(dataset_or_labels: Any, label_fn: Any = None) -> Any:
    """The dataset a sampler was built on, or None when it was given labels (or an index).

    Example:
        >>> given_dataset([0, 1, 1]) is None, given_dataset([{"label": 0}]) is not None
        (True, True)
    """
    if isinstance(dataset_or_labels, LabelIndex | MultiLabelIndex):
        return None
    if label_fn is None and is_label_data(dataset_or_labels):
        return None
    return dataset_or_labels


def resolve_labelsets(
    dataset_or_labelsets: Any, label_fn: Callable[[Any, int], Iterable[Any]] | None = None
) -> MultiLabelIndex:
    """Index the category sets of a dataset, or of label sets given directly.

    Example:
        >>> resolve_labelsets([[2, 1], [], [2]]).counts.tolist()
        [1, 2]
    """
    if isinstance(dataset_or_labelsets, MultiLabelIndex):
        return dataset_or_labelsets
    if label_fn is None and is_label_data(dataset_or_labelsets):
        return MultiLabelIndex(dataset_or_labelsets, "dataset_or_labelsets")
    return MultiLabelIndex(get_labelsets(dataset_or_labelsets, label_fn=label_fn, progress=False))


def resolve_labels(
    dataset_or_labels: Any, label_fn: Callable[[Any, int], Any] | None = None
) -> LabelIndex:
    """Index the labels of a dataset, or of a label vector given directly."""
    if isinstance(dataset_or_labels, LabelIndex):
        return dataset_or_labels
    if label_fn is None and is_label_data(dataset_or_labels):
        return LabelIndex(dataset_or_labels)
    return LabelIndex(get_labels(dataset_or_labels, label_fn=label_fn))
