"""One way to take labels: every function that takes labels takes a dataset as the samplers do,
and a dataset where labels or weights belong is refused with the call to use. Also: ``embed``
returns its labels as a tensor, and the encoder pass is quiet off a terminal."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset, TensorDataset
from torchvision.datasets import ImageFolder

from torch_balance import (
    BalancedSampler,
    LabelIndex,
    MultiLabelIndex,
    SMOTEDataset,
    WeightedSampler,
    class_weights,
    embed,
    get_labels,
    make_plan,
    target_counts,
)

LABELS = torch.tensor([0] * 6 + [1] * 3 + [2])
DATA = TensorDataset(torch.randn(10, 4, generator=torch.Generator().manual_seed(0)), LABELS)


def image_folder(root: Path, sizes: dict[str, int]) -> ImageFolder:
    for name, n in sizes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (2, 2)).save(root / name / f"{i}.png")
    return ImageFolder(str(root))


class NoGetitem(Dataset):
    """Labels in ``.targets``; reading an item would fail (a reader must not decode)."""

    targets = (1, 1, 1, 0)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> Any:
        raise AssertionError("an item was read")


@pytest.mark.parametrize("kind", ["tensors", "folder", "subset", "targets"])
def test_label_takers_accept_a_dataset_as_the_samplers_do(kind: str, tmp_path: Path) -> None:
    if kind == "folder":
        dataset: Any = image_folder(tmp_path / "f", {"a": 5, "b": 2, "c": 1})
    elif kind == "subset":
        dataset = Subset(DATA, [0, 1, 2, 6, 7, 9])
    elif kind == "targets":
        dataset = NoGetitem()
    else:
        dataset = DATA
    labels = get_labels(dataset)
    sampler = BalancedSampler(dataset, "sqrt", num_samples=40)
    assert target_counts(dataset, "sqrt", num_samples=40) == sampler.target_counts()
    assert target_counts(dataset, "under") == target_counts(labels, "under")
    assert make_plan(dataset, "over").as_dict(0) == make_plan(labels, "over").as_dict(0)
    assert torch.equal(class_weights(dataset, "sqrt"), class_weights(labels, "sqrt"))


def test_a_dataset_where_a_label_vector_belongs_names_the_reader() -> None:
    with pytest.raises(TypeError, match=r"labels: .*got 'TensorDataset'\. .*get_labels\(dataset\)"):
        LabelIndex(DATA)
    with pytest.raises(TypeError, match=r"labelsets: .*get_labelsets\(dataset\).*repeat_factors"):
        MultiLabelIndex(DATA)


def test_weighted_sampler_given_a_dataset_says_what_it_expects_and_the_recipe_works() -> None:
    with pytest.raises(TypeError) as raised:
        WeightedSampler(DATA)
    message = str(raised.value)
    assert message.startswith("weights: expected one weight per sample")
    assert "a dataset (TensorDataset)" in message and "BalancedSampler(dataset)" in message
    recipe = message.split("for weights from its labels, ")[1]
    assert recipe == "labels = get_labels(dataset); weights = class_weights(labels)[labels]"
    namespace: dict[str, Any] = {
        "dataset": DATA,
        "get_labels": get_labels,
        "class_weights": class_weights,
    }
    exec(recipe, namespace)  # the advice runs as written
    sampler = WeightedSampler(namespace["weights"], num_samples=3000, exact=True)
    counts = np.bincount(LABELS.numpy()[list(sampler)], minlength=3)
    # exact=True: each sample gets the floor or ceiling of its share, so each class 1000 +- 3
    assert np.abs(counts - 1000).max() <= 3, counts


def test_ragged_weights_are_refused_by_name() -> None:
    with pytest.raises((TypeError, ValueError), match=r"^weights: expected"):
        WeightedSampler([[1.0, 2.0], [3.0]])


def test_embed_returns_labels_as_a_tensor_like_the_embeddings() -> None:
    X, y = embed(DATA, torch.nn.Identity(), batch_size=4, progress=False)
    assert isinstance(X, torch.Tensor) and isinstance(y, torch.Tensor)
    assert y.dtype == torch.int64 and y.device.type == "cpu" and torch.equal(y, LABELS)
    small = TensorDataset(torch.zeros(3, 2), torch.tensor([2, 0, 1], dtype=torch.int32))
    assert embed(small, torch.nn.Identity(), progress=False)[1].dtype == torch.int64


class Named(Dataset):
    """String labels from the items: no tensor can hold them."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        return torch.zeros(2), "ab"[i % 2]


def test_embed_keeps_string_labels_in_numpy() -> None:
    _, y = embed(Named(), torch.nn.Identity(), progress=False)
    assert isinstance(y, np.ndarray) and y.tolist() == ["a", "b", "a"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("where", ["embed", "SMOTEDataset"])
def test_encoder_pass_shows_a_bar_on_a_terminal_only(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run() -> None:
        if where == "embed":
            embed(DATA, torch.nn.Identity(), batch_size=2)
        else:
            pairs = TensorDataset(torch.randn(6, 2), torch.tensor([0, 0, 0, 0, 1, 1]))
            SMOTEDataset(pairs, torch.nn.Identity(), k_neighbors=1, batch_size=2)

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    run()
    assert log.getvalue() == ""  # a log or a pipe gets no carriage-return updates
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run()
    assert "embed" in terminal.getvalue() and "\r" in terminal.getvalue()
