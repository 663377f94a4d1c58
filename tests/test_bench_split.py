"""bench.split: the imbalance profiles and one seed's split of a source."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torch_balance.bench.sources import load_source
from torch_balance.bench.split import class_counts, long_tail_counts, make_split, step_counts


@pytest.mark.parametrize("n_max,ratio,classes", [(500, 100, 10), (124, 10, 10), (50, 3, 4)])
def test_long_tail_counts_follow_cao_formula(n_max: int, ratio: float, classes: int) -> None:
    counts = long_tail_counts(n_max, ratio, classes)
    expected = [int(np.floor(n_max * ratio ** (-i / (classes - 1)) + 1e-9)) for i in range(classes)]
    assert counts.tolist() == expected
    assert counts[0] == n_max and counts[-1] == int(n_max / ratio)
    assert (np.diff(counts) <= 0).all()


def test_step_counts_put_half_the_classes_at_n_max_over_ratio() -> None:
    assert step_counts(100, 10, 10).tolist() == [100] * 5 + [10] * 5
    assert step_counts(100, 4, 5).tolist() == [100] * 3 + [25] * 2


def test_digits_split_is_balanced_disjoint_and_follows_the_profile() -> None:
    source = load_source("digits")
    split = make_split(source, ratio=10, seed=3)
    assert split.test_counts.tolist() == [50] * 10
    # Training + validation realise the long-tailed targets, class by class.
    assert (split.train_counts + split.val_counts).tolist() == split.target_counts.tolist()
    assert (
        sorted(split.target_counts.tolist(), reverse=True) == long_tail_counts(124, 10, 10).tolist()
    )
    # Validation is taken from the imbalanced training data: about a fifth of each class.
    assert (split.val_counts >= 1).all()
    share = split.val_counts / split.target_counts
    assert np.all(np.abs(share - 0.2) < 0.1)
    # No image in two parts.
    parts = [set(split.train.tolist()), set(split.val.tolist()), set(split.test.tolist())]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    labels = source.train_labels
    assert class_counts(labels[split.test], 10).tolist() == [50] * 10
    assert class_counts(labels[split.train], 10).tolist() == split.train_counts.tolist()
    # The minority (tail third) are the three smallest classes.
    smallest = np.argsort(split.target_counts, kind="stable")[:3]
    assert sorted(smallest.tolist()) == split.minority


def test_split_is_a_pure_function_of_the_seed_and_minority_is_random() -> None:
    source = load_source("digits")
    a, b = make_split(source, ratio=10, seed=1), make_split(source, ratio=10, seed=1)
    assert a.train.tolist() == b.train.tolist() and a.test.tolist() == b.test.tolist()
    state = torch.get_rng_state()
    rarest = {int(np.argmin(make_split(source, ratio=10, seed=s).target_counts)) for s in range(8)}
    assert torch.equal(state, torch.get_rng_state()), "the split must not touch the global RNG"
    assert len(rarest) >= 3, "which class is rarest must change with the seed"


def test_step_split_marks_the_minority_classes() -> None:
    source = load_source("digits")
    split = make_split(source, profile="step", ratio=10, seed=0)
    small = sorted(np.flatnonzero(split.target_counts == 12).tolist())
    assert len(small) == 5 and small == split.minority
    assert sorted(split.target_counts.tolist()) == [12] * 5 + [124] * 5


def test_split_rejects_a_ratio_that_empties_a_class() -> None:
    with pytest.raises(ValueError, match=r"--ratio.*at least 2"):
        make_split(load_source("digits"), ratio=100, seed=0)
    with pytest.raises(ValueError, match="--profile"):
        make_split(load_source("digits"), profile="zipf", ratio=10)
