"""Batch samplers: per-batch composition, coverage, sharding whole batches, resume."""

from __future__ import annotations

import pickle
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_stratified, small_label_lists
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_balance.batch_samplers import ClassBalancedBatchSampler, StratifiedBatchSampler
from torch_balance.samplers import BalancedSampler
from torch_balance.strategies import Power, Progressive
from torch_balance.testing import conformance_labels


def _flat(batches: list[list[int]]) -> list[int]:
    return [i for batch in batches for i in batch]


# -- StratifiedBatchSampler ---------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    small_label_lists,
    st.integers(1, 16),
    st.sampled_from(["over", "under", "sqrt", "class"]),
    st.booleans(),
    st.integers(0, 5),
)
def test_stratified_batches_follow_the_plan(
    labels: list[int], size: int, strategy: str, drop_last: bool, epoch: int
) -> None:
    y = np.array(labels)
    plan_length = len(BalancedSampler(y, strategy).epoch_indices(0))
    if drop_last and plan_length < size:
        with pytest.raises(ValueError, match="batch_size"):
            StratifiedBatchSampler(y, size, strategy, drop_last=True)
        return
    sampler = StratifiedBatchSampler(y, size, strategy, drop_last=drop_last, seed=epoch)
    sampler.set_epoch(epoch)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    full, rem = divmod(plan_length, size)
    assert len(batches) == full + (1 if rem and not drop_last else 0)
    planned = sampler.plan.as_dict(epoch)
    assert_stratified([y[b].tolist() for b in batches], planned, size)
    drawn = Counter(y[_flat(batches)].tolist())
    assert dict(drawn) == {c: n for c, n in sampler.target_counts(epoch).items() if n}
    if not drop_last:
        # the same draws as BalancedSampler with the same arguments, only arranged in batches
        balanced = BalancedSampler(y, strategy, seed=epoch).epoch_indices(epoch)
        assert sorted(_flat(batches)) == sorted(balanced.tolist())


def test_stratified_no_batch_is_all_majority() -> None:
    y = np.array([0] * 900 + [1] * 100)
    sampler = StratifiedBatchSampler(y, 10, "instance", seed=1)
    assert all(int((y[b] == 1).sum()) == 1 for b in sampler)


def test_stratified_schedules_and_powers() -> None:
    y = conformance_labels()
    for strategy in (Progressive(3), Power(-0.5)):
        sampler = StratifiedBatchSampler(y, 7, strategy, seed=2)
        for epoch in range(3):
            sampler.set_epoch(epoch)
            assert_stratified([y[b].tolist() for b in sampler], sampler.plan.as_dict(epoch), 7)


def test_stratified_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        StratifiedBatchSampler([0, 1, 1], 0)
    with pytest.raises(TypeError, match="batch_size"):
        StratifiedBatchSampler([0, 1, 1], 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most the epoch length"):
        StratifiedBatchSampler([0, 1, 1], 5, drop_last=True)


# -- ClassBalancedBatchSampler ------------------------------------------------------------------


def _check_class_balanced(sampler: ClassBalancedBatchSampler, y: np.ndarray) -> None:
    p, k = sampler.classes_per_batch, sampler.samples_per_class
    batches = sampler.epoch_indices()
    assert len(batches) == sampler.num_batches
    per_class: dict[Any, list[int]] = {}
    places = Counter()
    for batch in batches:
        counts = Counter(y[batch].tolist())
        assert len(counts) == p and set(counts.values()) == {k}, counts
        for cls in counts:
            places[cls] += 1
        for i in batch:
            per_class.setdefault(y[i], []).append(i)
    for cls in np.unique(y).tolist():
        places.setdefault(cls, 0)
    assert max(places.values()) - min(places.values()) <= 1
    # within a class, every sample is used once before any is used again
    for cls, used in per_class.items():
        n = int((y == cls).sum())
        for start in range(0, len(used), n):
            block = used[start : start + n]
            assert len(set(block)) == len(block), (cls, block)
        if len(used) >= n:
            assert set(used[:n]) == set(np.flatnonzero(y == cls).tolist())


@settings(max_examples=60, deadline=None)
@given(small_label_lists, st.data())
def test_class_balanced_batches(labels: list[int], data: st.DataObject) -> None:
    y = np.array(labels)
    classes = len(set(labels))
    p = data.draw(st.integers(1, classes))
    k = data.draw(st.integers(1, 6))
    num_batches = data.draw(st.none() | st.integers(1, 30))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sampler = ClassBalancedBatchSampler(y, p, k, num_batches=num_batches, seed=3)
    _check_class_balanced(sampler, y)
    if num_batches is None:
        # the default epoch uses every sample of the largest class
        biggest = Counter(labels).most_common(1)[0][0]
        seen = {i for batch in sampler.epoch_indices() for i in batch}
        assert set(np.flatnonzero(y == biggest).tolist()) <= seen


def test_class_balanced_default_length() -> None:
    y = np.array([0] * 10 + [1] * 4 + [2] * 3)
    sampler = ClassBalancedBatchSampler(y, 2, 3, seed=0)
    # largest class: 10 samples -> ceil(10 / 3) = 4 places per class; 3 classes * 4 / 2 = 6
    assert sampler.num_batches == 6 and len(sampler) == 6
    assert sampler.target_counts() == {0: 12, 1: 12, 2: 12}


def test_small_class_warns_and_repeats() -> None:
    y = np.array([0] * 8 + [1] * 8 + [2])
    with pytest.warns(UserWarning, match=r"fewer than samples_per_class=4.*2 \(1\)"):
        sampler = ClassBalancedBatchSampler(y, 3, 4, seed=0)
    for batch in sampler:
        assert Counter(y[batch].tolist()) == {0: 4, 1: 4, 2: 4}
        assert batch.count(16) == 4


def test_too_many_classes_per_batch_names_both() -> None:
    with pytest.raises(ValueError, match=r"classes_per_batch: .*\(3\), got 4"):
        ClassBalancedBatchSampler([0, 1, 2, 2], 4, 1)
    with pytest.raises(ValueError, match="samples_per_class"):
        ClassBalancedBatchSampler([0, 1, 2, 2], 2, 0)
    with pytest.raises(ValueError, match="num_batches"):
        ClassBalancedBatchSampler([0, 1, 2, 2], 2, 1, num_batches=0)


def test_class_balanced_with_string_labels_and_a_dataset() -> None:
    names = ["cat", "dog", "cat", "eel", "dog", "eel"]

    class Named(torch.utils.data.Dataset):
        targets = tuple(names)

        def __len__(self) -> int:
            return 6

    sampler = ClassBalancedBatchSampler(Named(), 3, 2, seed=5)
    assert sampler.target_counts() == {"cat": 2, "dog": 2, "eel": 2}
    _check_class_balanced(sampler, np.array(names, dtype=object))


# -- both: sharding whole batches, resume, pickling --------------------------------------------


def _samplers(**kw: Any) -> list[Any]:
    y = conformance_labels()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return [
            ClassBalancedBatchSampler(y, 2, 4, num_batches=11, **kw),
            StratifiedBatchSampler(y, 6, "over", **kw),
        ]


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_get_whole_batches_and_the_same_number(
    which: int, world: int, drop_last: bool
) -> None:
    whole = _samplers(seed=1)[which].epoch_indices(3)
    for epoch in (3, 4):
        shards = []
        for rank in range(world):
            sampler = _samplers(seed=1, num_replicas=world, rank=rank, drop_last=drop_last)[which]
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
            assert len(shards[-1]) == len(sampler)
        assert len({len(s) for s in shards}) == 1
        if epoch == 3:
            merged = [b for step in zip(*shards, strict=True) for b in step]
            full = [b for b in whole if len(b) == len(whole[0])]
            reference = full if drop_last else whole
            expected = (reference * 2)[: len(merged)]
            assert merged == expected


@pytest.mark.parametrize("which", [0, 1])
def test_resume_mid_epoch_at_batch_granularity(which: int) -> None:
    sampler = _samplers(seed=2, num_replicas=2, rank=1)[which]
    sampler.set_epoch(5)
    expected = list(sampler)
    sampler.set_epoch(5)
    it = iter(sampler)
    head = [next(it) for _ in range(3)]
    state = sampler.state_dict()
    # 3 whole batches on each of 2 ranks: global batch position 6, the same on either rank
    assert state["position"] == 6 and state["epoch"] == 5
    fresh = _samplers(seed=2, num_replicas=2, rank=1)[which]
    fresh.load_state_dict(pickle.loads(pickle.dumps(state)))
    assert head + list(fresh) == expected
    assert fresh.epoch == 6
    other_rank = _samplers(seed=2, num_replicas=2, rank=0)[which]
    other_rank.load_state_dict(state)  # rank 1's state continues rank 0 exactly
    whole = _samplers(seed=2, num_replicas=2, rank=0)[which]
    whole.set_epoch(5)
    assert list(other_rank) == list(whole)[3:]
