"""Plain DDP, accelerate and the Hugging Face Trainer on 2 CPU ranks, under torchrun.

Run as ``python -m torch.distributed.run --standalone --nproc_per_node 2
tests/stacks/torchrun_ddp.py OUT``. Every rank records the indices it was given, per
scenario and epoch, in ``OUT/<rank>.json``; tests/test_stacks.py checks them.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from typing import Any

import torch
import torch.distributed as dist
from _common import (
    EPOCHS,
    LABELS,
    Indexed,
    Picked,
    Record,
    class_aware_sampler,
    feedback_values,
    hf_stream,
    mixture_sampler,
    rare_sampler,
    stream,
)
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from torch_balance import (
    RandomOverSampler,
    ResampledDataset,
    StratifiedBatchSampler,
    WeightedSampler,
)

warnings.filterwarnings("ignore")


def plain_ddp(record: Record) -> None:
    # Both built before the process group exists.
    sampler = RandomOverSampler(LABELS, seed=1)
    batches = StratifiedBatchSampler(LABELS, 8, seed=2)
    dist.init_process_group("gloo")
    model = DistributedDataParallel(torch.nn.Linear(1, 4))
    data = Indexed()
    loader = DataLoader(data, sampler=sampler, batch_size=8)
    names = ("num_replicas", "rank", "num_samples", "total_size", "shuffle", "drop_last")
    values = [getattr(sampler, name) for name in names]
    record.add("ddp-attributes", 0, [*values, len(sampler), len(sampler.dataset)])
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        for x, y, index in loader:
            torch.nn.functional.cross_entropy(model(x), y).backward()
            record.add("ddp-set-epoch", epoch, index)
    # No set_epoch, and the loop stops after len(loader) batches without exhausting it.
    loader = DataLoader(data, batch_sampler=batches)
    for epoch in range(EPOCHS):
        for step, (_, _, index) in enumerate(loader):
            record.add("ddp-len-loop", epoch, index)
            if step == len(loader) - 1:
                break


def presplit_stream(record: Record) -> None:
    """A Hugging Face stream that split_dataset_by_node already split for this rank, balanced
    in mode 1 with ranks from torch.distributed: every rank's number of batches is gathered
    after each epoch (a difference would hang DDP). Read in the rank's process: with 2 forked
    DataLoader workers this run hung once in about six, a worker blocked on a lock at fork
    (the split and the workers are tested together in tests/test_streams.py)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    data = hf_stream(21, split=(rank, world))
    loader = DataLoader(data, batch_size=4)
    for epoch in range(EPOCHS):
        data.set_epoch(epoch)
        steps = 0
        for batch in loader:
            record.add("ddp-stream-hf-split", epoch, batch["index"])
            steps += 1
        counts = [torch.zeros(1)] * world
        dist.all_gather(counts, torch.tensor([float(steps)]))
        record.add("ddp-stream-hf-split-steps", epoch, [int(c.item()) for c in counts])


def with_accelerate(record: Record) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    data = Indexed()
    runs = {
        "accelerate-sampler": DataLoader(
            data, sampler=RandomOverSampler(LABELS, seed=3), batch_size=8
        ),
        "accelerate-batches": DataLoader(
            data, batch_sampler=StratifiedBatchSampler(LABELS, 8, seed=4)
        ),
        "accelerate-rare": DataLoader(Picked(), sampler=rare_sampler(15), batch_size=8),
        "accelerate-class-aware": DataLoader(data, sampler=class_aware_sampler(17), batch_size=8),
        "accelerate-mixture": DataLoader(data, sampler=mixture_sampler(17), batch_size=8),
    }
    for scenario, loader in runs.items():
        prepared = accelerator.prepare(loader)
        for epoch in range(EPOCHS):
            for _, _, index in prepared:
                record.add(scenario, epoch, index)
    # dispatch_batches: rank 0 reads every batch and sends each rank its part
    from accelerate.utils import DataLoaderConfiguration

    dispatcher = Accelerator(
        cpu=True, dataloader_config=DataLoaderConfiguration(dispatch_batches=True)
    )
    loader = DataLoader(data, sampler=RandomOverSampler(LABELS, seed=7), batch_size=8)
    prepared = dispatcher.prepare(loader)
    for epoch in range(EPOCHS):
        for _, _, index in prepared:
            record.add("accelerate-dispatch", epoch, index)
    # per-sample weights fed back after every epoch: each rank reports what it saw
    weighted = WeightedSampler([1.0] * len(LABELS), seed=13)
    prepared = accelerator.prepare(DataLoader(data, sampler=weighted, batch_size=8))
    for epoch in range(EPOCHS):
        seen: list[int] = []
        for _, _, index in prepared:
            record.add("accelerate-weighted", epoch, index)
            seen.extend(index.tolist())
        weighted.update_weights(seen, feedback_values(seen, epoch))
    # asked from outside accelerate's wrappers, the sampler answers as from inside
    outside = RandomOverSampler(LABELS, seed=26)
    prepared = accelerator.prepare(DataLoader(data, sampler=outside, batch_size=8))
    batches = iter(prepared)
    for _ in range(3):
        next(batches)
    state = outside.state_dict()
    again = RandomOverSampler(LABELS, seed=26)
    again.load_state_dict(state)
    record.add("accelerate-outside", 0, [len(outside), len(prepared), state["position"]])
    record.add("accelerate-attributes", 0, [outside.num_samples, outside.total_size])
    record.add("accelerate-outside", 1, list(again))
    del batches
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explicit = RandomOverSampler(LABELS, num_replicas=2, rank=dist.get_rank())
        accelerator.prepare(DataLoader(data, sampler=explicit, batch_size=8))
    record.note("accelerate-explicit-ranks", " | ".join(str(w.message) for w in caught))


def streams_with_accelerate(record: Record) -> None:
    """A balanced stream prepared by accelerate: batches dispatched from rank 0 (its default
    for an IterableDataset), with and without DataLoader workers, or every rank reading and
    keeping its batches (dispatch_batches=False)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    runs = [
        ("accelerate-stream-dispatch", None, 0, 16),
        ("accelerate-stream-dispatch-workers", None, 2, 17),
        ("accelerate-stream-shards", False, 0, 18),
        ("accelerate-stream-shards-workers", False, 2, 19),
    ]
    for scenario, dispatch, workers, seed in runs:
        accelerator = Accelerator(
            cpu=True, dataloader_config=DataLoaderConfiguration(dispatch_batches=dispatch)
        )
        prepared = accelerator.prepare(DataLoader(stream(seed), batch_size=8, num_workers=workers))
        try:
            for epoch in range(EPOCHS):
                prepared.set_epoch(epoch)
                for _, _, index in prepared:
                    record.add(scenario, epoch, index)
        except Exception as error:  # recorded for the test to show
            record.note(scenario, f"{type(error).__name__}: {error}")


class AsDicts(Dataset):
    """The Trainer's collator wants dict items."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        x, y, index = self.base[i]
        return {"x": x, "labels": y, "index": index}


class Recorder(torch.nn.Module):
    def __init__(self, record: Record, scenario: str) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 4)
        self.record, self.scenario = record, scenario
        self.epoch = 0
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> Any:
        self.record.add(self.scenario, self.epoch, index)
        self.seen.extend(index.tolist())
        return {"loss": torch.nn.functional.cross_entropy(self.layer(x), labels)}


def with_hf_trainer(record: Record) -> None:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from torch_balance.integrations.huggingface import SetEpochCallback

    class BalancedTrainer(Trainer):
        def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
            return RandomOverSampler(LABELS, seed=5)

    class EpochOfModel(TrainerCallback):
        def __init__(self, model: Recorder) -> None:
            self.model = model

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.model.epoch = round(state.epoch or 0)

    class WeightedTrainer(Trainer):
        def __init__(self, sampler: WeightedSampler, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.weighted = sampler

        def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
            return self.weighted

    class Feedback(TrainerCallback):
        """Each rank reports what it saw at the epoch's end (update_weights is a collective)."""

        def __init__(self, model: Recorder, sampler: WeightedSampler) -> None:
            self.model, self.sampler = model, sampler

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            seen = self.model.seen
            self.sampler.update_weights(seen, feedback_values(seen, self.model.epoch))
            self.model.seen = []

    out = tempfile.mkdtemp()
    args = TrainingArguments(
        output_dir=out,
        use_cpu=True,
        ddp_backend="gloo",
        per_device_train_batch_size=8,
        num_train_epochs=EPOCHS,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    data = AsDicts(Indexed())
    model = Recorder(record, "hf-sampler")
    BalancedTrainer(
        model=model, args=args, train_dataset=data, callbacks=[EpochOfModel(model)]
    ).train()
    model = Recorder(record, "hf-weighted")
    weighted = WeightedSampler([1.0] * len(LABELS), seed=14)
    WeightedTrainer(
        weighted,
        model=model,
        args=args,
        train_dataset=data,
        callbacks=[EpochOfModel(model), Feedback(model, weighted)],
    ).train()
    model = Recorder(record, "hf-stream")
    Trainer(
        model=model,
        args=args,
        train_dataset=stream(20, as_dicts=True),
        callbacks=[EpochOfModel(model)],
    ).train()
    model = Recorder(record, "hf-dataset-under")
    under = ResampledDataset(data, "under", labels=LABELS, seed=6)
    Trainer(
        model=model,
        args=args,
        train_dataset=under,
        callbacks=[EpochOfModel(model), SetEpochCallback()],
    ).train()


def main(out: str) -> None:
    record = Record(out, int(os.environ["RANK"]))
    try:
        plain_ddp(record)
        presplit_stream(record)
        with_accelerate(record)
        streams_with_accelerate(record)
        with_hf_trainer(record)
    finally:
        record.save()
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
