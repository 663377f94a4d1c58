"""torch_balance.smote.dataset: SMOTEDataset, its epochs, workers, cache and decoder."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import make_data
from imblearn.over_sampling import BorderlineSMOTE
from torch.utils.data import DataLoader, TensorDataset

from torch_balance.smote import SMOTE, SMOTEDataset, embed


def clustered_images(counts: tuple[int, ...] = (40, 12, 8)) -> TensorDataset:
    X, y = make_data(counts, d=6, seed=9)
    return TensorDataset(torch.from_numpy(X).reshape(-1, 2, 3), torch.from_numpy(y))


def test_dataset_epoch_zero_is_fit_resample_and_epochs_redraw() -> None:
    data = clustered_images()
    ds = SMOTEDataset(data, torch.nn.Flatten(), k_neighbors=3, seed=7, progress=False)
    X, y = embed(data, torch.nn.Flatten(), progress=False)
    X_res, y_res = SMOTE(k_neighbors=3, random_state=7).fit_resample(X, y)
    assert len(ds) == len(X_res) == 120
    items = [ds[i] for i in range(len(ds))]
    assert torch.equal(torch.stack([row for row, _ in items]), X_res)
    assert [label for _, label in items] == y_res.tolist()
    assert ds.is_synthetic.tolist() == [False] * 60 + [True] * 60
    assert ds.labels.tolist() == y_res.tolist()
    first = ds.synthetic.clone()
    ds.set_epoch(1)
    assert not torch.equal(first, ds.synthetic)
    assert ds.labels.tolist() == y_res.tolist()
    ds.set_epoch(0)
    assert torch.equal(first, ds.synthetic)
    assert ds[-1][1] == 2 and isinstance(ds[0][1], int)


def test_dataset_pickles_and_feeds_workers() -> None:
    ds = SMOTEDataset(clustered_images(), torch.nn.Flatten(), k_neighbors=3, progress=False)
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone.synthetic, ds.synthetic) and len(clone) == len(ds)
    loader = DataLoader(ds, batch_size=32, num_workers=2, persistent_workers=True)
    rows = torch.cat([batch[0] for batch in loader])
    assert torch.equal(rows[60:], ds.synthetic)
    ds.set_epoch(3)
    rows = torch.cat([batch[0] for batch in loader])  # the same persistent workers
    assert torch.equal(rows[60:], ds.synthetic)


def test_dataset_cache(tmp_path: Any) -> None:
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(6, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(len(x))
            return self.linear(x.flatten(1))

    data = clustered_images()
    encoder = Counting()
    path = tmp_path / "emb.pt"
    first = SMOTEDataset(data, encoder, k_neighbors=3, cache=path, progress=False)
    seen = len(calls)
    second = SMOTEDataset(data, encoder, k_neighbors=3, cache=path, progress=False)
    assert len(calls) == seen  # read from the file
    assert torch.equal(first.embeddings, second.embeddings)
    assert torch.equal(first.synthetic, second.synthetic)
    with torch.no_grad():
        encoder.linear.weight.add_(1.0)
    with pytest.raises(ValueError, match=r"encoder state_dict.*Delete"):
        SMOTEDataset(data, encoder, cache=path, k_neighbors=3, progress=False)
    fewer = TensorDataset(*(t[:-1] for t in data.tensors))
    with pytest.raises(ValueError, match="dataset length"):
        SMOTEDataset(fewer, encoder, cache=path, k_neighbors=3, progress=False)
    relabeled = TensorDataset(data.tensors[0], data.tensors[1].flip(0))
    with pytest.raises(ValueError, match=r"labels.*another cache path"):
        SMOTEDataset(relabeled, encoder, cache=path, k_neighbors=3, progress=False)


def test_dataset_with_resampler_and_decoder() -> None:
    data = clustered_images()
    decoder = torch.nn.Unflatten(1, (2, 3))
    ds = SMOTEDataset(
        data,
        torch.nn.Flatten(),
        resampler=BorderlineSMOTE(k_neighbors=3),
        decoder=decoder,
        progress=False,
    )
    assert ds.synthetic_inputs is not None
    assert ds.synthetic_inputs.shape == (len(ds) - 60, 2, 3)
    assert torch.equal(ds.synthetic_inputs.flatten(1), ds.synthetic)
    assert ds.smote.base_indices_ is None
    with pytest.raises(ValueError, match=r"decoder.*Unflatten"):
        SMOTEDataset(
            data, torch.nn.Flatten(), k_neighbors=3, decoder=torch.nn.Identity(), progress=False
        )


@pytest.mark.parametrize("content", [b"garbage", b"", "dict", "dir"])
def test_a_bad_cache_file_is_named_with_the_fix(tmp_path: Path, content: Any) -> None:
    path = tmp_path / "emb.pt"
    if content == "dir":
        path.mkdir()
    elif content == "dict":
        torch.save({"other": 1}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=r"cache: .*Delete .* or pass another cache path"):
        SMOTEDataset(
            clustered_images(), torch.nn.Flatten(), k_neighbors=3, cache=path, progress=False
        )


def test_internal_loaders_leave_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    SMOTEDataset(clustered_images(), torch.nn.Flatten(), k_neighbors=3, progress=False)
    assert torch.equal(state, torch.get_rng_state())
