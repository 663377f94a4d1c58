"""Samplers: BalancedSampler and its shortcuts, and repeat-factor sampling (LVIS)."""

from __future__ import annotations

import math
import pickle
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from conftest import label_vectors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torch_balance import (
    BalancedSampler,
    LabelIndex,
    Progressive,
    RandomOverSampler,
    RandomUnderSampler,
    make_plan,
)
from torch_balance.draws import draw_epoch, walk_state
from torch_balance.labels import MultiLabelIndex
from torch_balance.samplers import RepeatFactorSampler, repeat_factors

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
    # the rank and the world size are not settings: the state loads anywhere
    BalancedSampler(labels, num_replicas=2, rank=1).load_state_dict(state)
    BalancedSampler(labels).load_state_dict(state)
    with pytest.raises(ValueError, match=r"state_dict\['position'\]: expected an integer"):
        BalancedSampler(labels).load_state_dict({**state, "position": 10**9})
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
    from torch_balance.sharding import LIST_CHUNK

    labels = np.repeat(np.arange(3), [200_000, 50_000, 10_000])
    sampler = RandomOverSampler(labels)
    iterator = iter(sampler)
    next(iterator)
    current = sampler._state._pass
    assert current is not None and current.size == LIST_CHUNK < len(sampler)
    assert sampler.state_dict()["position"] == 1


def test_repr_is_informative() -> None:
    text = repr(RandomUnderSampler([0, 0, 1], seed=2))
    assert "RandomUnderSampler" in text and "seed=2" in text


def test_a_list_of_samples_is_a_dataset_not_labels() -> None:
    samples = [(np.zeros(3), 0), (np.zeros(3), 1), (np.zeros(3), 1)]
    assert BalancedSampler(samples).target_counts() == {0: 2, 1: 2}
    assert BalancedSampler(["b", "a", "a"]).target_counts() == {"a": 2, "b": 2}


# Repeat-factor sampling
# 10 images; category 0 is everywhere, 1 in two images, 2 in one, image 9 has none
SETS: list[tuple[int, ...]] = [
    (0,),
    (0,),
    (0, 1),
    (0,),
    (0, 2),
    (0,),
    (0, 1),
    (0,),
    (0,),
    (),
]


def _reference(sets: list[Any], t: float, sqrt: bool) -> list[float]:
    """The LVIS rule written out per image, as in the paper."""
    n = len(sets)
    categories = {c for s in sets for c in s}
    f = {c: sum(c in set(s) for s in sets) / n for c in categories}
    r = {c: max(1.0, (math.sqrt(t / f[c]) if sqrt else t / f[c])) for c in categories}
    return [max((r[c] for c in set(s)), default=1.0) for s in sets]


def test_hand_computed_factors() -> None:
    # f(0) = 0.9, f(1) = 0.2, f(2) = 0.1; t = 0.4
    # sqrt: r(0) = 1, r(1) = sqrt(2), r(2) = 2;  linear: r(1) = 2, r(2) = 4
    got = repeat_factors(SETS, 0.4)
    assert got.dtype == torch.float64
    expected = [1, 1, math.sqrt(2), 1, 2, 1, math.sqrt(2), 1, 1, 1]
    assert got.tolist() == pytest.approx(expected)
    linear = repeat_factors(SETS, 0.4, sqrt=False).tolist()
    assert linear == pytest.approx([1, 1, 2, 1, 4, 1, 2, 1, 1, 1])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 12), max_size=5), min_size=1, max_size=60),
    st.floats(1e-3, 2.0),
    st.booleans(),
)
def test_factors_match_the_rule(sets: list[list[int]], t: float, sqrt: bool) -> None:
    got = repeat_factors(sets, t, sqrt=sqrt).tolist()
    assert got == pytest.approx(_reference(sets, t, sqrt), rel=1e-12)


def test_factors_accept_index_multi_hot_and_datasets() -> None:
    hot = torch.zeros(len(SETS), 3, dtype=torch.bool)
    for i, s in enumerate(SETS):
        hot[i, list(s)] = True
    expected = repeat_factors(SETS, 0.4)
    assert torch.equal(repeat_factors(hot, 0.4), expected)
    assert torch.equal(repeat_factors(MultiLabelIndex(SETS), 0.4), expected)

    class Tagged(torch.utils.data.Dataset):
        labelsets = SETS

        def __len__(self) -> int:
            return len(SETS)

    assert torch.equal(repeat_factors(Tagged(), 0.4), expected)
    assert torch.equal(RepeatFactorSampler(Tagged(), 0.4).repeat_factors, expected)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"threshold": 0}, ValueError, "threshold"),
        ({"threshold": float("nan")}, ValueError, "threshold"),
        ({"threshold": "0.1"}, TypeError, "threshold"),
        ({"rounding": "floor"}, ValueError, "rounding"),
        ({"sqrt": 1}, TypeError, "sqrt"),
        ({"seed": -1}, ValueError, "seed"),
        ({"num_replicas": 2, "rank": 2}, ValueError, "rank"),
    ],
)
def test_repeat_factor_bad_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        RepeatFactorSampler(SETS, **kwargs)


def test_stochastic_copies_are_trunc_plus_bernoulli() -> None:
    sampler = RepeatFactorSampler(SETS, 0.4, seed=1)
    r = sampler.repeat_factors
    low, high = torch.floor(r).long(), torch.ceil(r).long()
    totals = []
    copies_sum = torch.zeros(len(SETS), dtype=torch.float64)
    epochs = 2000
    for epoch in range(epochs):
        copies = sampler.image_copies(epoch)
        assert bool(((copies == low) | (copies == high)).all())
        totals.append(int(copies.sum()))
        copies_sum += copies
    # the mean epoch length is sum_i r_i: its standard error is at most sqrt(N / 4 / epochs)
    tolerance = 5 * math.sqrt(len(SETS) / 4 / epochs)
    assert abs(np.mean(totals) - float(r.sum())) < tolerance
    assert len(set(totals)) > 1  # the draw changes length from epoch to epoch
    per_image = (copies_sum / epochs).tolist()
    assert per_image == pytest.approx(r.tolist(), abs=5 * math.sqrt(0.25 / epochs))


def test_fixed_length_is_round_sum_and_holds_every_epoch() -> None:
    sampler = RepeatFactorSampler(SETS, 0.4, seed=3)
    expected = math.floor(
        float(sampler.repeat_factors.sum()) + 0.5
    )  # 7 + 2 sqrt(2) + 2 = 11.83 -> 12
    assert sampler.global_length == expected == len(sampler) == sampler.num_samples == 12
    lengths = set()
    for epoch in range(40):
        sampler.set_epoch(epoch)
        assert len(list(sampler)) == 12
        lengths.add(int(sampler.image_copies(epoch).sum()))
    assert min(lengths) < 12 < max(lengths)  # both the cut and the extension were exercised


def test_cut_and_extension_rule() -> None:
    sampler = RepeatFactorSampler(SETS, 0.4, seed=3)
    for epoch in range(40):
        copies = sampler.image_copies(epoch)
        drawn = torch.repeat_interleave(torch.arange(len(SETS)), copies)
        epoch_indices = sampler.epoch_indices(epoch)
        length = int(copies.sum())
        if length >= 12:
            # a prefix of a shuffle of the draw: no image beyond its drawn copies
            assert bool((torch.bincount(epoch_indices, minlength=10) <= copies).all())
        else:
            # the whole draw, then its start again
            head = epoch_indices[:length]
            assert sorted(head.tolist()) == drawn.tolist()
            assert epoch_indices[length:].tolist() == head[: 12 - length].tolist()


def test_ceil_rounding_is_fixed() -> None:
    sampler = RepeatFactorSampler(SETS, 0.4, sqrt=False, rounding="ceil", seed=0)
    copies = torch.tensor([1, 1, 2, 1, 4, 1, 2, 1, 1, 1])
    assert len(sampler) == int(copies.sum()) == 15
    for epoch in range(5):
        assert torch.equal(sampler.image_copies(epoch), copies)
        sampler.set_epoch(epoch)
        assert torch.bincount(torch.tensor(list(sampler)), minlength=10).tolist() == copies.tolist()
    assert sampler.category_counts(0) == {0: 14, 1: 4, 2: 4}


@pytest.mark.parametrize("rounding", ["stochastic", "ceil"])
@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_get_equal_counts_every_epoch(rounding: str, world: int, drop_last: bool) -> None:
    length = None
    for epoch in range(12):
        shards = []
        for rank in range(world):
            sampler = RepeatFactorSampler(
                SETS,
                0.4,
                rounding=rounding,  # type: ignore[arg-type]
                seed=5,
                num_replicas=world,
                rank=rank,
                drop_last=drop_last,
            )
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
            assert len(shards[-1]) == len(sampler)
        sizes = {len(s) for s in shards}
        assert len(sizes) == 1
        length = sizes.pop() if length is None else length
        assert len(shards[0]) == length  # the same on every epoch
        whole = RepeatFactorSampler(SETS, 0.4, rounding=rounding, seed=5).epoch_indices(epoch)  # type: ignore[arg-type]
        merged = [i for step in zip(*shards, strict=True) for i in step]
        expected = (whole.tolist() * 2)[: len(merged)]
        assert merged == expected


def test_resume_and_other_label_sets() -> None:
    sampler = RepeatFactorSampler(SETS, 0.4, seed=8, num_replicas=2, rank=1)
    sampler.set_epoch(3)
    expected = list(sampler)
    sampler.set_epoch(3)
    it = iter(sampler)
    head = [next(it) for _ in range(4)]
    state = pickle.loads(pickle.dumps(sampler.state_dict()))
    fresh = RepeatFactorSampler(SETS, 0.4, seed=8, num_replicas=2, rank=1)
    fresh.load_state_dict(state)
    assert head + list(fresh) == expected
    assert fresh.epoch == 4
    other = RepeatFactorSampler([*SETS[:-1], (2,)], 0.4, seed=8, num_replicas=2, rank=1)
    with pytest.raises(ValueError, match="other labels"):
        other.load_state_dict(state)
    other_threshold = RepeatFactorSampler(SETS, 0.5, seed=8, num_replicas=2, rank=1)
    with pytest.raises(ValueError, match="threshold"):
        other_threshold.load_state_dict(state)


def test_string_categories_and_category_counts() -> None:
    sets = [("cat",), ("cat", "dog"), (), ("cat",)]
    sampler = RepeatFactorSampler(sets, 0.5, sqrt=False, rounding="ceil")
    # f(cat) = 0.75 -> 1; f(dog) = 0.25 -> 2
    assert sampler.repeat_factors.tolist() == [1.0, 2.0, 1.0, 1.0]
    assert sampler.category_counts() == {"cat": 4, "dog": 2}


def test_single_label_samplers_point_to_repeat_factor_sampler() -> None:
    for bad in ([[0, 1], [1], [2]], np.array([[0, 1], [1, 0]]), torch.tensor([[1, 0], [0, 1]])):
        with pytest.raises(ValueError, match="RepeatFactorSampler"):
            BalancedSampler(bad)
        with pytest.raises(ValueError, match="RepeatFactorSampler"):
            RandomOverSampler(bad)


def test_large_index_from_csr_stays_compact() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    sizes = rng.integers(0, 4, n)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    values = rng.zipf(1.5, int(offsets[-1])) % 300
    index = MultiLabelIndex.from_csr(values, offsets)
    sampler = RepeatFactorSampler(index, 0.01)
    assert sampler.index is index and len(sampler) == sampler.global_length
    assert sampler.global_length == math.floor(float(sampler.repeat_factors.sum()) + 0.5)
    assert len(list(sampler)) == len(sampler)


def test_next_epoch_drawn_ahead_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # From the second pass on, a helper draws the next epoch's permutation while this one is
    # handed out: epochs run in order, a jump with set_epoch, a pass left half-read and a
    # seed changed in between must all be what a fresh sampler draws for that epoch.
    import torch_balance.draws.epoch as epoch_draw

    monkeypatch.setattr(epoch_draw, "helper_allowed", lambda *args, **kwargs: True)
    made = []
    original = epoch_draw.EpochDraw._draw_ahead

    def spy(self: epoch_draw.EpochDraw, seed: int, epoch: int) -> None:
        made.append(epoch)
        original(self, seed, epoch)

    monkeypatch.setattr(epoch_draw.EpochDraw, "_draw_ahead", spy)
    labels = np.repeat(np.arange(4), [5000, 800, 150, 50])
    sampler = BalancedSampler(labels, "sqrt", seed=3)
    for step in range(6):
        if step == 3:
            sampler.set_epoch(7)
        if step == 4:
            half = iter(sampler)
            for _ in range(100):
                next(half)
            del half
            sampler.seed = 5
        epoch, seed = sampler.epoch, sampler.seed
        got = list(sampler)
        want = BalancedSampler(labels, "sqrt", seed=seed).epoch_indices(epoch).tolist()
        assert got == want, (step, epoch)
    assert made, "the next epoch should have been drawn ahead"
    assert sampler._epoch_draw.cache.buffer is None


def test_work_alongside_is_joined_and_its_errors_dropped() -> None:
    import threading

    from torch_balance._threads import alongside

    started, release = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(5)

    items = alongside(iter(range(5)), slow, helper=True)
    assert next(items) == 0 and not started.is_set(), "the helper starts after the first item"
    assert next(items) == 1 and started.wait(5)
    release.set()
    items.close()  # joins the helper
    names = [t.name for t in threading.enumerate() if t.name == "torch_balance-alongside"]
    assert names == []

    def broken() -> None:
        raise RuntimeError("ahead failed")

    assert list(alongside(iter(range(3)), broken, helper=True)) == [0, 1, 2]
    ran = []
    assert list(alongside(iter(range(3)), lambda: ran.append(1), helper=False)) == [0, 1, 2]
    assert ran == []


def test_next_epoch_drawn_ahead_inside_a_dataloader_with_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The real size (an epoch of 2**17 indices, where the helper runs on two CPUs) through
    # a DataLoader with worker processes, epochs set as trainers set them.
    from torch.utils.data import DataLoader

    import torch_balance.draws.epoch as epoch_draw
    from torch_balance.testing import IndexDataset

    monkeypatch.setattr(epoch_draw, "helper_allowed", lambda *args, **kwargs: True)
    labels = np.repeat(np.arange(3), [100_000, 25_000, 6_072])
    sampler = BalancedSampler(labels, "class", seed=11)
    assert len(sampler) == 1 << 17
    loader = DataLoader(IndexDataset(len(labels)), batch_size=8192, sampler=sampler, num_workers=2)
    for epoch in (0, 1, 2, 4):
        sampler.set_epoch(epoch)
        got = torch.cat(list(loader))
        assert torch.equal(got, sampler.epoch_indices(epoch).long()), epoch
    assert sampler._epoch_draw.ahead._held is not None, "the helper should have drawn ahead"
