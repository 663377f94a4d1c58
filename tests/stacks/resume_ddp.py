"""Resumed runs against uninterrupted ones, on 1 or 2 CPU ranks under torchrun.

Run as ``python -m torch.distributed.run --standalone --nproc_per_node N
tests/stacks/resume_ddp.py OUT``. Each scenario trains 3 epochs once without a break, saving
checkpoints, then again from some of those checkpoints; every rank records the batches its
steps received, in order, in ``OUT/<rank>.json`` (``<scenario>/full`` and
``<scenario>/from-<cut>``). Only rank 0's data-loading state is ever loaded back, on every
rank, as the trainers that save one copy of it do. tests/test_stacks.py compares each resumed
run with the uninterrupted run's steps after the cut.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from _common import EPOCHS, LABELS, Indexed, Record, stream
from torch.utils.data import DataLoader, Dataset

from torch_balance import RandomOverSampler, ResampledDataset, StratifiedBatchSampler
from torch_balance.integrations import set_epoch

warnings.filterwarnings("ignore")
warnings.filterwarnings("always", message=".*without its epoch having been set")


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _share(out: Path, name: str, state: Any) -> Any:
    """Rank 0's ``state``, read back on every rank (the one copy a trainer saves)."""
    path = out / f"{name}.pt"
    if _rank() == 0:
        torch.save(state, path)
    dist.barrier()
    return torch.load(path, weights_only=False)


def _steps(epochs: dict[int, int]) -> list[tuple[int, int]]:
    return [(e, s) for e in range(EPOCHS) for s in range(epochs[e])]


def plain_loop(record: Record, out: Path, stateful: bool) -> None:
    """A torchrun loop that checkpoints after some steps: mid-epoch, and after the last batch
    of an epoch; the resumed loop starts at the saved epoch and calls ``set_epoch`` on it."""
    scenario = "stateful-loop" if stateful else "plain-loop"

    def build() -> tuple[Any, Any]:
        sampler = RandomOverSampler(LABELS, seed=21)
        if stateful:
            from torchdata.stateful_dataloader import StatefulDataLoader

            return sampler, StatefulDataLoader(
                Indexed(), sampler=sampler, batch_size=8, num_workers=2
            )
        return sampler, DataLoader(Indexed(), sampler=sampler, batch_size=8)

    sampler, loader = build()
    per_epoch = len(loader)
    cuts = {"mid": (1, 3), "end": (1, per_epoch - 1), "first": (0, 0)}
    saved: dict[str, Any] = {}
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for step, (_, _, index) in enumerate(loader):
            record.add(f"{scenario}/full", 0, [index.tolist()])
            for name, cut in cuts.items():
                if cut == (epoch, step):
                    state = loader.state_dict() if stateful else sampler.state_dict()
                    saved[name] = (epoch, _share(out, f"{scenario}-{name}", state))
    for name, (epoch, state) in saved.items():
        sampler, loader = build()
        (loader if stateful else sampler).load_state_dict(state)
        for e in range(epoch, EPOCHS):
            sampler.set_epoch(e)
            for _, _, index in loader:
                record.add(f"{scenario}/from-{name}", 0, [index.tolist()])


class AsDicts(Dataset):
    def __init__(self) -> None:
        self.base = Indexed()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x, y, index = self.base[i]
        return {"x": x, "labels": y, "index": index}


class Recorder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 4)
        self.batches: list[list[int]] = []

    def forward(self, x: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> Any:
        self.batches.append(index.tolist())
        return {"loss": torch.nn.functional.cross_entropy(self.layer(x), labels)}


def hf_trainer(
    record: Record,
    out: Path,
    with_callback: bool,
    name: str = "",
    data: str = "sampler",
    **options: Any,
) -> None:
    """The documented recipe (``_get_train_sampler``, ``SetEpochCallback``), checkpoints every
    step, resumed from the middle of epoch 1 and from the ends of epochs 0 and 1; without the
    callback a mid-epoch resume must say so. ``data="dataset"`` trains a ``ResampledDataset``
    and ``data="stream"`` a ``BalancedIterableDataset`` instead, each with the callback."""
    from transformers import Trainer, TrainingArguments

    from torch_balance.integrations.huggingface import SetEpochCallback

    class BalancedTrainer(Trainer):
        def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
            return RandomOverSampler(LABELS, seed=22)

    scenario = ("hf" if with_callback else "hf-no-callback") + name
    folder = out / scenario
    args = TrainingArguments(
        output_dir=str(folder),
        use_cpu=True,
        ddp_backend="gloo",
        per_device_train_batch_size=8,
        num_train_epochs=EPOCHS,
        report_to=[],
        save_strategy="steps",
        save_steps=1,
        logging_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
        save_only_model=False,
        **options,
    )

    def train(resume: str | None) -> list[list[int]]:
        model = Recorder()
        callbacks = [SetEpochCallback()] if with_callback else []
        trainer_class: type[Trainer] = BalancedTrainer if data == "sampler" else Trainer
        train_dataset: Any = AsDicts()
        if data == "dataset":
            train_dataset = ResampledDataset(train_dataset, "over", labels=LABELS, seed=26)
        elif data == "stream":
            # 40 of each class: each of the 2 workers' shares (80) is a multiple of the batch
            # size, as docs/guide/streams.md asks (else SetEpochCallback warns)
            train_dataset = stream(27, as_dicts=True, sampling_strategy=dict.fromkeys(range(4), 40))
        trainer = trainer_class(
            model=model, args=args, train_dataset=train_dataset, callbacks=callbacks
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train(resume_from_checkpoint=resume)
        notes = [str(w.message) for w in caught if "epoch having been set" in str(w.message)]
        notes += [str(w.message) for w in caught if "SetEpochCallback:" in str(w.message)]
        if notes:
            record.note(f"{scenario}/warned-{resume is not None}", notes[0])
        return model.batches

    full = train(None)
    record.add(f"{scenario}/full", 0, full)
    per_epoch = len(full) // EPOCHS
    cuts = {"mid": per_epoch + 3}
    if with_callback:
        cuts |= {"end": per_epoch, "end1": 2 * per_epoch}
    for name, step in cuts.items():
        batches = train(str(folder / f"checkpoint-{step}"))
        record.add(f"{scenario}/from-{name}", 0, batches)
        record.note(f"{scenario}/cut-{name}", str(step))


def accelerate_loop(record: Record) -> None:
    """accelerate: ``skip_first_batches`` into epoch 1 with ``integrations.set_epoch`` on the
    skipped loader, for a sampler and a batch sampler."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    makers = {
        "accelerate-sampler": lambda: DataLoader(
            Indexed(), sampler=RandomOverSampler(LABELS, seed=23), batch_size=8
        ),
        "accelerate-batches": lambda: DataLoader(
            Indexed(), batch_sampler=StratifiedBatchSampler(LABELS, 8, seed=24)
        ),
    }
    for scenario, make in makers.items():
        prepared = accelerator.prepare(make())
        for _epoch in range(EPOCHS):
            for _, _, index in prepared:
                record.add(f"{scenario}/full", 0, [index.tolist()])
        prepared = accelerator.prepare(make())
        for epoch in range(1, EPOCHS):
            prepared.set_epoch(epoch)
            loader = prepared
            if epoch == 1:
                loader = accelerator.skip_first_batches(prepared, 4)
                set_epoch(loader, 1)
            for _, _, index in loader:
                record.add(f"{scenario}/from-mid", 0, [index.tolist()])


def accelerate_stateful(record: Record, out: Path) -> None:
    """accelerate with ``use_stateful_dataloader=True``: ``save_state`` mid-epoch and after an
    epoch's last batch, ``load_state`` in a fresh Accelerator, the loop resuming with
    ``set_epoch`` on the prepared loader. accelerate captures the loader's state after its
    one-batch look-ahead has reached the end, so a state saved at an epoch's last batch says
    "finished": the loop resumes at the next epoch (the sampler's own state is not part of
    accelerate's checkpoint there: its batches go through ``BatchSamplerShard``)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    def accelerator() -> Any:
        config = DataLoaderConfiguration(use_stateful_dataloader=True)
        return Accelerator(cpu=True, dataloader_config=config)

    def make() -> DataLoader:
        return DataLoader(Indexed(), sampler=RandomOverSampler(LABELS, seed=25), batch_size=8)

    scenario = "accelerate-stateful"
    first = accelerator()
    prepared = first.prepare(make())
    per = len(prepared)
    cuts = {"mid": (1, 3), "end": (1, per - 1)}
    resume_at = {"mid": 1, "end": 2}
    for epoch in range(EPOCHS):
        prepared.set_epoch(epoch)
        for step, (_, _, index) in enumerate(prepared):
            record.add(f"{scenario}/full", 0, [index.tolist()])
            for name, cut in cuts.items():
                if cut == (epoch, step):
                    first.save_state(str(out / f"{scenario}-{name}"))
    for name in cuts:
        again = accelerator()
        prepared = again.prepare(make())
        again.load_state(str(out / f"{scenario}-{name}"))
        for e in range(resume_at[name], EPOCHS):
            prepared.set_epoch(e)
            for _, _, index in prepared:
                record.add(f"{scenario}/from-{name}", 0, [index.tolist()])


def main(out: str) -> None:
    folder = Path(out)
    record = Record(out, _rank())
    dist.init_process_group("gloo")
    try:
        plain_loop(record, folder, stateful=False)
        plain_loop(record, folder, stateful=True)
        accelerate_loop(record)
        accelerate_stateful(record, folder)
        hf_trainer(record, folder, with_callback=True)
        hf_trainer(record, folder, with_callback=False)
        for data in ("dataset", "stream"):
            hf_trainer(record, folder, True, f"-{data}-workers", data, dataloader_num_workers=2)
    finally:
        record.save()
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
