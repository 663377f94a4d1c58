"""The epoch layer: complete passes, ranks looked up per epoch, foreign states refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, SequentialSampler

from torch_balance import (
    BalancedSampler,
    ClassBalancedBatchSampler,
    Power,
    Progressive,
    RandomOverSampler,
    RandomUnderSampler,
    RepeatFactorSampler,
    StratifiedBatchSampler,
    sharding,
)
from torch_balance.testing import IndexDataset, conformance_labels

LABELS = conformance_labels()


def _mid_epoch_state(sampler: Any) -> dict[str, Any]:
    sampler.set_epoch(2)
    items = iter(sampler)
    next(items)
    return sampler.state_dict()


@pytest.mark.parametrize(
    ("saved", "loaded", "named"),
    [
        (BalancedSampler(LABELS, Power(0.3)), BalancedSampler(LABELS, Power(0.7)), "strategy"),
        (
            RandomOverSampler(LABELS, sampling_strategy={1: 40, 2: 30}),
            RandomOverSampler(LABELS, sampling_strategy={1: 30, 2: 40}),
            "strategy",
        ),
        (
            BalancedSampler(LABELS, Progressive(3)),
            BalancedSampler(LABELS, Progressive(9)),
            "strategy",
        ),
        (
            BalancedSampler(LABELS, "class", num_samples=60),
            BalancedSampler(LABELS, "class", num_samples=70),
            "strategy",
        ),
        (RandomUnderSampler(LABELS), RandomUnderSampler(LABELS, "not minority"), "strategy"),
        (BalancedSampler(LABELS, "over"), BalancedSampler(LABELS, "over", seed=1), "seed"),
        (
            BalancedSampler(LABELS, "over"),
            BalancedSampler(LABELS, "over", replacement=True),
            "replacement",
        ),
        (StratifiedBatchSampler(LABELS, 8), StratifiedBatchSampler(LABELS, 6), "batch_size"),
        (
            ClassBalancedBatchSampler(LABELS, 2, 3, num_batches=9),
            ClassBalancedBatchSampler(LABELS, 2, 2, num_batches=9),
            "samples_per_class",
        ),
        (
            RepeatFactorSampler(LABELS, 0.3),
            RepeatFactorSampler(LABELS, 0.3, rounding="ceil"),
            "rounding",
        ),
        (BalancedSampler(LABELS, "over"), RandomOverSampler(LABELS), "kind"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_foreign_state_refused_naming_what_differs(saved: Any, loaded: Any, named: str) -> None:
    state = _mid_epoch_state(saved)
    with pytest.raises(ValueError, match=rf"state_dict\['{named}'\]"):
        loaded.load_state_dict(state)


def test_plan_digest_refuses_a_plan_that_changed() -> None:
    """A callable of the same name that now plans another epoch is refused by the digest."""
    sampler = BalancedSampler(LABELS, lambda counts, epoch: dict.fromkeys(counts, 6))
    state = _mid_epoch_state(sampler)
    other = BalancedSampler(LABELS, lambda counts, epoch: {**dict.fromkeys(counts, 6), 0: 5, 4: 7})
    with pytest.raises(ValueError, match=r"state_dict\['plan'\]"):
        other.load_state_dict(state)


def test_state_dict_records_a_complete_pass_and_resumes_at_the_next_epoch() -> None:
    sampler = RandomOverSampler(LABELS, seed=3)
    assert (sampler.state_dict()["epoch"], sampler.state_dict()["position"]) == (0, 0)
    loader = DataLoader(IndexDataset(len(LABELS)), sampler=sampler, batch_size=7)
    for step, _ in enumerate(loader):
        if step == len(loader) - 1:
            break  # as a loop that counts len(loader) steps: never asks for one more
    # epoch 0 is recorded as done: loaded, the next pass is epoch 1
    state = sampler.state_dict()
    assert (state["epoch"], state["position"]) == (0, len(sampler)) and sampler.epoch == 1
    resumed = RandomOverSampler(LABELS, seed=3)
    resumed.load_state_dict(state)
    assert (
        resumed.epoch == 1
        and list(resumed) == RandomOverSampler(LABELS, seed=3).epoch_indices(1).tolist()
    )
    sampler.set_epoch(5)
    assert (sampler.state_dict()["epoch"], sampler.state_dict()["position"]) == (5, 0)


def test_ranks_are_looked_up_when_the_epoch_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = RandomOverSampler(LABELS, seed=3)
    whole = sampler.epoch_indices(0).tolist()
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (1, 0, len(whole))
    # the process group comes up after the sampler was built (LightningModule.__init__)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 1)
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (2, 1, len(whole) // 2)
    sampler.set_epoch(0)
    assert list(sampler) == whole[1::2]


def test_samplers_are_distributed_samplers_and_batch_samplers_hand_out_set_epoch() -> None:
    """Lightning leaves a DistributedSampler alone, and sets the epoch of
    ``loader.batch_sampler.sampler``."""
    assert isinstance(RandomOverSampler(LABELS), DistributedSampler)
    assert isinstance(RepeatFactorSampler(LABELS, 0.3), DistributedSampler)
    batches = StratifiedBatchSampler(LABELS, 8)
    assert not isinstance(batches, DistributedSampler)
    batches.sampler.set_epoch(4)
    assert batches.epoch == 4


def test_a_sampler_given_as_data_is_refused_by_name() -> None:
    inner = DistributedSampler(IndexDataset(10), num_replicas=2, rank=0)
    # what Lightning does with use_distributed_sampler=True to anything like a batch sampler
    with pytest.raises(TypeError, match="use_distributed_sampler=False"):
        ClassBalancedBatchSampler(inner, batch_size=8, drop_last=False)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="use_distributed_sampler=False"):
        StratifiedBatchSampler(inner, batch_size=8, drop_last=False)
    with pytest.raises(TypeError, match="not a sampler"):
        RandomOverSampler(SequentialSampler(range(4)))


def test_accelerate_batch_shard_gets_the_whole_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """With accelerate's state on 2 processes the sampler yields the global epoch and its
    length whoever asks (inside BatchSamplerShard or not), the shard gives each rank every
    other batch, a state taken outside loads back, and explicit ranks get one warning."""
    state_cls = pytest.importorskip("accelerate.state").PartialState
    shard_cls = pytest.importorskip("accelerate.data_loader").BatchSamplerShard
    sampler = RandomOverSampler(LABELS, seed=2)
    whole = sampler.epoch_indices(0).tolist()
    monkeypatch.setattr(state_cls, "_shared_state", {"num_processes": 2})
    batches = [whole[i : i + 8] for i in range(0, len(whole), 8)]
    shards = [
        shard_cls(BatchSampler(sampler, 8, drop_last=True), num_processes=2, process_index=r)
        for r in range(2)
    ]
    assert len(sampler) == len(whole) and (sampler.num_replicas, sampler.rank) == (1, 0)
    assert len(shards[0]) == len(whole) // 8 // 2
    for rank, shard in enumerate(shards):
        sampler.set_epoch(0)
        assert list(shard) == batches[rank : 2 * len(shard) : 2]
    # a state taken from outside mid-pass, loaded back, continues the global epoch
    sampler.set_epoch(0)
    items = iter(shards[0])
    head = [next(items) for _ in range(3)]  # 3 batches of rank 0: 6 global batches read
    state = sampler.state_dict()
    assert state["position"] == 6 * 8 and len(sampler) == len(whole)
    again = RandomOverSampler(LABELS, seed=2)
    again.load_state_dict(state)
    assert head == batches[0:6:2] and list(again) == whole[6 * 8 :]
    monkeypatch.setattr(sharding, "_WARNED", set())
    with pytest.warns(UserWarning, match="1/num_replicas"):
        explicit = RandomOverSampler(LABELS, num_replicas=2, rank=0)
    assert len(explicit) == -(-len(whole) // 2)


def test_pickled_mid_pass_copy_continues() -> None:
    import pickle

    sampler = StratifiedBatchSampler(LABELS, 8, seed=1)
    full = list(sampler)
    sampler.set_epoch(0)
    items = iter(sampler)
    head = [next(items) for _ in range(3)]
    copy = pickle.loads(pickle.dumps(sampler))
    assert head + list(copy) == full
    assert np.array_equal(np.concatenate(list(items)), np.concatenate(full[3:]))
