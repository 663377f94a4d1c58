"""Repeat-factor sampling: the LVIS factors, stochastic rounding, a fixed length across ranks."""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_balance.batches import RepeatFactorSampler, repeat_factors
from torch_balance.labels import MultiLabelIndex
from torch_balance.samplers import BalancedSampler, RandomOverSampler

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
def test_bad_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
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
        copies = sampler.epoch_counts(epoch)
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
    assert sampler.num_samples == expected == len(sampler) == 12
    lengths = set()
    for epoch in range(40):
        sampler.set_epoch(epoch)
        assert len(list(sampler)) == 12
        lengths.add(int(sampler.epoch_counts(epoch).sum()))
    assert min(lengths) < 12 < max(lengths)  # both the cut and the extension were exercised


def test_cut_and_extension_rule() -> None:
    sampler = RepeatFactorSampler(SETS, 0.4, seed=3)
    for epoch in range(40):
        copies = sampler.epoch_counts(epoch)
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
        assert torch.equal(sampler.epoch_counts(epoch), copies)
        sampler.set_epoch(epoch)
        assert torch.bincount(torch.tensor(list(sampler)), minlength=10).tolist() == copies.tolist()
    assert sampler.target_counts(0) == {0: 14, 1: 4, 2: 4}


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


def test_deterministic_and_pickled() -> None:
    a = RepeatFactorSampler(SETS, 0.4, seed=2)
    b = pickle.loads(pickle.dumps(a))
    assert torch.equal(a.epoch_indices(7), b.epoch_indices(7))
    assert not torch.equal(a.epoch_indices(7), a.epoch_indices(8))
    assert not torch.equal(
        a.epoch_indices(7), RepeatFactorSampler(SETS, 0.4, seed=3).epoch_indices(7)
    )


def test_string_categories_and_target_counts() -> None:
    sets = [("cat",), ("cat", "dog"), (), ("cat",)]
    sampler = RepeatFactorSampler(sets, 0.5, sqrt=False, rounding="ceil")
    # f(cat) = 0.75 -> 1; f(dog) = 0.25 -> 2
    assert sampler.repeat_factors.tolist() == [1.0, 2.0, 1.0, 1.0]
    assert sampler.target_counts() == {"cat": 4, "dog": 2}


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
    assert sampler.index is index and len(sampler) == sampler.num_samples
    assert sampler.num_samples == math.floor(float(sampler.repeat_factors.sum()) + 0.5)
    assert len(list(sampler)) == len(sampler)
