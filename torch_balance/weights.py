"""Loss weights per class: the other way to balance, in the loss instead of the sampler."""

from __future__ import annotations

import numbers
from typing import Any, Literal

import numpy as np
import torch

from torch_balance._validation import check_epoch_size, check_int, fail
from torch_balance.labels import resolve_labels

__all__ = ["class_weights"]


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
        labels: A label vector, a :class:`~torch_balance.labels.LabelIndex`, or a dataset
            (its labels read with :func:`~torch_balance.labels.get_labels`, as the samplers
            read them).
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
    index = resolve_labels(labels)
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
    classes = index.classes
    if classes.dtype.kind in "iu" and int(classes.min()) >= 0:
        size = int(classes.max()) + 1
        check_epoch_size(
            "labels",
            size,
            12,
            "The weights are indexed by label; map the labels to 0..C-1 first "
            "(LabelIndex(labels).codes)",
            what="a weight vector indexed by label",
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
                what="a weight vector",
            )
        out = np.zeros(size, dtype=np.float64)
        out[classes.astype(np.int64)] = raw
        raw = out
    elif num_classes is not None:
        fail("num_classes", "None for labels that are not non-negative integers", num_classes)
    return torch.tensor(raw, dtype=torch.float32)
