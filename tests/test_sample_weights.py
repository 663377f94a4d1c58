"""Per-sample weights inside a class plan: ``sample_weights=`` of the samplers and wrapper."""

from __future__ import annotations

import pickle
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from torch_balance import (
    BalancedSampler,
    Progressive,
    RandomUnderSampler,
    ResampledDataset,
    StratifiedBatchSampler,
)
from torch_balance.draws import draw_within_class
from torch_balance.strategies import make_plan
from torch_balance.testing import CHECKS, conformance_labels


def weights_for(labels: Any) -> np.ndarray:
    """Uneven weights with some zeros, but a positive weight in every class."""
    n = len(labels)
    w = (np.arange(n) % 4).astype(np.float64)  # 0, 1, 2, 3, 0, 1, ...
    for key in set(np.asarray(labels).tolist()):
        members = np.flatnonzero(np.asarray(labels) == key)
        w[members[0]] = 5.0  # never an all-zero class
    return w


LABELS = np.repeat(np.arange(3), [30, 12, 6])
W = weights_for(LABELS)


def member_counts(drawn: Any, n: int) -> np.ndarray:
    return np.bincount(np.asarray(drawn, dtype=np.int64), minlength=n)


@pytest.mark.parametrize("strategy", ["over", "under", "sqrt", "class"])
@pytest.mark.parametrize("replacement", [False, True])
def test_class_counts_follow_the_plan(strategy: str, replacement: bool) -> None:
    sampler = BalancedSampler(LABELS, strategy, sample_weights=W, replacement=replacement)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        drawn = list(sampler)
        assert dict(Counter(LABELS[drawn].tolist())) == {
            k: v for k, v in sampler.target_counts(epoch).items() if v
        }
        assert not np.any(W[drawn] == 0), "a zero-weight sample was drawn"


def test_systematic_counts_are_floor_or_ceil_of_the_share() -> None:
    sampler = BalancedSampler(LABELS, "class", num_samples=99, sample_weights=W)
    targets = sampler.target_counts(0)
    for epoch in range(5):
        counts = member_counts(sampler.epoch_indices(epoch), len(LABELS))
        for key, t in targets.items():
            members = np.flatnonzero(np.equal(LABELS, key))
            share = t * W[members] / W[members].sum()
            got = counts[members]
            assert np.all(got >= np.floor(share - 1e-9)), (epoch, key, got, share)
            assert np.all(got <= np.ceil(share + 1e-9)), (epoch, key, got, share)
            assert got.sum() == t


def test_systematic_is_unbiased_over_epochs() -> None:
    sampler = BalancedSampler(LABELS, "class", num_samples=30, sample_weights=W)
    total = sum(member_counts(sampler.epoch_indices(e), len(LABELS)) for e in range(400))
    for key, t in sampler.target_counts(0).items():
        members = np.flatnonzero(np.equal(LABELS, key))
        expected = 400 * t * W[members] / W[members].sum()
        assert np.all(np.abs(total[members] - expected) <= 4 * np.sqrt(expected) + 1e-9)


def test_iid_frequencies_are_proportional_to_weights_chi_square() -> None:
    sampler = BalancedSampler(LABELS, "class", num_samples=3000, sample_weights=W, replacement=True)
    counts = member_counts(sampler.epoch_indices(0), len(LABELS))
    for key, t in sampler.target_counts(0).items():
        members = np.flatnonzero(np.equal(LABELS, key))
        positive = members[W[members] > 0]
        expected = t * W[positive] / W[positive].sum()
        assert chisquare(counts[positive], expected).pvalue > 1e-3
        # the same test rejects uniform draws within the class
        uniform = np.full(positive.shape[0], t / positive.shape[0])
        assert chisquare(counts[positive], uniform).pvalue < 1e-6


def test_zero_weight_never_drawn_with_many_draws() -> None:
    labels = np.zeros(1000, dtype=np.int64)
    w = np.zeros(1000)
    w[[3, 500, 999]] = [1.0, 2.0, 1e-12]
    for replacement in (False, True):
        sampler = BalancedSampler(
            labels, "class", num_samples=5000, sample_weights=w, replacement=replacement
        )
        assert set(sampler.epoch_indices(0).tolist()) <= {3, 500, 999}


def test_the_unweighted_epochs_are_unchanged() -> None:
    plain = BalancedSampler(LABELS, "over", seed=2)
    again = BalancedSampler(LABELS, "over", seed=2, sample_weights=None)
    for epoch in range(3):
        assert torch.equal(plain.epoch_indices(epoch), again.epoch_indices(epoch))
    assert plain.state_dict()["sample_weights"] is None


def test_shards_together_are_the_one_process_epoch() -> None:
    whole = BalancedSampler(LABELS, "sqrt", sample_weights=W, seed=5)
    whole.set_epoch(3)
    reference = list(whole)
    shares = []
    for rank in range(3):
        sampler = BalancedSampler(
            LABELS, "sqrt", sample_weights=W, seed=5, num_replicas=3, rank=rank
        )
        sampler.set_epoch(3)
        shares.append(list(sampler))
    merged = [shares[r][i] for i in range(len(shares[0])) for r in range(3)]
    assert merged[: len(reference)] == reference  # DistributedSampler's interleaving


def test_resume_mid_epoch_and_refuse_other_weights() -> None:
    run = BalancedSampler(LABELS, "over", sample_weights=W, seed=1)
    run.set_epoch(2)
    it = iter(run)
    head = [next(it) for _ in range(7)]
    state = pickle.loads(pickle.dumps(run.state_dict()))
    rest = list(it)
    resumed = BalancedSampler(LABELS, "over", sample_weights=W, seed=1)
    resumed.load_state_dict(state)
    assert head + list(resumed) == head + rest
    other = W.copy()
    other[1] += 1.0
    with pytest.raises(ValueError, match="sample_weights"):
        BalancedSampler(LABELS, "over", sample_weights=other, seed=1).load_state_dict(state)
    with pytest.raises(ValueError):
        BalancedSampler(LABELS, "over", seed=1).load_state_dict(state)


def test_all_zero_class_with_a_target_is_refused_at_construction() -> None:
    w = W.copy()
    w[LABELS == 2] = 0.0
    with pytest.raises(ValueError, match=r"sample_weights: .*class 2 .*every weight 0"):
        BalancedSampler(LABELS, "over", sample_weights=w)
    # a plan that gives the class nothing is fine
    sampler = BalancedSampler(LABELS, lambda c, e: {0: 5, 1: 5, 2: 0}, sample_weights=w)
    assert 2 not in set(LABELS[list(sampler)].tolist())


def test_a_changing_plan_is_checked_when_the_epoch_is_drawn() -> None:
    w = W.copy()
    w[LABELS == 2] = 0.0
    plan = make_plan(LABELS, lambda c, e: {0: 5 - e, 1: 5, 2: e})
    grouped = torch.from_numpy(w)[plan.index.order.long()]
    draw_within_class(plan, grouped, 0, 0)
    with pytest.raises(ValueError, match="class 2 asked for 1 samples"):
        draw_within_class(plan, grouped, 0, 1)


@pytest.mark.parametrize(
    ("weights", "kind", "match"),
    [
        (np.ones(5), ValueError, r"one weight per sample \(48\)"),
        (np.r_[np.ones(47), -1.0], ValueError, "-1.0 at index 47"),
        (np.r_[np.nan, np.ones(47)], ValueError, "nan at index 0"),
        (np.zeros(48), ValueError, "every weight 0"),
        ("heavy", TypeError, "sample_weights"),
    ],
)
def test_bad_weights_are_refused(weights: Any, kind: type, match: str) -> None:
    with pytest.raises(kind, match=match):
        BalancedSampler(LABELS, "over", sample_weights=weights)


def test_stratified_batches_with_weights() -> None:
    sampler = StratifiedBatchSampler(LABELS, 8, "over", sample_weights=W, seed=0)
    batches = list(sampler)
    flat = [i for b in batches for i in b]
    assert Counter(LABELS[flat].tolist()) == Counter(sampler.target_counts(0))
    assert not np.any(W[flat] == 0)
    for batch in batches[:-1]:  # 90 draws, 30 per class: every full batch 2 or 3 of each
        assert all(2 <= n <= 3 for n in Counter(LABELS[batch].tolist()).values())


def test_resampled_dataset_with_weights() -> None:
    data = list(range(len(LABELS)))
    ds = ResampledDataset(data, "under", labels=LABELS, sample_weights=W, seed=0)
    picks = ds.epoch_indices().numpy()
    assert Counter(LABELS[picks].tolist()) == {0: 6, 1: 6, 2: 6}
    assert not np.any(W[picks] == 0)
    assert [ds[i] for i in range(len(ds))] == picks.tolist()


def test_shortcut_samplers_pass_weights_on() -> None:
    sampler = RandomUnderSampler(LABELS, sample_weights=W)
    assert not np.any(W[list(sampler)] == 0)


def test_weights_with_a_schedule() -> None:
    sampler = BalancedSampler(LABELS, Progressive(3), sample_weights=W)
    for epoch in range(4):
        drawn = sampler.epoch_indices(epoch).numpy()
        assert dict(Counter(LABELS[drawn].tolist())) == sampler.target_counts(epoch)


WEIGHTED = {
    "over": lambda y, **kw: BalancedSampler(y, "over", sample_weights=weights_for(y), **kw),
    "class-iid": lambda y, **kw: BalancedSampler(
        y, "class", sample_weights=weights_for(y), replacement=True, **kw
    ),
    "stratified": lambda y, **kw: StratifiedBatchSampler(
        y, 8, "sqrt", sample_weights=weights_for(y), **kw
    ),
}


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("case", list(WEIGHTED))
def test_conformance_weighted(case: str, check: str) -> None:
    CHECKS[check](WEIGHTED[case], conformance_labels())


def test_conformance_weighted_in_workers() -> None:
    from torch_balance.testing import check_sampler_dataloader

    check_sampler_dataloader(WEIGHTED["over"], conformance_labels(), workers=2)
