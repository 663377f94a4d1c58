"""Shared test configuration, the hypothesis strategies of the property tests, and the
small datasets and helpers the label tests share."""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import strategies as st
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset

from torch_balance.labels import get_labels
from torch_balance.streams import sources as sources_module

# The class sizes of the SMOTE tests' default data.
SMOTE_COUNTS = (60, 25, 12)

# How long a test waits for a process, a thread or a DataLoader worker before it calls the wait
# a hang. A guard against deadlocks, never a speed check: generous, so that a run on a busy
# machine (CI runners often are; the suite passes with five times more runnable processes than
# cores) is slow, not red. TORCH_BALANCE_HANG_S overrides it.
HANG_S = float(os.environ.get("TORCH_BALANCE_HANG_S", "900"))

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


# class counts around the widths of packed class codes (1 bit .. 17 bits; 8 and 16 are typed)
PACKED_CLASS_COUNTS = (1, 2, 3, 255, 256, 257, 1000, 4096, 65536, 70000)


@st.composite
def sharded_codes(draw: st.DrawFn, max_shards: int = 8, max_size: int = 40) -> Any:
    """``(num_classes, codes, offsets)``: class codes below one of :data:`PACKED_CLASS_COUNTS`
    in 1..max_shards shards of 0..max_size samples (empty shards included)."""
    num_classes = draw(st.sampled_from(PACKED_CLASS_COUNTS))
    sizes = draw(st.lists(st.integers(0, max_size), min_size=1, max_size=max_shards))
    top = st.integers(0, num_classes - 1)
    values = st.one_of(top, st.sampled_from([0, num_classes - 1]))  # the extremes, often
    codes = draw(st.lists(values, min_size=sum(sizes), max_size=sum(sizes)))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return num_classes, np.array(codes, dtype=np.int64), offsets


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


label_sets = st.lists(
    st.lists(st.integers(-3, 40), max_size=6),
    min_size=1,
    max_size=40,
)
"""Per-sample lists of category ids, maybe repeated, maybe empty."""


def _refuse(self: Any, index: Any) -> Any:
    raise AssertionError(f"{type(self).__name__}.__getitem__({index!r}) was called")


def forbid_getitem(monkeypatch: pytest.MonkeyPatch, *objects: Any) -> None:
    """Make ``__getitem__`` raise on the class of each object (and on Subset/ConcatDataset)."""
    for cls in {type(obj) for obj in objects} | {Subset, ConcatDataset}:
        monkeypatch.setattr(cls, "__getitem__", _refuse)


def read(dataset: Any, **kwargs: Any) -> list[Any]:
    """get_labels as a list, failing on any warning (a warning means a scan happened)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return get_labels(dataset, progress=False, **kwargs).tolist()


def truth(dataset: Any) -> list[Any]:
    """Labels by iterating the dataset: the target, last in every torchvision item (pair
    datasets such as LFWPairs return (image, image, target))."""
    return [_plain(dataset[i][-1]) for i in range(len(dataset))]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, torch.Tensor | np.generic) else value


class WithTargets(Dataset):
    """A dataset keeping its labels in ``.targets``; counts ``__getitem__`` calls."""

    def __init__(self, labels: Any) -> None:
        self.targets = labels
        self.calls = 0

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[int, Any]:
        self.calls += 1
        return i, self.targets[i]


class Plain(Dataset):
    """A dataset with no label attribute: only a scan can read it. Counts calls."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.calls = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        self.calls += 1
        return self.items[i]


def _leaves(kind: str) -> st.SearchStrategy[Any]:
    values = st.integers(-3, 6) if kind == "int" else st.sampled_from(["a", "b", "cc", "d"])
    vectors = st.lists(values, min_size=0, max_size=12)
    makers: list[Callable[[list[Any]], Any]] = [
        WithTargets,
        lambda labels: Plain([(i, y) for i, y in enumerate(labels)]),
        lambda labels: [(i, y) for i, y in enumerate(labels)],
    ]
    if kind == "int":
        makers.append(
            lambda labels: TensorDataset(
                torch.zeros(len(labels)), torch.tensor(labels, dtype=torch.long)
            )
        )
    return st.tuples(vectors, st.sampled_from(makers)).map(lambda pair: pair[1](pair[0]))


def _subset_of(child: Any) -> st.SearchStrategy[Any]:
    size = len(child)
    if size == 0:
        return st.just(Subset(child, []))
    return st.lists(st.integers(-size, size - 1), max_size=15).map(lambda idx: Subset(child, idx))


def dataset_trees(kind: str) -> st.SearchStrategy[Any]:
    """Random trees of Subset / ConcatDataset over random label vectors (ints or strings)."""
    return st.recursive(
        _leaves(kind),
        lambda children: st.one_of(
            children.flatmap(_subset_of),
            st.lists(children, min_size=1, max_size=3).map(ConcatDataset),
        ),
        max_leaves=6,
    )


def make_data(counts: tuple[int, ...] = SMOTE_COUNTS, d: int = 4, seed: int = 0) -> tuple[Any, Any]:
    """Float32 Gaussian blobs, one per class (class c centred at 1.5 * c), for SMOTE tests."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(n, d)) + 1.5 * c for c, n in enumerate(counts)]).astype(
        np.float32
    )
    y = np.repeat(np.arange(len(counts)), counts)
    return X, y


def run_slots(make: Any, world: int, workers: int) -> dict[tuple[int, int], list[Any]]:
    """Every (rank, worker) reader's pass, workers simulated in this process."""
    out = {}
    for rank in range(world):
        stream = make(num_replicas=world, rank=rank)
        for worker in range(workers):
            info = SimpleNamespace(id=worker, num_workers=workers)
            original = sources_module.get_worker_info
            sources_module.get_worker_info = lambda info=info: info  # type: ignore[assignment]
            try:
                out[rank, worker] = list(stream)
            finally:
                sources_module.get_worker_info = original
    return out
