"""Loss weights per class: the other way to balance, in the loss instead of the sampler."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch

from torch_balance._validation import check_epoch_size, check_int, fail
from torch_balance.labels import LabelIndex, resolve_labels
from torch_balance.labels.index import CountIndex

__all__ = ["class_counts", "class_weights"]


def class_weights(
    labels: Any,
    kind: Literal["inverse", "sqrt", "effective"] = "inverse",
    *,
    beta: float = 0.9999,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Per-class loss weights for ``torch.nn.CrossEntropyLoss(weight=...)``.

    ``"inverse"``: 1/n_c. ``"sqrt"``: 1/sqrt(n_c). ``"effective"``: (1 - beta) / (1 - beta**n_c),
    the inverse effective number of samples (Cui et al., CVPR 2019). The weights of the classes
    present sum to their number.

    With non-negative integer labels the tensor is indexed by label value (length
    ``num_classes``, default ``max(label) + 1``) and an absent class gets weight 0; with other
    labels it follows the sorted classes.

    Args:
        labels: A label vector, a :class:`~torch_balance.labels.LabelIndex`, a dataset
            (its labels read with :func:`~torch_balance.labels.get_labels`, as the samplers
            read them), or the counts themselves as a mapping ``{class: count}``.
        kind: ``"inverse"``, ``"sqrt"`` or ``"effective"``.
        beta: For ``"effective"``, in [0, 1).
        num_classes: Length of the tensor for integer labels.

    Returns:
        A float32 tensor of weights.

    Example:
        >>> class_weights([0, 0, 0, 1]).tolist()
        [0.5, 1.5]
        >>> from torch.utils.data import TensorDataset
        >>> class_weights(TensorDataset(torch.zeros(4, 2), torch.tensor([0, 0, 0, 1]))).tolist()
        [0.5, 1.5]
    """
    index = _index(labels)
    counts = index.counts.astype(np.float64)
    if not isinstance(kind, str):
        fail("kind", "'inverse', 'sqrt' or 'effective'", kind, kind=TypeError)
    if kind == "inverse":
        raw = 1.0 / counts
    elif kind == "sqrt":
        raw = 1.0 / np.sqrt(counts)
    elif kind == "effective":
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
            fail("beta", "a number in [0, 1)", beta, kind=TypeError)
        if not 0.0 <= float(beta) < 1.0:
            fail("beta", "a number in [0, 1)", beta, "Cui et al. use 0.9, 0.99, 0.999 or 0.9999")
        raw = (1.0 - beta) / (1.0 - np.power(float(beta), counts))
    else:
        fail("kind", "'inverse', 'sqrt' or 'effective'", kind)
    raw = raw / raw.sum() * index.num_classes
    raw = _by_label(index, raw, num_classes)
    return torch.tensor(raw, dtype=torch.float32)


def class_counts(labels: Any, *, num_classes: int | None = None) -> torch.Tensor:
    """Training samples per class, laid out as :func:`class_weights` lays out its weights.

    With non-negative integer labels the tensor is indexed by label value (length
    ``num_classes``, default ``max(label) + 1``; an absent class counts 0); with other labels
    it follows the sorted classes. This is the layout of a model's logits when its targets are
    the labels themselves, which is what the losses of :mod:`torch_balance.losses` read.

    Args:
        labels: A label vector, a :class:`~torch_balance.labels.LabelIndex`, a dataset (its
            labels read with :func:`~torch_balance.labels.get_labels`, as the samplers read
            them), or the counts themselves as a mapping ``{class: count}``.
        num_classes: Length of the tensor for integer labels.

    Returns:
        A float64 tensor of counts.

    Example:
        >>> class_counts([0, 0, 2]).tolist()
        [2.0, 0.0, 1.0]
        >>> class_counts({0: 500, 1: 5}, num_classes=3).tolist()
        [500.0, 5.0, 0.0]
        >>> class_counts(["cat", "dog", "dog"]).tolist()
        [1.0, 2.0]
    """
    index = _index(labels)
    return torch.tensor(_by_label(index, index.counts.astype(np.float64), num_classes))


def _index(labels: Any) -> LabelIndex:
    """The label index of ``labels``; a mapping is read as ``{class: count}``."""
    if isinstance(labels, Mapping):
        for key, value in labels.items():
            check_int(f"labels[{key!r}]", value, minimum=1, fix="Leave out a class with no samples")
        if not labels:
            fail("labels", "at least one class", labels)
        return CountIndex(labels)
    return resolve_labels(labels)


def _by_label(index: LabelIndex, values: np.ndarray, num_classes: int | None) -> np.ndarray:
    """``values`` (one per class of ``index``) placed at their label value for non-negative
    integer labels (0 elsewhere, length ``num_classes``), else as they are."""
    classes = index.classes
    if classes.dtype.kind in "iu" and int(classes.min()) >= 0:
        size = int(classes.max()) + 1
        check_epoch_size(
            "labels",
            size,
            12,
            "The values are indexed by label; map the labels to 0..C-1 first "
            "(LabelIndex(labels).codes)",
            what="a vector indexed by label",
        )
        if num_classes is not None:
            size = check_int(
                "num_classes",
                num_classes,
                minimum=size,
                fix="It must cover the largest label",
            )
            check_epoch_size(
                "num_classes",
                size,
                12,
                "Give the number of classes your model outputs",
                what="a vector",
            )
        out = np.zeros(size, dtype=np.float64)
        out[classes.astype(np.int64)] = values
        return out
    if num_classes is not None:
        fail("num_classes", "None for labels that are not non-negative integers", num_classes)
    return values
