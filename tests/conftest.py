"""Shared test configuration and the hypothesis strategies of the property tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from hypothesis import strategies as st

# Scripts that tests/test_stacks.py launches in their own processes; not test modules.
collect_ignore = ["stacks"]


@st.composite
def label_vectors(
    draw: st.DrawFn, min_classes: int = 1, max_classes: int = 6, max_count: int = 40
) -> np.ndarray:
    """A shuffled label vector of 1..max_classes integer classes with 1..max_count samples each."""
    num_classes = draw(st.integers(min_classes, max_classes))
    counts = draw(st.lists(st.integers(1, max_count), min_size=num_classes, max_size=num_classes))
    codes = draw(
        st.lists(st.integers(-5, 50), min_size=num_classes, max_size=num_classes, unique=True)
    )
    labels = np.repeat(np.array(codes, dtype=np.int64), counts)
    order = draw(st.permutations(range(labels.shape[0])))
    return labels[np.array(order, dtype=np.int64)]


@st.composite
def multiclass_vectors(draw: st.DrawFn) -> np.ndarray:
    """Label vectors with at least two classes (imbalanced-learn refuses one)."""
    return draw(label_vectors(min_classes=2))


@st.composite
def binary_vectors(draw: st.DrawFn) -> np.ndarray:
    """Two-class label vectors, for imbalanced-learn's float sampling_strategy."""
    return draw(label_vectors(min_classes=2, max_classes=2))


# short label lists: a few classes of very different sizes
small_label_lists = st.lists(st.integers(0, 5), min_size=2, max_size=120).filter(
    lambda y: len(set(y)) >= 2
)


def assert_stratified(batch_labels: list[list[Any]], targets: dict[Any, int], size: int) -> None:
    """Every batch of ``m`` holds floor or ceil of ``m * k_c / K`` of each class c."""
    total = sum(targets.values())
    for labels in batch_labels:
        m = len(labels)
        counts = Counter(labels)
        for cls, k in targets.items():
            low, high = (m * k) // total, -(-(m * k) // total)
            assert low <= counts.get(cls, 0) <= high, (cls, counts, m, k, total)
    assert all(len(b) == size for b in batch_labels[:-1])
