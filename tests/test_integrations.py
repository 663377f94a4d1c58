"""torch_balance.integrations: finding and advancing every torch_balance object in a stack."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, Subset, TensorDataset

from torch_balance import (
    RandomOverSampler,
    ResampledDataset,
    SMOTEDataset,
    StratifiedBatchSampler,
)
from torch_balance.integrations import epoch_holders, set_epoch

LABELS = [0] * 9 + [1] * 3


def test_set_epoch_reaches_datasets_samplers_and_batch_samplers() -> None:
    resampled = ResampledDataset(list(range(12)), "under", labels=LABELS)
    features = torch.arange(24, dtype=torch.float32).reshape(12, 2) % 5
    smote = SMOTEDataset(
        TensorDataset(features, torch.tensor(LABELS)),
        torch.nn.Identity(),
        k_neighbors=2,
        progress=False,
    )
    nested = ConcatDataset([Subset(resampled, [0, 1]), smote])
    sampler = RandomOverSampler(LABELS)
    batches = StratifiedBatchSampler(LABELS, 4)
    loaders = {
        "a": DataLoader(nested, sampler=sampler),
        "b": [DataLoader(list(range(12)), batch_sampler=batches)],
    }
    found = set_epoch(loaders, 3)
    assert {id(h) for h in found} == {id(resampled), id(smote), id(sampler), id(batches)}
    assert resampled.epoch == smote.epoch == sampler.epoch == batches.epoch == 3
    assert epoch_holders(DataLoader(list(range(3)))) == []


def test_set_epoch_refuses_a_bad_epoch() -> None:
    with pytest.raises(ValueError, match="epoch"):
        set_epoch([], -1)


def test_lightning_callback_sets_the_trainer_epoch() -> None:
    lightning = pytest.importorskip("torch_balance.integrations.lightning")
    data = ResampledDataset(list(range(12)), "under", labels=LABELS)
    trainer = SimpleNamespace(train_dataloader=DataLoader(data), current_epoch=4)
    lightning.SetEpochCallback().on_train_epoch_start(trainer, None)
    assert data.epoch == 4
    with pytest.warns(UserWarning, match="nothing to advance"):
        empty = SimpleNamespace(train_dataloader=DataLoader(list(range(3))), current_epoch=1)
        lightning.SetEpochCallback().on_train_epoch_start(empty, None)


@pytest.mark.parametrize(("progress", "expected"), [(None, 0), (0.0, 0), (2.0, 2), (1.5, 1)])
def test_hf_callback_takes_the_epoch_from_trainer_state(
    progress: float | None, expected: int
) -> None:
    hf = pytest.importorskip("torch_balance.integrations.huggingface")
    data = ResampledDataset(list(range(12)), "under", labels=LABELS)
    data.set_epoch(9)
    state = SimpleNamespace(epoch=progress)
    hf.SetEpochCallback().on_epoch_begin(None, state, None, train_dataloader=DataLoader(data))
    assert data.epoch == expected


class _Recorder:
    """A LightningModule factory whose steps record the indices of their batches."""

    @staticmethod
    def fit(loader: Any, folder: Any, ckpt: str | None, save: bool) -> list[list[int]]:
        pl = pytest.importorskip("lightning.pytorch")
        from lightning.pytorch.callbacks import ModelCheckpoint

        from torch_balance.integrations.lightning import SetEpochCallback

        class Model(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.layer = torch.nn.Linear(1, 2)
                self.seen: list[list[int]] = []

            def train_dataloader(self) -> Any:
                return loader()

            def training_step(self, batch: Any, _: int) -> torch.Tensor:
                x, index = batch
                self.seen.append(index.tolist())
                return self.layer(x).sum()

            def configure_optimizers(self) -> torch.optim.Optimizer:
                return torch.optim.SGD(self.parameters(), lr=0.01)

        callbacks: list[Any] = [SetEpochCallback()]
        if save:
            callbacks.append(
                ModelCheckpoint(
                    dirpath=folder, filename="{step}", every_n_train_steps=1, save_top_k=-1
                )
            )
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=3,
            default_root_dir=folder,
            enable_checkpointing=save,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=callbacks,
        )
        model = Model()
        trainer.fit(model, ckpt_path=ckpt)
        return model.seen


def test_lightning_resumed_at_an_epoch_end_draws_the_next_epoch(tmp_path: Any) -> None:
    """A ResampledDataset in a plain DataLoader, resumed from the last batch of epoch 0: the
    resumed fit's epochs are the uninterrupted fit's 1 and 2 (Lightning reads a fit's first
    epoch before any hook; this replayed epoch 0's draw). Resumed mid-epoch, the callback
    says that a dataset keeps no position."""
    labels = torch.tensor([0] * 12 + [1] * 3)
    data = TensorDataset(labels.float().unsqueeze(1), torch.arange(15))

    def loader() -> DataLoader:
        return DataLoader(ResampledDataset(data, "over", labels=labels, seed=3), batch_size=6)

    full = _Recorder.fit(loader, tmp_path, None, save=True)
    per = len(full) // 3
    assert full[:per] != full[per : 2 * per]
    resumed = _Recorder.fit(loader, tmp_path, str(tmp_path / f"step={per}.ckpt"), save=False)
    assert resumed == full[per:]
    with pytest.warns(UserWarning, match="keeps no position"):
        _Recorder.fit(loader, tmp_path, str(tmp_path / f"step={per + 1}.ckpt"), save=False)


@pytest.mark.parametrize(
    ("batch_size", "workers", "short"), [(4, 2, True), (5, 2, False), (4, 0, False), (3, 1, False)]
)
def test_hf_callback_warns_when_stream_workers_end_in_short_batches(
    batch_size: int, workers: int, short: bool
) -> None:
    """Workers whose shares are not multiples of the batch size make more batches than
    ``len(loader)``, which the Trainer plans its steps from: said once, when training begins."""
    import warnings

    from torch_balance import BalancedIterableDataset

    hf = pytest.importorskip("torch_balance.integrations.huggingface")
    stream = BalancedIterableDataset([(i, i % 2) for i in range(12)], "over", epoch_length=10)
    loader = DataLoader(stream, batch_size=batch_size, num_workers=workers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hf.SetEpochCallback().on_train_begin(None, None, None, train_dataloader=loader)
    notes = [str(w.message) for w in caught]
    assert len(notes) == int(short), notes
    if short:
        assert "emit 5, 5 samples" in notes[0] and "makes 4 batches" in notes[0]
        assert "len() counts 3" in notes[0] and "divides each worker's share" in notes[0]


def test_hf_callback_ignores_loaders_without_a_stream() -> None:
    hf = pytest.importorskip("torch_balance.integrations.huggingface")
    data = ResampledDataset(list(range(12)), "under", labels=LABELS)
    for loader in (None, DataLoader(data, batch_size=5, num_workers=2), DataLoader(data)):
        assert hf._short_batches(loader) is None


def test_resampled_dataset_state_holds_its_epoch() -> None:
    data = ResampledDataset(list(range(12)), "over", labels=LABELS, seed=1)
    data.set_epoch(4)
    other = ResampledDataset(list(range(12)), "over", labels=LABELS, seed=1)
    other.load_state_dict(data.state_dict())
    assert other.epoch == 4 and list(other) == list(data)
    with pytest.raises(TypeError, match=r"state_dict: expected a dict from ResampledDataset"):
        other.load_state_dict([4])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epoch"):
        other.load_state_dict({"epoch": -1})
    with pytest.raises(TypeError, match="epoch"):
        other.load_state_dict({})
