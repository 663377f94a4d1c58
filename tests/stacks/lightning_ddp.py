"""Lightning ``Trainer(strategy="ddp", devices=2)`` on CPU, launched by Lightning itself.

Run as ``python tests/stacks/lightning_ddp.py OUT``: Lightning starts rank 1 by running this
script again. Every rank records the indices its training steps received, per scenario and
epoch, in ``OUT/<rank>.json``; tests/test_stacks.py checks them.
"""

from __future__ import annotations

import sys
import warnings

import lightning.pytorch as pl
import torch
from _common import (
    EPOCHS,
    LABELS,
    Indexed,
    Picked,
    Record,
    class_aware_sampler,
    feedback_values,
    mixed_stream,
    mixture_sampler,
    rank_from_env,
    rare_sampler,
    stream,
)
from torch.utils.data import DataLoader

from torch_balance import (
    ClassBalancedBatchSampler,
    RandomOverSampler,
    ResampledDataset,
    StratifiedBatchSampler,
    WeightedSampler,
)
from torch_balance.integrations.lightning import SetEpochCallback

warnings.filterwarnings("ignore")


class Model(pl.LightningModule):
    def __init__(self, scenario: str, record: Record, make_loader: object) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 4)
        self.scenario = scenario
        self.record = record
        self.make_loader = make_loader

    def train_dataloader(self) -> DataLoader:
        return self.make_loader()  # type: ignore[operator]

    def on_train_epoch_start(self) -> None:
        # what Lightning hands the loop: our sampler itself (a DistributedSampler, so not
        # wrapped again), with DistributedSampler's attributes in their meaning
        sampler = getattr(self.trainer.train_dataloader, "sampler", None)
        names = ("num_replicas", "rank", "num_samples", "total_size", "shuffle")
        values = [getattr(sampler, name, None) for name in names]
        dataset = getattr(sampler, "dataset", None)
        values += [type(sampler).__name__, len(dataset) if dataset is not None else None]
        self.record.add(f"{self.scenario}-sampler", self.current_epoch, values)

    def training_step(self, batch: tuple[torch.Tensor, ...], _: int) -> torch.Tensor:
        x, y, index = batch
        self.record.add(self.scenario, self.current_epoch, index)
        return torch.nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class FeedbackModel(Model):
    """Reports a value for every sample its rank saw to ``update_weights`` at each epoch's end
    (a collective), so the next epoch draws with weights combined over both ranks."""

    def __init__(self, scenario: str, record: Record, sampler: WeightedSampler) -> None:
        super().__init__(
            scenario, record, lambda: DataLoader(Indexed(), sampler=sampler, batch_size=8)
        )
        self.sampler = sampler
        self.seen: list[int] = []

    def training_step(self, batch: tuple[torch.Tensor, ...], step: int) -> torch.Tensor:
        self.seen.extend(batch[2].tolist())
        return super().training_step(batch, step)

    def on_train_epoch_end(self) -> None:
        self.sampler.update_weights(self.seen, feedback_values(self.seen, self.current_epoch))
        self.seen = []


def fit(
    scenario: str,
    record: Record,
    make_loader: object,
    model: Model | None = None,
    **trainer_kwargs: object,
) -> None:
    trainer = pl.Trainer(
        accelerator="cpu",
        strategy="ddp",
        devices=2,
        max_epochs=EPOCHS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **trainer_kwargs,  # type: ignore[arg-type]
    )
    trainer.fit(model or Model(scenario, record, make_loader))


def main(out: str) -> None:
    record = Record(out, rank_from_env())
    data = Indexed()
    # Built here, before any Trainer has started the process group.
    early_default = RandomOverSampler(LABELS, seed=5)
    early_manual = RandomOverSampler(LABELS, seed=6)

    fit("early-default", record, lambda: DataLoader(data, sampler=early_default, batch_size=8))
    fit(
        "early-manual",
        record,
        lambda: DataLoader(data, sampler=early_manual, batch_size=8),
        use_distributed_sampler=False,
    )
    fit(
        "late-default",
        record,
        lambda: DataLoader(data, sampler=RandomOverSampler(LABELS, seed=7), batch_size=8),
    )
    fit(
        "late-manual",
        record,
        lambda: DataLoader(data, sampler=RandomOverSampler(LABELS, seed=8), batch_size=8),
        use_distributed_sampler=False,
    )
    # rare-class sampling: the class each pick carries reaches the dataset
    fit(
        "rare-default",
        record,
        lambda: DataLoader(Picked(), sampler=rare_sampler(14), batch_size=8),
    )
    # class-aware sampling of multi-label data, left to Lightning to keep (a DistributedSampler)
    fit(
        "class-aware-default",
        record,
        lambda: DataLoader(data, sampler=class_aware_sampler(16), batch_size=8),
    )
    # a mixture of two sources, one class-balanced inside
    fit(
        "mixture-default",
        record,
        lambda: DataLoader(data, sampler=mixture_sampler(16), batch_size=8),
    )
    under = ResampledDataset(data, "under", labels=LABELS, seed=9)
    fit(
        "dataset-under",
        record,
        lambda: DataLoader(under, batch_size=2, shuffle=True),
        callbacks=[SetEpochCallback()],
    )
    # the same without SetEpochCallback: nothing advances the dataset, and it says so
    unadvanced = ResampledDataset(data, "under", labels=LABELS, seed=9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(
            "dataset-no-callback",
            record,
            lambda: DataLoader(unadvanced, batch_size=2, shuffle=True),
        )
    said = [str(w.message) for w in caught if "second pass" in str(w.message)]
    record.note("dataset-no-callback", " | ".join(said))
    fit(
        "stratified-manual",
        record,
        lambda: DataLoader(data, batch_sampler=StratifiedBatchSampler(LABELS, 8, seed=10)),
        use_distributed_sampler=False,
    )
    fit(
        "pk-manual",
        record,
        lambda: DataLoader(data, batch_sampler=ClassBalancedBatchSampler(LABELS, 2, 4, seed=11)),
        use_distributed_sampler=False,
    )
    # a balanced stream: ranks from the process group, epochs from SetEpochCallback
    balanced = stream(15)
    fit(
        "stream-over",
        record,
        lambda: DataLoader(balanced, batch_size=8),
        callbacks=[SetEpochCallback()],
    )
    # a mix of sources (one of them the balanced stream): ranks from the process group
    mixed = mixed_stream(18)
    fit(
        "stream-mix",
        record,
        lambda: DataLoader(mixed, batch_size=8),
        callbacks=[SetEpochCallback()],
    )
    weighted = WeightedSampler([1.0] * len(LABELS), seed=12)
    fit("weighted-feedback", record, None, FeedbackModel("weighted-feedback", record, weighted))
    try:
        fit(
            "pk-default",
            record,
            lambda: DataLoader(data, batch_sampler=ClassBalancedBatchSampler(LABELS, 2, 4)),
        )
    except TypeError as error:
        record.note("pk-default", str(error))
    record.save()


if __name__ == "__main__":
    main(sys.argv[1])
