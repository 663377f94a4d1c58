"""bench.metrics: every score against scikit-learn and imbalanced-learn."""

from __future__ import annotations

import numpy as np
import pytest
from imblearn.metrics import geometric_mean_score
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

from torch_balance.bench.metrics import scores, thirds


@pytest.mark.parametrize("seed", range(4))
def test_metrics_match_scikit_learn_on_fixed_predictions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_classes = 7
    y_true = np.repeat(np.arange(num_classes), 30)
    y_pred = np.where(rng.random(y_true.size) < 0.6, y_true, rng.integers(0, 6, y_true.size))
    train_counts = rng.integers(5, 500, num_classes)
    got = scores(y_true, y_pred, train_counts)
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert got["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert got["g_mean"] == pytest.approx(geometric_mean_score(y_true, y_pred))
    assert got["accuracy"] == pytest.approx(float(np.mean(y_true == y_pred)))
    recall = recall_score(y_true, y_pred, average=None)
    assert got["per_class_recall"] == pytest.approx(recall.tolist())
    head, middle, tail = thirds(train_counts)
    assert got["tail_recall"] == pytest.approx(recall[tail].mean())
    assert got["head_recall"] == pytest.approx(recall[head].mean())
    assert got["middle_recall"] == pytest.approx(recall[middle].mean())
    assert got["minority_recall"] == got["tail_recall"]
    assert set(tail) == set(np.argsort(train_counts)[:2].tolist())


def test_minority_recall_uses_the_given_classes() -> None:
    got = scores([0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 1, 0, 2, 2, 0, 0], [9, 9, 1, 1], minority=[1, 3])
    assert got["minority_recall"] == pytest.approx(0.25)
    assert got["g_mean"] == 0.0  # class 3 is never recalled, as imbalanced-learn says


def test_thirds_split_head_middle_tail() -> None:
    head, middle, tail = thirds([100, 1, 50, 10, 5, 20])
    assert (head, middle, tail) == ([0, 2], [5, 3], [4, 1])
    assert thirds([3, 7]) == ([1], [], [0])
