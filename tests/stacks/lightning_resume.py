"""Lightning DDP on 2 CPU ranks, resumed with ``fit(ckpt_path=...)`` against an uninterrupted fit.

Run as ``python tests/stacks/lightning_resume.py OUT``: Lightning starts rank 1 by running
this script again. Lightning saves the data-loading state of rank 0 only (a
``StatefulDataLoader``'s state, and the callbacks' states) and loads it on every rank. Every
rank records the batches its steps received, in order, in ``OUT/<rank>.json``:
``<scenario>/full`` and ``<scenario>/from-<step>``.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from _common import EPOCHS, LABELS, Indexed, Record, rank_from_env, stream
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from torch_balance import RandomOverSampler, ResampledDataset, StratifiedBatchSampler
from torch_balance.integrations.lightning import SetEpochCallback

warnings.filterwarnings("ignore")


class Model(pl.LightningModule):
    def __init__(self, make_loader: Any) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 4)
        self.make_loader = make_loader
        self.batches: list[list[int]] = []

    def train_dataloader(self) -> Any:
        return self.make_loader()

    def training_step(self, batch: tuple[torch.Tensor, ...], _: int) -> torch.Tensor:
        x, y, index = batch
        self.batches.append(index.tolist())
        return torch.nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(make_loader: Any, folder: Path, ckpt: str | None, **kwargs: Any) -> list[list[int]]:
    model = Model(make_loader)
    callbacks: list[Any] = [SetEpochCallback()]
    if ckpt is None:
        callbacks.append(
            ModelCheckpoint(dirpath=folder, filename="{step}", every_n_train_steps=1, save_top_k=-1)
        )
    trainer = pl.Trainer(
        accelerator="cpu",
        strategy="ddp",
        devices=2,
        max_epochs=EPOCHS,
        default_root_dir=folder,
        enable_checkpointing=ckpt is None,  # the resumed fits write no checkpoints
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        **kwargs,
    )
    trainer.fit(model, ckpt_path=ckpt)
    return model.batches


def main(out: str) -> None:
    from torchdata.stateful_dataloader import StatefulDataLoader

    record = Record(out, rank_from_env())
    data = Indexed()
    scenarios: dict[str, tuple[Any, dict[str, Any]]] = {
        "stateful": (
            lambda: StatefulDataLoader(
                data, sampler=RandomOverSampler(LABELS, seed=31), batch_size=8, num_workers=2
            ),
            {},
        ),
        "stateful-batches": (
            lambda: StatefulDataLoader(
                data, batch_sampler=StratifiedBatchSampler(LABELS, 8, seed=32)
            ),
            {"use_distributed_sampler": False},
        ),
        "plain": (
            lambda: DataLoader(data, sampler=RandomOverSampler(LABELS, seed=33), batch_size=8),
            {},
        ),
        # a balanced stream (manifest mode): each worker holds its own state, and rank 0's
        # loads on rank 1 (worker w emits as many on every rank)
        "stateful-stream": (
            lambda: StatefulDataLoader(stream(34), batch_size=8, num_workers=2),
            {},
        ),
        # the same in the main process: resumed at an epoch's end, the loader's saved pass had
        # ended, and the fit's first epoch was empty
        "stateful-stream-main": (
            lambda: StatefulDataLoader(stream(38), batch_size=8),
            {},
        ),
        # a dataset wrapper (mid-epoch, Lightning's DistributedSampler gets its epoch only
        # after the loader skipped ahead in it: ends only)
        "stateful-dataset": (
            lambda: StatefulDataLoader(ResampledDataset(data, "over", seed=39), batch_size=8),
            {},
        ),
        # plain DataLoaders: Lightning makes a fit's first iterator before any hook; the
        # callback makes it again with the epoch the fit resumes at
        "plain-dataset": (
            lambda: DataLoader(ResampledDataset(data, "over", seed=36), batch_size=8),
            {},
        ),
        "plain-stream": (
            lambda: DataLoader(stream(37), batch_size=8),
            {},
        ),
    }
    # a dataset or stream in a plain DataLoader keeps no position: resumed at epochs' ends
    ends_only = ("plain-dataset", "plain-stream", "stateful-dataset")
    only = os.environ.get("TORCH_BALANCE_STACK_ONLY")  # one scenario, by hand
    if only:
        scenarios = {only: scenarios[only]}
    try:
        for scenario, (make, kwargs) in scenarios.items():
            folder = Path(out) / scenario
            full = fit(make, folder, None, **kwargs)
            record.add(f"{scenario}/full", 0, full)
            per = len(full) // EPOCHS
            steps = (per, 2 * per) if scenario in ends_only else (per + 3, per)
            for step in steps:
                resumed = fit(make, folder, str(folder / f"step={step}.ckpt"), **kwargs)
                record.add(f"{scenario}/from-{step}", 0, resumed)
    finally:
        record.save()


if __name__ == "__main__":
    main(sys.argv[1])
