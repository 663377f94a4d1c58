"""A real two-process DDP run over gloo, and resume through torchdata's StatefulDataLoader."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from torch_balance import BalancedSampler, RandomOverSampler, ResampledDataset
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


@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_resumes_mid_epoch(workers: int) -> None:
    sdl = pytest.importorskip("torchdata.stateful_dataloader")

    def loader(sampler: BalancedSampler) -> object:
        return sdl.StatefulDataLoader(
            IndexDataset(len(LABELS)), sampler=sampler, batch_size=4, num_workers=workers
        )

    sampler = BalancedSampler(LABELS, "over", seed=21)
    sampler.set_epoch(3)
    reference = [b.tolist() for b in loader(sampler)]  # type: ignore[attr-defined]

    sampler = BalancedSampler(LABELS, "over", seed=21)
    sampler.set_epoch(3)
    first = loader(sampler)
    seen = []
    for step, batch in enumerate(first):  # type: ignore[attr-defined]
        seen.append(batch.tolist())
        if step == 6:
            state = first.state_dict()  # type: ignore[attr-defined]
            break

    fresh_sampler = BalancedSampler(LABELS, "over", seed=21)
    second = loader(fresh_sampler)
    second.load_state_dict(state)  # type: ignore[attr-defined]
    rest = [b.tolist() for b in second]  # type: ignore[attr-defined]
    assert seen + rest == reference
    # the next epoch after a resumed one is epoch 4, complete
    fresh_sampler.set_epoch(4)
    nxt = [i for b in second for i in b.tolist()]  # type: ignore[attr-defined]
    assert nxt == fresh_sampler.epoch_indices(4).tolist()


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
