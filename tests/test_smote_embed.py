"""torch_balance.smote.embed: the encoder pass."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from torch_balance.smote import embed


class Unlabeled(Dataset):
    """Items (input, label) but no label attribute: labels come from the batches."""

    def __init__(self, images: torch.Tensor, labels: list[str]) -> None:
        self.images, self.names = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        return self.images[i], self.names[i]


class Bare(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.zeros(2)


def image_data(n: int = 10) -> TensorDataset:
    images = torch.arange(n * 4, dtype=torch.float32).reshape(n, 1, 2, 2) / 10
    return TensorDataset(images, torch.tensor([0] * (n - 3) + [1] * 3))


@pytest.mark.parametrize("training", [True, False])
def test_embed_restores_mode(training: bool) -> None:
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(4, 3))
    encoder.train(training)
    X, y = embed(image_data(), encoder, batch_size=3, progress=False)
    assert encoder.training is training
    assert all(m.training is training for m in encoder.modules())
    assert X.dtype == torch.float32 and X.shape == (10, 3) and X.device.type == "cpu"
    # eval mode: dropout off, so the pass is deterministic. Another batch size may block the
    # matmul differently on another CPU, so compare with a tolerance; the same one, exactly.
    X2, _ = embed(image_data(), encoder, batch_size=4, progress=False)
    torch.testing.assert_close(X, X2, rtol=1e-5, atol=1e-6)
    X3, _ = embed(image_data(), encoder, batch_size=3, progress=False)
    assert torch.equal(X, X3)
    assert y.tolist() == [0] * 7 + [1] * 3


def test_embed_labels_from_batches() -> None:
    images = torch.zeros(5, 3)
    _, y = embed(
        Unlabeled(images, list("aabba")), torch.nn.Identity(), batch_size=2, progress=False
    )
    assert y.tolist() == list("aabba")
    with pytest.raises(TypeError, match="no label"):
        embed(Bare(), torch.nn.Identity(), progress=False)


def test_embed_errors_and_mode_restored_on_error() -> None:
    data = image_data()
    conv = torch.nn.Conv2d(1, 2, 1)
    conv.train()
    with pytest.raises(ValueError, match="Flatten"):
        embed(data, conv, progress=False)
    assert conv.training

    class Drops(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:1]

    with pytest.raises(ValueError, match="one output row per input"):
        embed(data, Drops(), batch_size=4, progress=False)

    class Poison(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = x.flatten(1).clone()
            out[(x.flatten(1)[:, 0] * 10).round() == 24] = float("nan")  # sample 6
            return out

    with pytest.raises(ValueError, match=r"samples \[6\]"):
        embed(data, Poison(), batch_size=4, progress=False)
    with pytest.raises(TypeError, match="Module"):
        embed(data, lambda x: x, progress=False)  # type: ignore[arg-type]
