"""bench.sources: the data sources, read from generated files (nothing is downloaded)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torch_balance.bench.sources import load_source
from torch_balance.bench.split import make_split, materialize


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the idx format torchvision's MNIST readers parse."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def make_fashion_dir(directory: Path, per_class: int = 20, test_per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", per_class), ("t10k", test_per_class)):
        labels = np.repeat(np.arange(10), n)
        images = rng.integers(0, 256, size=(labels.size, 28, 28))
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return directory


def make_image_folder(root: Path, sizes: dict[str, int], size: int = 10) -> Path:
    rng = np.random.default_rng(1)
    for c, (name, n) in enumerate(sizes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 60, size=(size, size, 3)) + 60 * c
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_BALANCE_CACHE", str(tmp_path / "cache"))


def test_unknown_dataset_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        load_source("mnist")
    for name in ("digits", "fashion-mnist", "cifar10", "imagefolder:PATH"):
        assert name in str(info.value)


def test_fashion_mnist_from_a_plain_directory_of_gz_files(tmp_path: Path) -> None:
    directory = make_fashion_dir(tmp_path / "plain")
    source = load_source(f"fashion-mnist:{directory}")
    assert source.num_classes == 10 and len(source.train_labels) == 200
    assert source.test_labels is not None and len(source.test_labels) == 40
    # torchvision's layout was built in the cache, with the files decompressed.
    raw = list((tmp_path / "cache").rglob("FashionMNIST/raw/train-images-idx3-ubyte"))
    assert len(raw) == 1
    split = make_split(source, ratio=5, seed=0)
    data = materialize(source, split)
    assert data.x_train.shape[1:] == (1, 28, 28) and data.x_train.dtype == torch.uint8
    assert data.y_test.bincount().tolist() == [4] * 10
    # A second load reuses the cache.
    assert load_source(f"fashion-mnist:{directory}").num_classes == 10


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        load_source(f"fashion-mnist:{tmp_path / 'nowhere'}")
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "download=True" in message and "fashion-mnist:DIR" in message


def test_missing_cifar10_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"download=True.*cifar10:DIR"):
        load_source(f"cifar10:{tmp_path}")


def test_image_folder_without_splits_gets_a_balanced_test(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", {"ant": 20, "bee": 10, "cat": 6})
    source = load_source(f"imagefolder:{root}", image_size=8, progress=False)
    assert source.classes == ["ant", "bee", "cat"] and source.natural
    split = make_split(source, seed=0)
    assert split.test_counts.tolist() == [1, 1, 1]  # a fifth of the smallest class
    assert (split.train_counts + split.val_counts).tolist() == [19, 9, 5]
    data = materialize(source, split)
    assert data.x_train.shape[1:] == (3, 8, 8)
    assert data.y_train.bincount().tolist() == split.train_counts.tolist()


def test_image_folder_class_too_small_is_named(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", {"ant": 20, "bee": 2})
    source = load_source(f"imagefolder:{root}", progress=False)
    with pytest.raises(ValueError, match=r"class 'bee' with 2 image\(s\)"):
        make_split(source, seed=0)


def test_image_folder_uses_train_val_test_folders(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "d" / "train", {"a": 8, "b": 4})
    make_image_folder(tmp_path / "d" / "val", {"a": 2, "b": 2})
    make_image_folder(tmp_path / "d" / "test", {"a": 3, "b": 3})
    source = load_source(f"imagefolder:{tmp_path / 'd'}", image_size=8, progress=False)
    split = make_split(source, seed=0)
    assert split.train_counts.tolist() == [8, 4]
    assert split.val_counts.tolist() == [2, 2] and split.test_counts.tolist() == [3, 3]
    data = materialize(source, split)
    assert len(data.y_val) == 4 and len(data.y_test) == 6
