"""torch_balance.integrations: finding and advancing every torch_balance object in a stack."""

from __future__ import annotations

from types import SimpleNamespace

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
