"""MixtureSampler and the mixture kernels: shares, exact counts, class mixes, hostile input."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from conftest import label_vectors
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import ConcatDataset, IterableDataset, TensorDataset

from torch_balance import (
    BalancedSampler,
    Feedback,
    MixtureSampler,
    Power,
    Progressive,
    mixture_shares,
    mixtures,
)
from torch_balance.draws import join_sources, source_choices, temperature_shares

# chi-square critical values at p = 0.001 by degrees of freedom
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47}


def chi_square(observed: np.ndarray, shares: np.ndarray) -> float:
    expected = shares * observed.sum()
    return float(((observed - expected) ** 2 / expected).sum())


def long_tail(counts: list[int], seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(labels)


SOURCES = [long_tail([60, 25, 10, 5]), long_tail([30, 10], seed=1), long_tail([20, 20, 2], seed=2)]


# ---- kernels ----------------------------------------------------------------------------


def test_temperature_one_is_proportional_to_size() -> None:
    sizes = [900, 90, 10]
    assert np.allclose(temperature_shares(sizes, 1.0), np.array(sizes) / 1000)


def test_temperature_to_infinity_is_uniform_and_flattens_on_the_way() -> None:
    sizes = [10**6, 10**3, 7]
    assert temperature_shares(sizes, math.inf).tolist() == [1 / 3] * 3
    assert np.allclose(temperature_shares(sizes, 1e12), 1 / 3, atol=1e-9)
    smallest = [temperature_shares(sizes, t)[2] for t in (1.0, 2.0, 5.0, 50.0)]
    assert smallest == sorted(smallest) and smallest[-1] < 1 / 3


def test_a_tiny_temperature_puts_everything_on_the_largest_without_overflow() -> None:
    shares = temperature_shares([1000, 999, 5], 1e-6)
    assert np.isfinite(shares).all() and shares[0] == pytest.approx(1.0)


def test_square_root_temperature() -> None:
    assert temperature_shares([400, 100], 2.0).tolist() == pytest.approx([2 / 3, 1 / 3])


def test_source_choices_follow_the_shares_by_chi_square() -> None:
    shares = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    codes = source_choices(shares, 20_000, torch.Generator().manual_seed(3))
    observed = np.bincount(codes.numpy(), minlength=3)
    assert chi_square(observed, shares.numpy()) < CHI2_999[2]
    skewed = np.array([0.6, 0.25, 0.15])
    assert chi_square(observed, skewed) > CHI2_999[2]  # the test can tell a wrong mix


def test_join_sources_shifts_each_part_into_the_concatenation() -> None:
    joined = join_sources([torch.tensor([2, 0]), torch.tensor([1])], [0, 3], torch.int32)
    assert joined.tolist() == [2, 0, 4] and joined.dtype == torch.int32


# ---- the sampler ------------------------------------------------------------------------


def owners(indices: Any, sizes: list[int]) -> np.ndarray:
    return np.searchsorted(np.cumsum(sizes), np.asarray(indices), side="right")


def test_each_source_gets_its_exact_count_every_epoch() -> None:
    sampler = MixtureSampler(SOURCES, proportions=[5, 3, 2], num_samples=300, seed=1)
    assert sampler.source_counts == [150, 90, 60]
    for epoch in range(3):
        sampler.set_epoch(epoch)
        counts = np.bincount(owners(list(sampler), sampler.source_sizes), minlength=3)
        assert counts.tolist() == [150, 90, 60]


def test_source_shares_hold_in_every_stretch_of_the_epoch_by_chi_square() -> None:
    sizes = [4000, 3000, 3000]
    sampler = MixtureSampler([np.zeros(n, dtype=np.int64) for n in sizes], seed=2)
    shares = np.array(sizes) / sum(sizes)
    epoch = sampler.epoch_indices(0).numpy()
    for start in range(0, 10_000, 2000):  # the shuffle mixes the sources all along
        observed = np.bincount(owners(epoch[start : start + 2000], sizes), minlength=3)
        assert chi_square(observed, shares) < CHI2_999[2]
    unshuffled = np.bincount(owners(np.arange(2000), sizes), minlength=3)
    assert chi_square(unshuffled, shares) > CHI2_999[2]  # the test can tell a sorted epoch


def test_per_source_class_mix_is_the_plan() -> None:
    sampler = MixtureSampler(
        SOURCES,
        temperature=2.0,
        strategy=["class", "sqrt", None],
        num_samples=500,
        seed=3,
    )
    report = sampler.mixture_report()
    targets = sampler.class_targets()
    assert targets[2] is None and report["sources"][2]["classes"] is None
    for s in (0, 1):
        classes = report["sources"][s]["classes"]
        assert {k: t for k, (t, _) in classes.items()} == targets[s]
        assert all(t == d for t, d in classes.values())
        assert sum(targets[s].values()) == sampler.source_counts[s]
    assert len(set(targets[0].values()) - {0}) <= 2  # "class": equal within one
    epoch = sampler.epoch_indices(0).numpy()
    first = epoch[owners(epoch, sampler.source_sizes) == 0]
    drawn = Counter(SOURCES[0][first].tolist())
    assert dict(drawn) == {k: v for k, v in targets[0].items() if v}
    assert report["total_variation"] < 1e-2


def test_one_source_draws_what_the_balanced_sampler_plans() -> None:
    labels = SOURCES[0]
    mixture = MixtureSampler([labels], strategy="over")
    single = BalancedSampler(labels, "over")
    assert len(mixture) == len(labels)  # num_samples defaults to the sources' size
    longer = MixtureSampler([labels], strategy="over", num_samples=single.global_length)
    assert longer.class_targets()[0] == single.target_counts()
    assert Counter(labels[list(longer)].tolist()) == Counter(single.target_counts())


def test_over_and_under_keep_their_proportions_scaled_to_the_share() -> None:
    sampler = MixtureSampler(
        [SOURCES[0], SOURCES[1]], proportions=[1, 1], strategy=["under", "over"], num_samples=80
    )
    assert sampler.class_targets() == [{0: 10, 1: 10, 2: 10, 3: 10}, {0: 20, 1: 20}]


def test_per_source_sampling_strategy() -> None:
    sampler = MixtureSampler(
        [SOURCES[0], SOURCES[1]],
        proportions=[1, 1],
        strategy="over",
        sampling_strategy=[{1: 60, 2: 60, 3: 60}, "auto"],
        num_samples=480,
    )
    assert sampler.class_targets()[0] == {0: 60, 1: 60, 2: 60, 3: 60}


def test_a_schedule_inside_a_source_moves_its_classes_not_its_share() -> None:
    sampler = MixtureSampler(SOURCES[:2], proportions=[1, 1], strategy=[Progressive(3), None])
    plans = [sampler.class_targets(e)[0] for e in range(3)]
    assert plans[0] == {0: 42, 1: 18, 2: 7, 3: 3}  # the source's own mix (60:25:10:5)
    assert plans[2] == {0: 18, 1: 18, 2: 17, 3: 17}  # class-balanced from epoch 2
    assert all(sum(p.values()) == sampler.source_counts[0] == 70 for p in plans)
    assert plans[0][0] > plans[1][0] > plans[2][0]  # the largest class gives way, epoch by epoch
    sampler.set_epoch(2)
    report = sampler.mixture_report()
    assert all(t == d for t, d in report["sources"][0]["classes"].values())


def test_a_source_of_share_zero_is_never_drawn() -> None:
    sampler = MixtureSampler(SOURCES, proportions=[1, 0, 1], strategy="class")
    assert sampler.source_counts[1] == 0 and sampler.class_targets()[1] == {0: 0, 1: 0}
    assert not (owners(list(sampler), sampler.source_sizes) == 1).any()


def test_replacement_draws_the_planned_counts_too() -> None:
    sampler = MixtureSampler(SOURCES, strategy="class", replacement=True, num_samples=120)
    report = sampler.mixture_report()
    for row in report["sources"]:
        assert all(t == d for t, d in row["classes"].values())


def test_a_concat_dataset_reads_each_part_and_indexes_the_concatenation() -> None:
    parts = [
        TensorDataset(torch.arange(n).float(), torch.as_tensor(labels))
        for n, labels in ((100, SOURCES[0]), (40, SOURCES[1]))
    ]
    concat = ConcatDataset(parts)
    sampler = MixtureSampler(concat, proportions=[1, 3], strategy=[Power(0), None], seed=4)
    assert sampler.dataset is concat and sampler.source_counts == [35, 105]
    seen = [int(concat[i][1]) for i in sampler]
    assert len(seen) == 140
    from_list = MixtureSampler(parts, proportions=[1, 3], strategy=[Power(0), None], seed=4)
    assert isinstance(from_list.dataset, ConcatDataset) and list(from_list) == list(
        MixtureSampler(concat, proportions=[1, 3], strategy=[Power(0), None], seed=4)
    )


def test_label_vectors_give_range_as_the_dataset() -> None:
    sampler = MixtureSampler(SOURCES)
    assert sampler.dataset == range(sum(len(s) for s in SOURCES))


def test_a_state_for_other_shares_is_refused() -> None:
    saved = MixtureSampler(SOURCES, proportions=[1, 2, 3])
    next(iter(saved))
    with pytest.raises(ValueError, match="source_counts"):
        MixtureSampler(SOURCES, proportions=[3, 2, 1]).load_state_dict(saved.state_dict())


def test_repr_names_the_mix() -> None:
    text = repr(MixtureSampler(SOURCES, proportions=[1, 1, 2], strategy=["class", None, "sqrt"]))
    assert "shares=[0.25, 0.25, 0.5]" in text and "strategies=['class', None, 'sqrt']" in text


class Stream(IterableDataset):
    def __iter__(self) -> Any:
        return iter(range(3))

    def __len__(self) -> int:
        return 3


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    sources=st.lists(label_vectors(max_classes=4, max_count=12), min_size=1, max_size=3),
    data=st.data(),
)
def test_any_mixture_draws_exactly_its_counts_and_plans(sources: list, data: Any) -> None:
    count = len(sources)
    weights = data.draw(st.lists(st.integers(0, 5), min_size=count, max_size=count))
    weights[data.draw(st.integers(0, count - 1))] += 1  # at least one weight > 0
    strategy = data.draw(
        st.lists(
            st.sampled_from(["class", "sqrt", Power(-0.5), None]), min_size=count, max_size=count
        )
    )
    length = data.draw(st.integers(1, 120))
    sampler = MixtureSampler(
        sources, proportions=weights, strategy=strategy, num_samples=length, seed=length
    )
    epoch = sampler.epoch_indices(1).numpy()
    sizes = sampler.source_sizes
    assert epoch.shape[0] == length and ((epoch >= 0) & (epoch < sum(sizes))).all()
    drawn = np.bincount(owners(epoch, sizes), minlength=count).tolist()
    assert drawn == sampler.source_counts and sum(drawn) == length
    for s, row in enumerate(sampler.mixture_report(1)["sources"]):
        if weights[s] == 0:
            assert row["drawn"] == 0
        if row["classes"] is not None:
            assert all(t == d for t, d in row["classes"].values())


# ---- hostile input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "kind", "match"),
    [
        ({"proportions": [1, -1, 1]}, ValueError, r"proportions\[1\]: expected a finite number"),
        ({"proportions": [1, float("nan"), 1]}, ValueError, r"proportions\[1\]"),
        ({"proportions": [1, math.inf, 1]}, ValueError, r"proportions\[1\]"),
        ({"proportions": [0, 0, 0]}, ValueError, "proportions: expected at least one weight > 0"),
        ({"proportions": [1, 2]}, ValueError, "proportions: expected 3 weights, one per source"),
        ({"proportions": [1, "2", 1]}, TypeError, r"proportions\[1\]: expected a number"),
        ({"proportions": 0.5}, TypeError, "proportions: expected a list of 3 weights"),
        ({"temperature": 0}, ValueError, "temperature: expected a number > 0"),
        ({"temperature": -2.0}, ValueError, "temperature: expected a number > 0"),
        ({"temperature": float("nan")}, ValueError, "temperature"),
        ({"temperature": "2"}, TypeError, "temperature: expected a positive number"),
        ({"temperature": True}, TypeError, "temperature"),
        (
            {"proportions": [1, 1, 1], "temperature": 2.0},
            ValueError,
            "Give proportions= or temperature=, not both",
        ),
        ({"strategy": ["class", None]}, ValueError, "strategy: expected one value for all"),
        ({"strategy": "nope"}, ValueError, "strategy"),
        ({"strategy": Feedback("class")}, ValueError, "strategy: expected a strategy whose"),
        ({"num_samples": 0}, ValueError, "num_samples: expected an integer >= 1"),
        ({"replacement": "yes"}, TypeError, "replacement: expected True or False"),
    ],
)
def test_hostile_arguments_are_refused_by_name(kwargs: dict, kind: type, match: str) -> None:
    with pytest.raises(kind, match=match):
        MixtureSampler(SOURCES, **kwargs)


@pytest.mark.parametrize("helper", [False, True])
def test_epochs_are_the_same_with_and_without_the_helper_thread(
    monkeypatch: pytest.MonkeyPatch, helper: bool
) -> None:
    def make() -> MixtureSampler:
        return MixtureSampler(SOURCES, temperature=2.0, strategy=["class", None, "over"], seed=8)

    plain = make()
    expected = [plain.epoch_indices(e).tolist() for e in range(4)]
    monkeypatch.setattr(mixtures, "helper_allowed", lambda *args, **kwargs: helper)
    monkeypatch.setattr(mixtures, "ahead_pays", lambda *args, **kwargs: helper)
    sampler = make()
    assert [list(sampler) for _ in range(4)] == expected  # next shuffles drawn ahead, too


def test_a_source_its_strategy_refuses_is_named() -> None:
    with pytest.raises(
        ValueError, match=r"sources\[1\], strategy='over': labels: expected more than 1 class"
    ):
        MixtureSampler([SOURCES[0], np.zeros(5, dtype=np.int64)], strategy="over")


def test_hostile_sources_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"sources\[1\]: expected a source with at least one"):
        MixtureSampler([SOURCES[0], np.zeros(0, dtype=np.int64)])
    with pytest.raises(ValueError, match="sources: expected a ConcatDataset or a non-empty"):
        MixtureSampler([])
    with pytest.raises(TypeError, match="sources: expected a ConcatDataset"):
        MixtureSampler(SOURCES[0].tolist().__iter__())
    with pytest.raises(TypeError, match=r"sources\[0\]: expected a map-style dataset"):
        MixtureSampler([3, 4])
    with pytest.raises(TypeError, match=r"Mix streams with torch_balance.streams.BalancedMix"):
        MixtureSampler([Stream()])


def test_mixture_shares_is_the_public_rule() -> None:
    assert mixture_shares([10, 30]).tolist() == [0.25, 0.75]
    assert mixture_shares([10, 30], temperature=math.inf).tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="temperature"):
        mixture_shares([10, 30], temperature=0)
