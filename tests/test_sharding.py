"""A real two-process DDP run over gloo, and checkpoints through torchdata's StatefulDataLoader."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from torch_balance import (
    BalancedSampler,
    RandomOverSampler,
    ResampledDataset,
    StratifiedBatchSampler,
)
from torch_balance.testing import IndexDataset

LABELS = np.repeat(np.arange(4), [37, 11, 5, 2])


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        sampler = RandomOverSampler(LABELS, seed=13)  # rank and world from torch.distributed
        assert (sampler.rank, sampler.num_replicas) == (rank, world)
        epochs = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            mine = torch.tensor(list(sampler), dtype=torch.int64)
            gathered = [torch.zeros_like(mine) for _ in range(world)]
            dist.all_gather(gathered, mine)  # hangs or fails if ranks disagree on length
            epochs.append(torch.stack(gathered))
        if rank == 0:
            torch.save(epochs, os.path.join(out_dir, "gathered.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_ranks_share_one_epoch(tmp_path: Path) -> None:
    world = 2
    mp.spawn(
        _ddp_worker,
        args=(world, str(tmp_path / "init"), str(tmp_path)),
        nprocs=world,
        join=True,
    )
    epochs = torch.load(tmp_path / "gathered.pt")
    reference = RandomOverSampler(LABELS, seed=13)
    for epoch, gathered in enumerate(epochs):
        whole = reference.epoch_indices(epoch).tolist()
        interleaved = gathered.t().reshape(-1).tolist()  # rank r holds positions r, r+2, ...
        padded = (whole + whole)[: len(interleaved)]
        assert interleaved == padded
    assert not torch.equal(epochs[0], epochs[1])


def _stateful_loader(kind: str, workers: int) -> Any:
    sdl = pytest.importorskip("torchdata.stateful_dataloader")
    data = IndexDataset(len(LABELS))
    if kind == "sampler":
        sampler = BalancedSampler(LABELS, "over", seed=21)
        return sdl.StatefulDataLoader(data, sampler=sampler, batch_size=4, num_workers=workers)
    batches = StratifiedBatchSampler(LABELS, 6, seed=22)
    return sdl.StatefulDataLoader(data, batch_sampler=batches, num_workers=workers)


def _train(loader: Any, epochs: int, stop_after: int | None = None) -> tuple[list[Any], Any]:
    """Iterate ``epochs`` epochs (no set_epoch), or stop after ``stop_after`` batches."""
    seen: list[Any] = []
    for _ in range(epochs):
        for batch in loader:
            seen.append(batch.tolist())
            if len(seen) == stop_after:
                return seen, loader.state_dict()
    return seen, loader.state_dict()


@pytest.mark.parametrize("kind", ["sampler", "batches"])
@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_checkpoint_at_any_moment(kind: str, workers: int) -> None:
    """A StatefulDataLoader checkpoint restores to exactly the uninterrupted run: mid-epoch,
    right after an epoch's last batch, and after a finished epoch."""
    epochs = 3
    reference, _ = _train(_stateful_loader(kind, workers), epochs)
    per = len(_stateful_loader(kind, workers))
    assert reference[:per] != reference[per : 2 * per]
    for cut in (1, per // 2, per - 1, per, per + 1, 2 * per):
        head, state = _train(_stateful_loader(kind, workers), epochs, stop_after=cut)
        restored = _stateful_loader(kind, workers)
        restored.load_state_dict(state)
        rest, _ = _train(restored, epochs - cut // per)
        assert head + rest == reference, f"checkpoint after {cut} batches"
    # the whole first epoch, then a checkpoint once the loop has ended
    head, state = _train(_stateful_loader(kind, workers), 1)
    restored = _stateful_loader(kind, workers)
    restored.load_state_dict(state)
    rest, _ = _train(restored, epochs - 1)
    assert head + rest == reference, "checkpoint after a finished epoch replays it"


def test_resampled_dataset_under_distributed_sampler() -> None:
    from torch.utils.data import DistributedSampler

    ds = ResampledDataset(list(range(len(LABELS))), "over", labels=LABELS, seed=1)
    shards = [
        list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=0)) for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == len(ds) // 2 + len(ds) % 2
    picked = [ds[i] for shard in shards for i in shard]
    counts = np.bincount(LABELS[picked], minlength=4)
    assert counts.min() >= 37 - 1  # balanced up to DistributedSampler's padding
