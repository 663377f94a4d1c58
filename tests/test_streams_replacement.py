"""Manifest streams with ``replacement=True``: each reader draws its own shards' part of the
epoch's multinomial (a binary tree of binomials over the shards, then within each shard), never
the whole epoch; over all readers each class's copies are its target exactly, and per-sample
counts follow ``BalancedSampler(replacement=True)``'s distribution."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from tests.conftest import run_slots
from tests.test_streams import memory_shards
from torch_balance import BalancedIterableDataset, BalancedSampler, Power, make_plan
from torch_balance.draws import fast as fast_draws
from torch_balance.labels.index import CountIndex
from torch_balance.streams import Manifest
from torch_balance.streams import copies as copies_module
from torch_balance.streams.copies import (
    EXACT_COUNT,
    binomial_split,
    keyed_copies,
    reader_copies,
    shard_class_copies,
    within_class_index,
)
from torch_balance.streams.manifest_file import ManifestWriter
from torch_balance.streams.readers import shard_order
from torch_balance.streams.sources import Slot, reader_parts


@st.composite
def manifests(draw: st.DrawFn) -> tuple[np.ndarray, Manifest]:
    """Labels and a manifest over them: one shard or many, empty shards, and sometimes a
    class found in one shard only (at least two classes)."""
    samples = draw(st.integers(1, 300))
    shards = draw(st.integers(1, 16))
    classes = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32))
    rng = np.random.default_rng(seed)
    weights = 0.5 ** np.arange(classes)
    labels = rng.choice(classes, size=samples, p=weights / weights.sum())
    cuts = np.sort(rng.integers(0, samples + 1, size=shards - 1))  # repeats: empty shards
    parts = np.split(labels, cuts)
    # class 9 in one shard only (always where the rest hold one class: a plan needs two)
    if draw(st.booleans()) or np.unique(labels).shape[0] < 2:
        at = draw(st.integers(0, shards - 1))
        parts[at] = np.concatenate([parts[at], np.full(draw(st.integers(1, 4)), 9)])
    manifest = Manifest({f"s{i}": part for i, part in enumerate(parts)})
    return np.concatenate(parts), manifest


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=manifests(),
    world=st.integers(1, 4),
    workers=st.integers(1, 3),
    strategy=st.sampled_from(["over", "under", "sqrt", Power(0.3)]),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 5),
)
def test_readers_draws_add_up_to_the_plan(
    data: tuple[np.ndarray, Manifest],
    world: int,
    workers: int,
    strategy: Any,
    seed: int,
    epoch: int,
) -> None:
    """Every (rank, worker) reader draws its own parts; together every sample is read once,
    each class's copies are its target exactly, and a shard shared by several readers is
    drawn the same by each (their positions ``start::step`` add up to the shard)."""
    labels, manifest = data
    targets = make_plan(CountIndex(manifest.counts()), strategy).targets(epoch)
    order = shard_order(manifest.num_shards, seed, epoch)
    copies = np.full(labels.shape[0], -1)
    for rank in range(world):
        for worker in range(workers):
            parts = reader_parts(order, Slot(rank, world, worker, workers))
            found = reader_copies(manifest, parts, targets, seed, epoch, replacement=True)
            for (shard, start, step), (codes, mine) in zip(parts, found, strict=True):
                at = np.arange(manifest.offsets[shard] + start, manifest.offsets[shard + 1], step)
                assert (copies[at] == -1).all()  # read by one reader only
                assert (manifest.classes[codes] == labels[at]).all()
                copies[at] = mine
    assert (copies >= 0).all()
    for c, label in enumerate(manifest.classes.tolist()):
        assert int(copies[labels == label].sum()) == int(targets[c])
    # the whole collection asked at once is the same epoch
    every = [(s, 0, 1) for s in range(manifest.num_shards)]
    whole = reader_copies(manifest, every, targets, seed, epoch, replacement=True)
    assert np.array_equal(np.concatenate([c for _, c in whole]), copies)


def test_a_shards_row_does_not_depend_on_who_asks() -> None:
    """The tree's nodes are keyed by (seed, epoch, node): one shard's copies per class are the
    same whether asked alone, with its neighbours or with every shard."""
    rng = np.random.default_rng(4)
    labels = rng.choice(6, size=5000, p=[0.4, 0.3, 0.15, 0.1, 0.04, 0.01])
    manifest = Manifest({f"s{i}": p for i, p in enumerate(np.array_split(labels, 37))})
    targets = make_plan(CountIndex(manifest.counts()), "sqrt").targets(0)
    every = shard_class_copies(manifest, range(37), targets, 3, 1)
    assert np.array_equal(sum(every.values()), targets)
    for asked in ([5], [36], [0, 1, 2], [11, 30]):
        rows = shard_class_copies(manifest, asked, targets, 3, 1)
        assert sorted(rows) == asked
        assert all(np.array_equal(rows[s], every[s]) for s in asked)


def test_copies_are_a_function_of_seed_and_epoch() -> None:
    labels = np.repeat([0, 1, 2], [400, 80, 20])
    np.random.default_rng(1).shuffle(labels)
    manifest = Manifest({f"s{i}": p for i, p in enumerate(np.array_split(labels, 9))})
    targets = make_plan(CountIndex(manifest.counts()), "over").targets(0)
    parts = [(s, 0, 1) for s in range(9)]

    def copies(seed: int, epoch: int) -> np.ndarray:
        found = reader_copies(manifest, parts, targets, seed, epoch, replacement=True)
        return np.concatenate([c for _, c in found])

    assert np.array_equal(copies(1, 2), copies(1, 2))
    assert not np.array_equal(copies(1, 2), copies(1, 3))
    assert not np.array_equal(copies(1, 2), copies(2, 2))


def _histograms(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of each value in ``a`` and ``b``, the sparse tail pooled into one bin."""
    size = int(max(a.max(), b.max())) + 1
    ha, hb = np.bincount(a, minlength=size), np.bincount(b, minlength=size)
    keep = np.flatnonzero(ha + hb >= 20)
    top = int(keep.max())
    return np.append(ha[:top], ha[top:].sum()), np.append(hb[:top], hb[top:].sum())


def _same_distribution(a: np.ndarray, b: np.ndarray) -> float:
    """The p-value of a chi-square test that ``a`` and ``b`` draw from one distribution."""
    ha, hb = _histograms(a, b)
    used = (ha + hb) > 0
    return float(stats.chi2_contingency(np.stack([ha[used], hb[used]]))[1])


def test_per_sample_counts_follow_the_samplers_distribution() -> None:
    """Over 300 seeds, the copies of each sample (and of each shard, per class) have the
    distribution of ``BalancedSampler(replacement=True)``'s: a chi-square test of the two
    histograms does not reject it, where it rejects the floor-or-ceil epochs of
    ``replacement=False`` (so the test can fail)."""
    rng = np.random.default_rng(0)
    labels = rng.choice(4, size=240, p=[0.6, 0.25, 0.1, 0.05])
    cuts = np.array([0, 17, 17, 60, 61, 130, 200, 239])
    manifest = Manifest({f"s{i}": p for i, p in enumerate(np.split(labels, cuts))})
    targets = make_plan(CountIndex(manifest.counts()), "sqrt").targets(0)
    parts = [(s, 0, 1) for s in range(manifest.num_shards)]
    shard_of = np.repeat(np.arange(manifest.num_shards), manifest.sizes)
    ours, theirs, fixed = [], [], []
    for seed in range(300):
        found = reader_copies(manifest, parts, targets, seed, 0, replacement=True)
        ours.append(np.concatenate([c for _, c in found]))
        sampler = BalancedSampler(labels, "sqrt", replacement=True, seed=seed)
        theirs.append(np.bincount(sampler.epoch_indices(0).numpy(), minlength=labels.shape[0]))
        index = within_class_index(manifest.codes, np.zeros(4, dtype=np.int64))
        counts = manifest.class_counts()
        fixed.append(keyed_copies(manifest.codes, index, counts, targets, seed, 0))
    a, b, c = np.array(ours), np.array(theirs), np.array(fixed)
    for code in range(4):
        mine = labels == code
        assert _same_distribution(a[:, mine].ravel(), b[:, mine].ravel()) > 1e-3
        assert _same_distribution(c[:, mine].ravel(), b[:, mine].ravel()) < 1e-6
        # each shard's copies of the class (seeds x shards), for both
        x, y = (
            np.stack([np.bincount(shard_of[mine], row[mine], manifest.num_shards) for row in m])
            for m in (a, b)
        )
        for s in np.flatnonzero(np.bincount(shard_of[mine])).tolist():
            assert _same_distribution(x[:, s].astype(np.int64), y[:, s].astype(np.int64)) > 1e-3


def test_binomial_split_is_exact_for_large_counts() -> None:
    """Counts past float64's exact integers are drawn in pieces; every part stays in bounds
    and the mean is right (in standard errors)."""
    g = torch.Generator().manual_seed(0)
    big = np.array([2**40] * 2000 + [2**60] * 20 + [EXACT_COUNT + 3] * 20, dtype=np.int64)
    share = np.full(big.shape[0], 0.3)
    got = binomial_split(big, share, g)
    assert got.dtype == np.int64 and ((got >= 0) & (got <= big)).all()
    head = got[:2000].astype(np.float64)
    mean, var = 2**40 * 0.3, 2**40 * 0.3 * 0.7
    assert abs(head.mean() - mean) < 5 * np.sqrt(var / 2000)
    assert abs(head.var() / var - 1) < 0.2
    huge = got[2000:2020].astype(np.float64)
    assert abs(huge.mean() / (2**60 * 0.3) - 1) < 1e-6
    edges = binomial_split(np.array([5, 5, 0, 7]), np.array([0.0, 1.0, 0.5, 0.5]), g)
    assert edges[:3].tolist() == [0, 5, 0] and 0 <= edges[3] <= 7


def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a reader drew the whole epoch")


def test_a_reader_never_draws_the_whole_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the whole-epoch draws made to fail, every reader of 2 ranks x 2 workers still
    runs; rank totals are equal and each class's copies over all readers follow the plan
    within one copy per reader (the cut and the pad)."""
    monkeypatch.setattr(copies_module, "epoch_copies", _never)
    monkeypatch.setattr(copies_module, "draw_epoch", _never)
    monkeypatch.setattr(fast_draws, "draw_epoch", _never)
    labels = np.repeat([0, 1, 2, 3], [300, 90, 30, 7])
    np.random.default_rng(3).shuffle(labels)
    source, manifest = memory_shards(labels, 9)

    def make(**kw: Any) -> BalancedIterableDataset:
        return BalancedIterableDataset(
            source, "sqrt", manifest=manifest, replacement=True, seed=5, **kw
        )

    parts = run_slots(make, 2, 2)
    length = len(make(num_replicas=2, rank=0))
    assert [len(parts[r, 0]) + len(parts[r, 1]) for r in range(2)] == [length] * 2
    assert len({len(parts[r, 0]) for r in range(2)}) == 1
    plan = make().target_counts()
    counts = Counter(y for part in parts.values() for _, y in part)
    scale = 2 * length / sum(plan.values())
    assert all(abs(counts[c] - scale * n) <= 4 for c, n in plan.items()), counts


def test_one_reader_emits_the_plan_and_is_repeatable() -> None:
    labels = np.repeat([0, 1, 2], [120, 30, 6])
    source, manifest = memory_shards(labels, 5)

    def run(seed: int) -> list[int]:
        stream = BalancedIterableDataset(
            source, "over", manifest=manifest, replacement=True, seed=seed
        )
        out = list(stream)
        assert Counter(y for _, y in out) == Counter(stream.target_counts())
        assert np.array_equal(
            np.bincount([i for i, _ in out], minlength=labels.shape[0]), stream.epoch_copies()
        )
        return [i for i, _ in out]

    assert run(2) == run(2)
    assert run(2) != run(3)


@pytest.mark.parametrize("replacement", [False, True])
def test_a_binary_manifest_may_name_classes_without_samples(
    tmp_path: Any, replacement: bool
) -> None:
    """A written manifest declares its classes up front; one without samples gets no copies
    and no target, and the rest of the plan is met."""
    labels = np.repeat([0, 1, 3], [40, 12, 5])
    source, _ = memory_shards(labels, 4)
    path = tmp_path / "labels.tbm"
    with ManifestWriter(path, [0, 1, 2, 3]) as writer:
        for part, name in zip(np.array_split(labels, 4), source.names, strict=True):
            writer.add(name, np.searchsorted([0, 1, 2, 3], part))
    stream = BalancedIterableDataset(
        source, "over", manifest=Manifest.from_file(path), replacement=replacement
    )
    assert stream.target_counts() == {0: 40, 1: 40, 3: 40}
    assert Counter(y for _, y in stream) == Counter({0: 40, 1: 40, 3: 40})
