"""ResampledDataset: an index-level view of the same plan, redrawn by set_epoch in workers."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from torch_balance import BalancedSampler, ResampledDataset

LABELS = np.repeat(np.arange(3), [12, 4, 2])


class Counting(Dataset):
    """Returns (index, label) and counts accesses, as a dataset whose transform runs per access."""

    def __init__(self) -> None:
        self.targets = LABELS.tolist()
        self.calls: Counter[int] = Counter()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[int, int]:
        self.calls[i] += 1
        return i, self.targets[i]


def test_same_plan_and_draw_as_the_sampler() -> None:
    ds = ResampledDataset(Counting(), "over", seed=3)
    sampler = BalancedSampler(LABELS, "over", seed=3)
    assert len(ds) == sum(sampler.target_counts().values()) == 36
    assert ds.target_counts() == sampler.target_counts()
    assert sorted(ds.epoch_indices().tolist()) == sorted(sampler.epoch_indices(0).tolist())
    assert Counter(ds.labels.tolist()) == {0: 12, 1: 12, 2: 12}


def test_each_copy_is_read_afresh() -> None:
    base = Counting()
    ds = ResampledDataset(base, "over", seed=0)
    items = [ds[i] for i in range(len(ds))]
    assert Counter(label for _, label in items) == {0: 12, 1: 12, 2: 12}
    assert base.calls[16] == 6 and base.calls[17] == 6  # class 2: 2 samples, 12 reads


def test_set_epoch_redraws_and_shuffle_orders() -> None:
    ds = ResampledDataset(Counting(), "under", seed=0)
    first = ds.epoch_indices().tolist()
    ds.set_epoch(1)
    assert ds.epoch == 1 and ds.epoch_indices().tolist() != first
    grouped = ResampledDataset(Counting(), "over", seed=0, shuffle=False)
    shuffled = ResampledDataset(Counting(), "over", seed=0)  # shuffled by default
    assert sorted(grouped.epoch_indices().tolist()) == sorted(shuffled.epoch_indices().tolist())
    assert grouped.labels.tolist() == sorted(grouped.labels.tolist())
    assert shuffled.labels.tolist() != sorted(shuffled.labels.tolist())


@pytest.mark.parametrize("persistent", [False, True])
def test_set_epoch_reaches_dataloader_workers(persistent: bool) -> None:
    ds = ResampledDataset(Counting(), "under", seed=2)
    loader = DataLoader(ds, batch_size=3, num_workers=2, persistent_workers=persistent)
    for epoch in range(3):
        ds.set_epoch(epoch)
        got = [int(i) for idx, _ in loader for i in idx]
        assert got == ds.epoch_indices().tolist(), epoch


def test_works_under_random_sampler_with_a_generator() -> None:
    ds = ResampledDataset(Counting(), "over", seed=2)
    sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(0))
    labels = [ds[i][1] for i in sampler]
    assert Counter(labels) == {0: 12, 1: 12, 2: 12}


def test_pickle_round_trip() -> None:
    ds = ResampledDataset(Counting(), "over", seed=2)
    ds.set_epoch(4)
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.epoch == 4 and copy.epoch_indices().tolist() == ds.epoch_indices().tolist()


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="dataset"):
        ResampledDataset(object(), labels=[0, 1])
    with pytest.raises(ValueError, match="labels"):
        ResampledDataset(list(range(3)), labels=[0, 1])
    ds = ResampledDataset(Counting(), "under")
    with pytest.raises(ValueError, match="index"):
        ds[len(ds)]
    with pytest.raises(TypeError, match="index"):
        ds["0"]
    assert ds[-1] == ds[len(ds) - 1]
    with pytest.raises(ValueError, match="epoch"):
        ds.set_epoch(-2)


def test_spawned_workers_get_the_sampler_and_the_shared_epoch() -> None:
    """Spawn pickles the dataset; the epoch tensor must stay shared with the parent."""
    ds = ResampledDataset(Counting(), "under", seed=5)
    sampler = BalancedSampler(LABELS, "under", seed=5)
    loader = DataLoader(
        ds,
        batch_size=4,
        sampler=torch.utils.data.SequentialSampler(ds),
        num_workers=1,
        multiprocessing_context="spawn",
        persistent_workers=True,
    )
    for epoch in (0, 3):
        ds.set_epoch(epoch)
        got = [int(i) for idx, _ in loader for i in idx]
        assert got == ds.epoch_indices().tolist()
    spawned = DataLoader(
        Counting(), batch_size=4, sampler=sampler, num_workers=1, multiprocessing_context="spawn"
    )
    sampler.set_epoch(2)
    expected = sampler.epoch_indices(2).tolist()
    assert [int(i) for idx, _ in spawned for i in idx] == expected


def test_a_second_pass_at_the_same_epoch_warns_once() -> None:
    """A trainer that never sets the dataset's epoch reads it twice at one epoch: said once,
    naming set_epoch and SetEpochCallback; a pass after set_epoch is quiet."""
    import warnings

    ds = ResampledDataset(Counting(), "under", seed=4)
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(loader)
        ds.set_epoch(1)
        list(loader)
    assert not caught
    with pytest.warns(UserWarning, match=r"set_epoch\(epoch\).*SetEpochCallback"):
        list(ds[i] for i in range(len(ds)))  # a second pass at epoch 1, in this process
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        list(ds[i] for i in range(len(ds)))
    assert not again
