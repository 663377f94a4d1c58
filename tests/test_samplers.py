"""Draws and samplers: per-sample multiplicities, the walk across epochs, sharding, resume."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import label_vectors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torch_balance import (
    BalancedSampler,
    Deferred,
    LabelIndex,
    Progressive,
    RandomOverSampler,
    RandomUnderSampler,
    make_plan,
)
from torch_balance.draws import draw_epoch, walk_state

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def per_class(labels: np.ndarray, indices: list[int]) -> dict[int, Counter[int]]:
    out: dict[int, Counter[int]] = {}
    for i in indices:
        out.setdefault(int(labels[i]), Counter())[i] += 1
    return out


@FAST
@given(
    labels=label_vectors(),
    q=st.sampled_from([-1.0, 0.0, 0.5, 1.0]),
    n=st.integers(1, 300),
    epoch=st.integers(0, 20),
    seed=st.integers(0, 2**40),
)
def test_each_sample_floor_or_ceil_times(
    labels: np.ndarray, q: float, n: int, epoch: int, seed: int
) -> None:
    from torch_balance import Power

    plan = make_plan(LabelIndex(labels), Power(q), num_samples=n)
    drawn = draw_epoch(plan, seed, epoch).tolist()
    assert len(drawn) == n
    targets = plan.as_dict(epoch)
    groups = per_class(labels, drawn)
    for cls, k in targets.items():
        members = np.flatnonzero(labels == cls)
        times = groups.get(cls, Counter())
        assert sum(times.values()) == k
        low, high = k // len(members), -(-k // len(members))
        for i in members:
            assert low <= times.get(int(i), 0) <= high


@FAST
@given(labels=label_vectors(min_classes=2), seed=st.integers(0, 1000))
def test_undersampling_walks_every_sample_before_repeating(labels: np.ndarray, seed: int) -> None:
    sampler = RandomUnderSampler(labels, seed=seed)
    index = sampler.index
    k = sampler.target_counts()
    for code, cls in enumerate(index.keys()):
        n_c, k_c = int(index.counts[code]), k[cls]
        if k_c == 0 or k_c >= n_c:
            continue
        cycle_epochs = -(-n_c // k_c)
        seen: set[int] = set()
        for epoch in range(cycle_epochs):
            drawn = [i for i in sampler.epoch_indices(epoch).tolist() if labels[i] == cls]
            assert len(drawn) == len(set(drawn)) == k_c
            if epoch < cycle_epochs - 1:
                assert not seen & set(drawn), "a sample repeated before all were used"
            seen |= set(drawn)
        assert seen == set(np.flatnonzero(labels == cls).tolist())


def test_walk_closed_form_matches_the_epoch_by_epoch_walk() -> None:
    from torch_balance.strategies import Plan

    labels = np.repeat(np.arange(4), [50, 7, 3, 1])
    index = LabelIndex(labels)
    constant = make_plan(index, "class", num_samples=37)
    stepped = Plan(index, constant._rule, constant=False)
    for epoch in range(40):
        for a, b in zip(walk_state(constant, epoch), walk_state(stepped, epoch), strict=True):
            assert np.array_equal(a, b), epoch


def test_schedule_walk_uses_every_sample_and_no_duplicates_within_epochs() -> None:
    labels = np.array([0] * 50 + [1] * 7 + [2] * 3)
    plan = make_plan(LabelIndex(labels), Progressive(6), num_samples=40)
    seen: set[int] = set()
    for epoch in range(12):
        drawn = [i for i in draw_epoch(plan, 11, epoch).tolist() if labels[i] == 0]
        assert len(drawn) == len(set(drawn)) == plan.targets(epoch)[0]
        seen |= set(drawn)
    assert seen == set(range(50))


def test_replacement_draws_iid_within_class() -> None:
    labels = np.array([0] * 100 + [1] * 5)
    sampler = BalancedSampler(labels, "class", replacement=True, seed=1)
    drawn = sampler.epoch_indices(0).tolist()
    groups = per_class(labels, drawn)
    assert Counter(labels[drawn].tolist()) == Counter(sampler.target_counts())
    # i.i.d.: the 100-sample class shows repeats in 52 draws with overwhelming probability
    assert max(groups[0].values()) > 1


def test_epoch_and_seed_change_the_draw_not_the_composition() -> None:
    labels = np.repeat(np.arange(4), [30, 10, 5, 2])
    sampler = RandomOverSampler(labels, seed=0)
    a, b = sampler.epoch_indices(0), sampler.epoch_indices(1)
    assert not torch.equal(a, b)
    assert Counter(labels[a.numpy()].tolist()) == Counter(labels[b.numpy()].tolist())


def test_sampler_redraws_each_pass_and_set_epoch_replays() -> None:
    sampler = RandomOverSampler(np.array([0] * 6 + [1] * 2), seed=5)
    first, second = list(sampler), list(sampler)
    assert first != second and sampler.epoch == 2
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_distributed_defaults_and_errors() -> None:
    labels = [0, 0, 0, 1]
    sampler = BalancedSampler(labels, num_replicas=4, rank=3)
    assert len(sampler) == 2  # 6 indices padded to 8 over 4 ranks
    assert len(BalancedSampler(labels, num_replicas=4, rank=3, drop_last=True)) == 1
    with pytest.raises(ValueError, match="rank: expected an integer in"):
        BalancedSampler(labels, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        BalancedSampler(labels, num_replicas=0)
    with pytest.raises(ValueError, match="drop_last"):
        BalancedSampler(labels, num_replicas=8, rank=0, drop_last=True)


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(TypeError, match="replacement"):
        BalancedSampler([0, 1], replacement="yes")
    with pytest.raises(ValueError, match="seed"):
        BalancedSampler([0, 1], seed=-1)
    with pytest.raises(TypeError, match="seed"):
        BalancedSampler([0, 1], seed=1.5)
    with pytest.raises(ValueError, match="epoch"):
        BalancedSampler([0, 1]).set_epoch(-1)
    with pytest.raises(TypeError, match="labels"):
        BalancedSampler([0.5, 1.0])
    with pytest.raises(TypeError, match="labels"):
        BalancedSampler(np.array([0.0, float("nan")]))
    with pytest.raises(ValueError, match="labels"):
        BalancedSampler(np.zeros((4, 2), dtype=int))
    with pytest.raises(ValueError, match="labels: expected at least one"):
        BalancedSampler([])
    with pytest.raises(TypeError, match="strategy"):
        RandomOverSampler([0, 1], strategy="under")


def test_multilabel_input_points_to_repeat_factor_sampler() -> None:
    labels = np.empty(3, dtype=object)
    labels[:] = [[1, 2], [2], [3]]
    with pytest.raises(ValueError, match="RepeatFactorSampler"):
        BalancedSampler(labels)


def test_state_refuses_other_settings() -> None:
    labels = [0, 0, 0, 1, 1, 2]
    state = BalancedSampler(labels, num_replicas=2, rank=0).state_dict()
    with pytest.raises(ValueError, match="rank"):
        BalancedSampler(labels, num_replicas=2, rank=1).load_state_dict(state)
    with pytest.raises(ValueError, match="num_replicas"):
        BalancedSampler(labels).load_state_dict(state)
    with pytest.raises(ValueError, match="kind"):
        BalancedSampler(labels, num_replicas=2, rank=0).load_state_dict({"epoch": 0})
    with pytest.raises(TypeError, match="state_dict"):
        BalancedSampler(labels).load_state_dict([1, 2])


def test_resume_survives_set_epoch_of_the_same_epoch() -> None:
    labels = np.repeat(np.arange(3), [20, 6, 2])
    sampler = RandomOverSampler(labels, seed=9)
    sampler.set_epoch(4)
    full = list(sampler)
    sampler.set_epoch(4)
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(17)]
    state = sampler.state_dict()
    with pytest.raises(ValueError, match=r"state_dict\['seed'\].*seed=9"):
        RandomOverSampler(labels, seed=0).load_state_dict(state)
    resumed = RandomOverSampler(labels, seed=9)
    resumed.load_state_dict(state)
    resumed.set_epoch(4)  # what a training loop does after loading a checkpoint
    assert head + list(resumed) == full


def test_memory_no_list_of_the_epoch() -> None:
    """The sampler hands out indices chunk by chunk; the epoch is never one Python list."""
    from torch_balance.distributed import CHUNK

    labels = np.repeat(np.arange(3), [200_000, 50_000, 10_000])
    sampler = RandomOverSampler(labels)
    iterator = iter(sampler)
    next(iterator)
    current = sampler._state._pass
    assert current is not None and current.size == CHUNK < len(sampler)
    assert sampler.state_dict()["yielded"] == 1


def test_pickle_keeps_epoch_and_seed() -> None:
    sampler = BalancedSampler([0, 0, 1], Deferred(1), seed=4)
    sampler.set_epoch(3)
    copy = pickle.loads(pickle.dumps(sampler))
    assert copy.epoch == 3 and copy.seed == 4 and list(copy) == list(sampler)


def test_repr_is_informative() -> None:
    text = repr(RandomUnderSampler([0, 0, 1], seed=2))
    assert "RandomUnderSampler" in text and "seed=2" in text


def test_a_list_of_samples_is_a_dataset_not_labels() -> None:
    samples = [(np.zeros(3), 0), (np.zeros(3), 1), (np.zeros(3), 1)]
    assert BalancedSampler(samples).target_counts() == {0: 2, 1: 2}
    assert BalancedSampler(["b", "a", "a"]).target_counts() == {"a": 2, "b": 2}
