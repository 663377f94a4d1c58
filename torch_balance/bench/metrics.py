"""Recall-centred metrics, all from one confusion matrix.

Definitions follow scikit-learn and imbalanced-learn (the tests check them on fixed
predictions): balanced accuracy is the mean per-class recall
(``sklearn.metrics.balanced_accuracy_score``), macro-F1 the unweighted mean of per-class F1
(``f1_score(average="macro")``), G-mean the geometric mean of per-class recalls
(``imblearn.metrics.geometric_mean_score`` with its defaults). Head, middle and tail are the
thirds of the classes ordered by training-set size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from torch_balance._validation import fail

__all__ = ["METRIC_NAMES", "confusion", "scores", "thirds"]

METRIC_NAMES = (
    "accuracy",
    "balanced_accuracy",
    "minority_recall",
    "head_recall",
    "middle_recall",
    "tail_recall",
    "macro_f1",
    "g_mean",
)


def confusion(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """``matrix[t, p]`` counts the images of class ``t`` predicted as ``p``.

    Example:
        >>> confusion([0, 1, 1], [0, 0, 1], 2).tolist()
        [[1, 0], [1, 1]]
    """
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        fail("y_pred", f"one prediction per label ({t.size})", f"{p.size} predictions")
    flat = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def thirds(train_counts: Any) -> tuple[list[int], list[int], list[int]]:
    """Head, middle and tail classes: thirds by training-set size, ties by class order.

    With C classes, head and tail hold ``round(C / 3)`` classes each (at least one when C > 1)
    and middle the rest.

    Example:
        >>> thirds([5, 50, 500, 20, 10, 200, 100, 1, 2, 1000])
        ([9, 2, 5], [6, 1, 3, 4], [0, 8, 7])
    """
    counts = np.asarray(train_counts, dtype=np.int64)
    order = [int(c) for c in np.argsort(-counts, kind="stable")]
    size = len(order)
    k = 0 if size < 2 else max(1, round(size / 3))
    return order[:k] if k else order, order[k : size - k], order[size - k :] if k else []


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def scores(
    y_true: Any,
    y_pred: Any,
    train_counts: Any,
    *,
    minority: list[int] | None = None,
) -> dict[str, Any]:
    """Every metric of the benchmark for one set of predictions.

    Args:
        y_true: True labels ``0..C-1``.
        y_pred: Predicted labels.
        train_counts: Training images per class (length C); defines head/middle/tail.
        minority: Classes whose mean recall is ``minority_recall``; default the tail third.

    Returns:
        A dict with the :data:`METRIC_NAMES` (floats in [0, 1]) and ``per_class_recall``
        (a list; NaN for a class absent from ``y_true``), ``per_class_f1`` and ``groups``.

    Example:
        >>> s = scores([0, 0, 1, 1, 2, 2], [0, 0, 1, 0, 2, 0], [30, 20, 10])
        >>> round(s["balanced_accuracy"], 4), s["per_class_recall"], s["minority_recall"]
        (0.6667, [1.0, 0.5, 0.5], 0.5)
    """
    counts = np.asarray(train_counts, dtype=np.int64)
    num_classes = counts.size
    matrix = confusion(y_true, y_pred, num_classes)
    support = matrix.sum(axis=1).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    hits = np.diag(matrix).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
        denominator = support + predicted
        f1 = np.where(denominator > 0, 2.0 * hits / denominator, 0.0)
    present = support > 0
    total = support.sum()
    head, middle, tail = thirds(counts)
    chosen = tail if minority is None else list(minority)
    finite = recall[present]
    g_mean = float(np.prod(finite) ** (1.0 / finite.size)) if finite.size else float("nan")
    labelled = present | (predicted > 0)
    return {
        "accuracy": float(hits.sum() / total) if total else float("nan"),
        "balanced_accuracy": _mean(recall),
        "minority_recall": _mean(recall[chosen]) if chosen else float("nan"),
        "head_recall": _mean(recall[head]) if head else float("nan"),
        "middle_recall": _mean(recall[middle]) if middle else float("nan"),
        "tail_recall": _mean(recall[tail]) if tail else float("nan"),
        "macro_f1": float(f1[labelled].mean()) if labelled.any() else float("nan"),
        "g_mean": g_mean,
        "per_class_recall": [float(v) for v in recall],
        "per_class_f1": [float(v) for v in f1],
        "groups": {"head": head, "middle": middle, "tail": tail, "minority": sorted(chosen)},
    }
