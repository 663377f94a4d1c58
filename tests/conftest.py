"""Shared test configuration and the hypothesis strategies of the property tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

# The class sizes of the SMOTE tests' default data.
SMOTE_COUNTS = (60, 25, 12)

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


def make_data(counts: tuple[int, ...] = SMOTE_COUNTS, d: int = 4, seed: int = 0) -> tuple[Any, Any]:
    """Float32 Gaussian blobs, one per class (class c centred at 1.5 * c), for SMOTE tests."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(n, d)) + 1.5 * c for c, n in enumerate(counts)]).astype(
        np.float32
    )
    y = np.repeat(np.arange(len(counts)), counts)
    return X, y
