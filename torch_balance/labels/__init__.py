"""Labels: read them from a dataset without decoding a sample, and index them by class.

One layer for single- and multi-label data: :mod:`~torch_balance.labels.index`
(:class:`LabelIndex`, :class:`MultiLabelIndex`), built with :mod:`~torch_balance.labels.encode`
from labels checked by :mod:`~torch_balance.labels.check`; :mod:`~torch_balance.labels.read`
(:func:`get_labels`, :func:`get_labelsets` and the one reader behind both, with the one scan
of :mod:`~torch_balance.labels.scan`); :mod:`~torch_balance.labels.resolve` (labels given or a
dataset to read: the opening of every sampler),
:mod:`~torch_balance.labels.kinds` (what one label is) and
:mod:`~torch_balance.labels.torchvision` (the torchvision reader tables). Segmentation masks
have per-image class pixel counts instead: :mod:`~torch_balance.labels.masks`.
"""

from __future__ import annotations

from torch_balance.labels.check import is_label_data
from torch_balance.labels.index import LabelIndex, MultiLabelIndex, as_label_array
from torch_balance.labels.read import as_labelsets, get_labels, get_labelsets
from torch_balance.labels.resolve import given_dataset, resolve_labels, resolve_labelsets

__all__ = [
    "LabelIndex",
    "MultiLabelIndex",
    "as_label_array",
    "as_labelsets",
    "get_labels",
    "get_labelsets",
    "given_dataset",
    "is_label_data",
    "resolve_labels",
    "resolve_labelsets",
]
