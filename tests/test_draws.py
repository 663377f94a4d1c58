"""The pure kernels of torch_balance.draws: stratified order and the P×K class sequence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_stratified
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_balance import RandomUnderSampler, ResampledDataset, StratifiedBatchSampler
from torch_balance.draws import (
    WalkCache,
    class_sequence,
    draw_epoch,
    draw_walks,
    shuffle_order,
    shuffled_epoch,
    stratified_order,
    walk_state,
)
from torch_balance.labels import LabelIndex
from torch_balance.strategies import make_plan


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 30), min_size=1, max_size=8).filter(lambda k: sum(k) > 0),
    st.integers(1, 25),
    st.integers(0, 2**31),
)
def test_stratified_order_counts_within_one(targets: list[int], size: int, seed: int) -> None:
    k = np.array(targets)
    labels = np.repeat(np.arange(k.shape[0]), k)
    picks = torch.arange(labels.shape[0]) + 1000
    out = stratified_order(picks, k, size, torch.Generator().manual_seed(seed))
    assert sorted(out.tolist()) == picks.tolist()
    cut = [labels[(out[i : i + size] - 1000).numpy()].tolist() for i in range(0, len(out), size)]
    assert_stratified(cut, dict(enumerate(targets)), size)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 14), st.data())
def test_class_sequence_distinct_and_even(classes: int, data: st.DataObject) -> None:
    p = data.draw(st.integers(1, classes))
    batches = data.draw(st.integers(1, 40))
    seed = data.draw(st.integers(0, 2**31))
    groups = class_sequence(classes, p, batches, torch.Generator().manual_seed(seed))
    assert groups.shape == (batches, p)
    assert all(len(set(row)) == p for row in groups.tolist())
    counts = np.bincount(groups.reshape(-1), minlength=classes)
    assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize(("classes", "p"), [(5, 3), (7, 3), (10, 4), (40, 8), (13, 5)])
def test_class_sequence_both_seam_paths(classes: int, p: int) -> None:
    # (5, 3), (10, 4), (13, 5): rows too short for the vectorised seam fix; the others use it
    for seed in range(30):
        groups = class_sequence(classes, p, 60, torch.Generator().manual_seed(seed))
        assert all(len(set(row)) == p for row in groups.tolist())
        counts = np.bincount(groups.reshape(-1), minlength=classes)
        assert counts.max() - counts.min() <= 1


def _random_plan(counts: list[int], data: st.DataObject) -> tuple[Any, dict[int, int]]:
    """A plan of random per-class targets (0 to 3x each class, at least one sample) for labels
    with ``counts`` per class."""
    targets = {c: data.draw(st.integers(0, 3 * n)) for c, n in enumerate(counts)}
    if not sum(targets.values()):
        targets[0] = 1
    index = LabelIndex(np.repeat(np.arange(len(counts)), counts))
    plan = make_plan(index, lambda _counts, _epoch: targets, num_samples=sum(targets.values()))
    return plan, targets


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(1, 60), min_size=1, max_size=6),
    st.data(),
    st.lists(st.integers(0, 40), min_size=1, max_size=8),
    st.integers(0, 2**31),
)
def test_cached_draw_equals_the_uncached_one(
    counts: list[int], data: st.DataObject, epochs: list[int], seed: int
) -> None:
    # One gather out of the cache's buffer must reproduce the per-class draw sample for
    # sample: classes copied whole next to classes walked, walks that wrap past the end of
    # a cycle, classes given nothing, epochs visited out of order.
    plan, targets = _random_plan(counts, data)
    assert plan.as_dict(0) == targets
    cache = WalkCache()
    for epoch in epochs:
        cached = draw_epoch(plan, seed, epoch, cache=cache)
        assert cached.tolist() == draw_epoch(plan, seed, epoch).tolist(), epoch


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 60), min_size=1, max_size=6),
    st.data(),
    st.lists(st.integers(0, 40), min_size=1, max_size=5),
    st.integers(0, 2**31),
)
def test_the_helper_thread_and_the_cache_give_the_reference_walk(
    counts: list[int], data: st.DataObject, epochs: list[int], seed: int
) -> None:
    """The fast path (walk cache, walks drawn ahead by a helper thread) against the plain
    reference walk (draws.walk.draw_walks) and the plain shuffle, across random plans."""
    plan, _ = _random_plan(counts, data)
    index = plan.index
    cache = WalkCache()
    for epoch in epochs:
        out = torch.empty(plan.length, dtype=index.order.dtype)
        reference = draw_walks(
            index, plan.targets(epoch), walk_state(plan, epoch), seed, {}, out
        ).tolist()
        order = shuffle_order(plan.length, seed, epoch).tolist()
        expected = [reference[i] for i in order]
        for helper in (False, True):
            picks, shuffled = shuffled_epoch(plan, seed, epoch, helper=helper, cache=cache)
            assert picks.tolist() == reference, (epoch, helper)
            assert picks.index_select(0, shuffled).tolist() == expected, (epoch, helper)


MAKERS: dict[str, Callable[[np.ndarray], Any]] = {
    "ResampledDataset": lambda y: ResampledDataset(y, "under", labels=y, shuffle=True),
    "StratifiedBatchSampler": lambda y: StratifiedBatchSampler(y, 4, "under"),
    "RandomUnderSampler": lambda y: RandomUnderSampler(y),
}


@pytest.mark.parametrize("name", MAKERS)
def test_cached_walks_give_the_epochs_of_a_fresh_object(name: str) -> None:
    # Long undersampled cycles: the object keeps each walk between epochs (WalkCache), and
    # every epoch must still be what a new object draws for it.
    make = MAKERS[name]
    labels = np.repeat(np.arange(3), [300, 3, 5])
    kept = make(labels)
    for epoch in [0, 1, 2, 7, 3, 60, 61]:
        got, want = kept.epoch_indices(epoch), make(labels).epoch_indices(epoch)
        if isinstance(got, torch.Tensor):
            got, want = got.tolist(), want.tolist()
        assert got == want, epoch
    assert kept._epoch_draw.cache.walks, "the undersampled class's walk should have been cached"
