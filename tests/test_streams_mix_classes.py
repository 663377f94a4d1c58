"""BalancedMix per class at scale: each reader computes the classes of its own positions of
the epoch (a keyed permutation, never the whole sequence) with DistributedSampler's sharding,
the plan's counts over every reader, and ``exhausted="stop"`` without a length."""

from __future__ import annotations

import itertools
import tracemalloc
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from torch_balance import BalancedMix
from torch_balance.sharding import iter_shard, reader_positions, shard_length
from torch_balance.streams.mix import class_codes, class_sequence
from torch_balance.streams.sources import Slot

COUNTS = [24, 8, 4]
BY_CLASS = {c: [(f"{c}-{i}", c) for i in range(n)] for c, n in enumerate(COUNTS)}


def old_class_sequence(
    targets: np.ndarray, seed: int, epoch: int, slot: Slot, drop_last: bool
) -> list[int]:
    """The construction this module replaced: the whole epoch's classes, one randperm of
    them, sharded with iter_shard (kept here as the reference for the sharding rule)."""
    from torch_balance._rng import Stream, generator

    codes = torch.from_numpy(np.repeat(np.arange(targets.shape[0]), targets))
    order = torch.randperm(codes.shape[0], generator=generator(seed, Stream.STREAM_MIX, epoch))
    chunks = iter_shard(codes, order, slot.num_replicas, slot.rank, drop_last, helper=False)
    return list(itertools.chain.from_iterable(chunks))[slot.worker :: slot.num_workers]


def codes_of(targets: np.ndarray, seed: int, epoch: int, slot: Slot, drop_last: bool) -> Any:
    return np.concatenate(
        [np.zeros(0, dtype=np.int64), *class_codes(targets, seed, epoch, slot, drop_last)]
    )


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(1, 300),
    world=st.integers(1, 6),
    workers=st.integers(1, 4),
    drop_last=st.booleans(),
    chunk=st.integers(1, 50),
)
def test_reader_positions_keep_the_sharding_rule(
    length: int, world: int, workers: int, drop_last: bool, chunk: int
) -> None:
    """A reader's positions, chunk by chunk, are iter_shard's for its rank (padding repeats
    the start, drop_last drops the tail), then every num_workers-th for its worker."""
    assume(not drop_last or length >= world)
    epoch = torch.arange(length)
    for rank in range(world):
        kept = list(itertools.chain.from_iterable(iter_shard(epoch, epoch, world, rank, drop_last)))
        assert len(kept) == shard_length(length, world, drop_last)
        for worker in range(workers):
            chunks = list(
                reader_positions(length, world, rank, drop_last, worker, workers, chunk=chunk)
            )
            assert all(0 < c.shape[0] <= chunk for c in chunks)
            got = np.concatenate([np.zeros(0, dtype=np.int64), *chunks]).tolist()
            assert got == kept[worker::workers]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    targets=st.lists(st.integers(0, 40), min_size=1, max_size=7).filter(lambda t: sum(t) > 0),
    world=st.integers(1, 5),
    workers=st.integers(1, 3),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 9),
)
def test_every_reader_holds_its_positions_of_one_epoch_with_the_plans_counts(
    targets: list[int], world: int, workers: int, drop_last: bool, seed: int, epoch: int
) -> None:
    """One rank: the union of its workers' classes is the plan exactly. Several ranks: every
    reader's codes are the one epoch sequence at its positions, so the union is the plan
    plus the padded start (or less the dropped tail), and against the old construction the
    counts differ only at those positions."""
    t = np.array(targets, dtype=np.int64)
    total = int(t.sum())
    assume(not drop_last or total >= world)
    whole = codes_of(t, seed, epoch, Slot(), drop_last=False)  # the epoch's sequence
    assert np.bincount(whole, minlength=t.shape[0]).tolist() == targets
    union: Counter[int] = Counter()
    old: Counter[int] = Counter()
    for rank, worker in itertools.product(range(world), range(workers)):
        slot = Slot(rank, world, worker, workers)
        mine = codes_of(t, seed, epoch, slot, drop_last)
        at = np.concatenate(
            [
                np.zeros(0, dtype=np.int64),
                *reader_positions(total, world, rank, drop_last, worker, workers),
            ]
        )
        assert mine.tolist() == whole[at].tolist()
        assert mine.tolist() == list(class_sequence(t, seed, epoch, slot, drop_last))
        union.update(mine.tolist())
        old.update(old_class_sequence(t, seed, epoch, slot, drop_last))
    emitted = world * shard_length(total, world, drop_last)
    expected = Counter(whole[np.arange(emitted) % total].tolist())
    assert union == expected and sum(union.values()) == sum(old.values()) == emitted
    if world == 1:
        assert union == old == Counter({c: n for c, n in enumerate(targets) if n})
    moved = abs(emitted - total)  # padded or dropped positions
    assert sum(abs(union[c] - old[c]) for c in range(t.shape[0])) <= 2 * moved


def test_epochs_are_a_function_of_seed_and_epoch() -> None:
    t = np.array([50, 20, 5])
    slot = Slot(1, 3, 1, 2)
    first = codes_of(t, 3, 0, slot, False)
    assert first.tolist() == codes_of(t, 3, 0, slot, False).tolist()
    assert first.tolist() != codes_of(t, 3, 1, slot, False).tolist()
    assert first.tolist() != codes_of(t, 4, 0, slot, False).tolist()


def test_a_reader_never_holds_the_epoch() -> None:
    """A global epoch of 10**9 over 1,024 ranks x 8 workers: one reader's pass holds one
    chunk of its own ~122,000 positions (the old sequence was 8 GB per reader)."""
    targets = np.full(1000, 10**6, dtype=np.int64)
    slot = Slot(517, 1024, 7, 8)
    tracemalloc.start()
    try:
        count = sum(chunk.shape[0] for chunk in class_codes(targets, 0, 0, slot, False))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == len(range(7, shard_length(10**9, 1024, False), 8)) == 122_070
    assert peak < 16 * 2**20


# ---- exhausted="stop": a pass the data ends has no length ---------------------------------


def test_stop_has_no_length_and_dataloaders_run_to_its_end() -> None:
    mix = BalancedMix(BY_CLASS, "over", exhausted="stop", seed=1)
    with pytest.raises(TypeError, match=r"len\(BalancedMix\): exhausted='stop' has no length"):
        len(mix)
    out = list(mix)
    assert 0 < len(out) < 72 and Counter(y for _, y in out)[2] == COUNTS[2]
    loader = DataLoader(mix, batch_size=4, collate_fn=lambda b: b)
    with pytest.raises(TypeError, match="has no length"):
        len(loader)
    mix.set_epoch(0)
    assert [s for batch in loader for s in batch] == out
    assert len(BalancedMix(BY_CLASS, "over")) == 72  # cycling classes keep the plan's length


def test_stop_under_a_lightning_trainer() -> None:
    """Lightning takes a loader without len() as one whose epoch ends where its data does."""
    pl = pytest.importorskip("lightning.pytorch")
    from torch_balance.integrations.lightning import SetEpochCallback

    mix = BalancedMix(BY_CLASS, "over", exhausted="stop", seed=1)
    passes = []
    for epoch in range(2):
        mix.set_epoch(epoch)
        passes.append([key for key, _ in mix])

    class Module(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)
            self.seen: list[list[str]] = []

        def on_train_epoch_start(self) -> None:
            self.seen.append([])

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            self.seen[-1].extend(batch[0])
            return self.layer(batch[1].float().reshape(-1, 1)).sum()

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.0)

    module = Module()
    mix.set_epoch(0)  # back from the passes above: Lightning opens the first epoch before the
    # callback sets it (so a fresh stream, at epoch 0, is what a first fit sees)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(
            max_epochs=2,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[SetEpochCallback()],
        )
        trainer.fit(module, DataLoader(mix, batch_size=3))
    assert module.seen == passes and passes[0] != passes[1]
