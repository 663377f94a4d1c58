"""``process_group=``: the data-parallel group under tensor parallelism, for real.

Four gloo processes on a (dp=2, tp=2) ``DeviceMesh``: the two tensor-parallel peers of one
replica must get identical indices, the two replicas must split one global epoch, and every
collective (``update_weights``, ``per_class_recall``) must count each replica once.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from torch_balance import (
    BalancedIterableDataset,
    RandomOverSampler,
    StratifiedBatchSampler,
    WeightedSampler,
    per_class_recall,
)
from torch_balance._collective import all_reduce_sum, check_group

LABELS = np.repeat(np.arange(4), [37, 11, 5, 3])
N = len(LABELS)


def _mesh_worker(rank: int, init_file: str, out_dir: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=4)
    record: dict[str, Any] = {}
    try:
        mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
        dp = mesh["dp"]
        record["dp_rank"] = dp.get_local_rank()
        sampler = RandomOverSampler(LABELS, seed=3, process_group=dp)
        record["ranks"] = [sampler.num_replicas, sampler.rank]
        record["sampler"] = list(sampler)
        # a ProcessGroup works the same as the mesh dimension
        batches = StratifiedBatchSampler(LABELS, 8, seed=4, process_group=dp.get_group())
        record["batches"] = list(batches)
        weighted = WeightedSampler([1.0] * N, 21, seed=5, process_group=dp)
        seen = list(weighted)
        record["weighted"] = seen
        new = weighted.update_weights(seen, [1.0] * len(seen), reduce="sum")
        record["weights"] = new.tolist()
        # counts summed over the replicas only (a ratio would hide a double count)
        mine = torch.tensor([float(record["dp_rank"] + 1)])
        record["summed"] = all_reduce_sum(mine, dp).tolist()
        record["recall"] = per_class_recall(
            torch.tensor([0, 1]), torch.tensor([0, record["dp_rank"]]), 2, process_group=dp
        ).tolist()
        # a balanced stream takes the group's rank and size when it is built
        data = [(i, int(y)) for i, y in enumerate(LABELS)]
        stream = BalancedIterableDataset(
            data, "over", manifest={"data": LABELS.tolist()}, seed=6, process_group=dp
        )
        record["stream"] = [i for i, _ in stream]
        # the default group spans all 4 processes: tensor-parallel peers would differ there
        record["default"] = list(RandomOverSampler(LABELS, seed=3))
    finally:
        dist.destroy_process_group()
        Path(out_dir, f"{rank}.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def mesh_run(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    pytest.importorskip("torch.distributed.device_mesh")
    out = tmp_path_factory.mktemp("mesh")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_mesh_worker, args=(str(out / "init"), str(out)), nprocs=4)
    return [json.loads((out / f"{r}.json").read_text()) for r in range(4)]


def test_tensor_parallel_peers_get_identical_indices(mesh_run: list[dict[str, Any]]) -> None:
    assert [r["dp_rank"] for r in mesh_run] == [0, 0, 1, 1]
    assert [r["ranks"] for r in mesh_run] == [[2, 0], [2, 0], [2, 1], [2, 1]]
    for key in ("sampler", "batches", "weighted", "stream"):
        assert mesh_run[0][key] == mesh_run[1][key], key
        assert mesh_run[2][key] == mesh_run[3][key], key
        assert mesh_run[0][key] != mesh_run[2][key], key
    # on the default group the four processes would each get a quarter
    assert mesh_run[0]["default"] != mesh_run[1]["default"]


def test_replicas_split_one_global_epoch(mesh_run: list[dict[str, Any]]) -> None:
    whole = RandomOverSampler(LABELS, seed=3).epoch_indices(0).tolist()
    assert mesh_run[0]["sampler"] == whole[0::2] and mesh_run[2]["sampler"] == whole[1::2]
    reference = StratifiedBatchSampler(LABELS, 8, seed=4).epoch_indices(0)
    padded = (reference * 2)[: -(-len(reference) // 2) * 2]
    assert mesh_run[0]["batches"] == padded[0::2] and mesh_run[2]["batches"] == padded[1::2]


def test_a_stream_splits_one_epoch_between_replicas(mesh_run: list[dict[str, Any]]) -> None:
    """Each replica emits what the stream built for its data-parallel rank emits."""
    data = [(i, int(y)) for i, y in enumerate(LABELS)]
    for dp_rank, process in ((0, 0), (1, 2)):
        own = BalancedIterableDataset(
            data, "over", manifest={"data": LABELS.tolist()}, seed=6, num_replicas=2, rank=dp_rank
        )
        assert mesh_run[process]["stream"] == [i for i, _ in own]


def test_collectives_count_each_replica_once(mesh_run: list[dict[str, Any]]) -> None:
    reports = Counter(mesh_run[0]["weighted"] + mesh_run[2]["weighted"])
    expected = [float(reports.get(i, 1.0)) for i in range(N)]  # unreported keep weight 1
    for rank in mesh_run:
        assert rank["weights"] == pytest.approx(expected)
    for rank in mesh_run:
        assert rank["summed"] == [3.0]  # 1 + 2, not (1 + 2) * 2
        # replica 0 predicts [0, 1] for [0, 0]; replica 1 [0, 1] for [0, 1]: class 0 2 of 3
        assert rank["recall"] == pytest.approx([2 / 3, 1.0])


def test_process_group_is_checked_by_name() -> None:
    with pytest.raises(TypeError, match=r"process_group: expected None, a torch\.distributed"):
        check_group("dp")
    with pytest.raises(TypeError, match="process_group"):
        RandomOverSampler(LABELS, process_group=2)


def _adopt_worker(rank: int, init_file: str, out_dir: str) -> None:
    from types import SimpleNamespace

    from lightning.pytorch.strategies import ModelParallelStrategy
    from torch.distributed.device_mesh import init_device_mesh
    from torch.utils.data import DataLoader

    from torch_balance.integrations.lightning import SetEpochCallback

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    record: dict[str, Any] = {}
    try:
        mesh = init_device_mesh("cpu", (1, 2), mesh_dim_names=("data_parallel", "tensor_parallel"))
        strategy = ModelParallelStrategy()
        strategy._device_mesh = mesh  # what the strategy sets up when its processes start
        left = RandomOverSampler(LABELS, seed=3)
        told = RandomOverSampler(LABELS, seed=3, num_replicas=2, rank=rank)
        trainer = SimpleNamespace(
            strategy=strategy,
            current_epoch=0,
            train_dataloader=[DataLoader(list(range(N)), sampler=s) for s in (left, told)],
        )
        SetEpochCallback().on_train_epoch_start(trainer, None)
        record["left"] = [left.num_replicas, left.rank, list(left)]
        record["told"] = [told.num_replicas, told.rank]
    finally:
        dist.destroy_process_group()
        Path(out_dir, f"{rank}.json").write_text(json.dumps(record))


def test_lightning_model_parallel_strategy_names_the_data_parallel_group(tmp_path: Path) -> None:
    """Two tensor-parallel peers of one replica under ModelParallelStrategy: the callback hands
    the strategy's data-parallel group to a sampler left to find its ranks (both get the whole
    epoch), and leaves one given explicit ranks alone."""
    pytest.importorskip("lightning.pytorch.strategies")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_adopt_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    whole = RandomOverSampler(LABELS, seed=3).epoch_indices(0).tolist()
    for rank in ranks:
        assert rank["left"] == [1, 0, whole]
    assert [rank["told"] for rank in ranks] == [[2, 0], [2, 1]]
