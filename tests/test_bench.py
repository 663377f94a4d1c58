"""The benchmark's pieces: imbalance construction, splits, data sources, metrics, model."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from imblearn.metrics import geometric_mean_score
from PIL import Image
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

from torch_balance.bench.data import (
    class_counts,
    load_source,
    long_tail_counts,
    make_split,
    materialize,
    step_counts,
)
from torch_balance.bench.metrics import scores, thirds
from torch_balance.bench.protocol import STRATEGIES, Budget, SmallCNN, check_strategies, train

# --------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------- imbalance


@pytest.mark.parametrize("n_max,ratio,classes", [(500, 100, 10), (124, 10, 10), (50, 3, 4)])
def test_long_tail_counts_follow_cao_formula(n_max: int, ratio: float, classes: int) -> None:
    counts = long_tail_counts(n_max, ratio, classes)
    expected = [int(np.floor(n_max * ratio ** (-i / (classes - 1)) + 1e-9)) for i in range(classes)]
    assert counts.tolist() == expected
    assert counts[0] == n_max and counts[-1] == int(n_max / ratio)
    assert (np.diff(counts) <= 0).all()


def test_step_counts_put_half_the_classes_at_n_max_over_ratio() -> None:
    assert step_counts(100, 10, 10).tolist() == [100] * 5 + [10] * 5
    assert step_counts(100, 4, 5).tolist() == [100] * 3 + [25] * 2


def test_digits_split_is_balanced_disjoint_and_follows_the_profile() -> None:
    source = load_source("digits")
    split = make_split(source, ratio=10, seed=3)
    assert split.test_counts.tolist() == [50] * 10
    # Training + validation realise the long-tailed targets, class by class.
    assert (split.train_counts + split.val_counts).tolist() == split.target_counts.tolist()
    assert (
        sorted(split.target_counts.tolist(), reverse=True) == long_tail_counts(124, 10, 10).tolist()
    )
    # Validation is taken from the imbalanced training data: about a fifth of each class.
    assert (split.val_counts >= 1).all()
    share = split.val_counts / split.target_counts
    assert np.all(np.abs(share - 0.2) < 0.1)
    # No image in two parts.
    parts = [set(split.train.tolist()), set(split.val.tolist()), set(split.test.tolist())]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    labels = source.train_labels
    assert class_counts(labels[split.test], 10).tolist() == [50] * 10
    assert class_counts(labels[split.train], 10).tolist() == split.train_counts.tolist()
    # The minority (tail third) are the three smallest classes.
    smallest = np.argsort(split.target_counts, kind="stable")[:3]
    assert sorted(smallest.tolist()) == split.minority


def test_split_is_a_pure_function_of_the_seed_and_minority_is_random() -> None:
    source = load_source("digits")
    a, b = make_split(source, ratio=10, seed=1), make_split(source, ratio=10, seed=1)
    assert a.train.tolist() == b.train.tolist() and a.test.tolist() == b.test.tolist()
    state = torch.get_rng_state()
    rarest = {int(np.argmin(make_split(source, ratio=10, seed=s).target_counts)) for s in range(8)}
    assert torch.equal(state, torch.get_rng_state()), "the split must not touch the global RNG"
    assert len(rarest) >= 3, "which class is rarest must change with the seed"


def test_step_split_marks_the_minority_classes() -> None:
    source = load_source("digits")
    split = make_split(source, profile="step", ratio=10, seed=0)
    small = sorted(np.flatnonzero(split.target_counts == 12).tolist())
    assert len(small) == 5 and small == split.minority
    assert sorted(split.target_counts.tolist()) == [12] * 5 + [124] * 5


def test_split_rejects_a_ratio_that_empties_a_class() -> None:
    with pytest.raises(ValueError, match=r"--ratio.*at least 2"):
        make_split(load_source("digits"), ratio=100, seed=0)
    with pytest.raises(ValueError, match="--profile"):
        make_split(load_source("digits"), profile="zipf", ratio=10)


# --------------------------------------------------------------------------- sources


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


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("seed", range(4))
def test_metrics_match_scikit_learn_on_fixed_predictions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_classes = 7
    y_true = np.repeat(np.arange(num_classes), 30)
    y_pred = np.where(rng.random(y_true.size) < 0.6, y_true, rng.integers(0, 6, y_true.size))
    train_counts = rng.integers(5, 500, num_classes)
    got = scores(y_true, y_pred, train_counts)
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert got["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert got["g_mean"] == pytest.approx(geometric_mean_score(y_true, y_pred))
    assert got["accuracy"] == pytest.approx(float(np.mean(y_true == y_pred)))
    recall = recall_score(y_true, y_pred, average=None)
    assert got["per_class_recall"] == pytest.approx(recall.tolist())
    head, middle, tail = thirds(train_counts)
    assert got["tail_recall"] == pytest.approx(recall[tail].mean())
    assert got["head_recall"] == pytest.approx(recall[head].mean())
    assert got["middle_recall"] == pytest.approx(recall[middle].mean())
    assert got["minority_recall"] == got["tail_recall"]
    assert set(tail) == set(np.argsort(train_counts)[:2].tolist())


def test_minority_recall_uses_the_given_classes() -> None:
    got = scores([0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 1, 0, 2, 2, 0, 0], [9, 9, 1, 1], minority=[1, 3])
    assert got["minority_recall"] == pytest.approx(0.25)
    assert got["g_mean"] == 0.0  # class 3 is never recalled, as imbalanced-learn says


def test_thirds_split_head_middle_tail() -> None:
    head, middle, tail = thirds([100, 1, 50, 10, 5, 20])
    assert (head, middle, tail) == ([0, 2], [5, 3], [4, 1])
    assert thirds([3, 7]) == ([1], [], [0])


# --------------------------------------------------------------------------- protocol


def test_unknown_strategy_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        check_strategies("erm,smote")
    assert all(name in str(info.value) for name in STRATEGIES)
    assert check_strategies("over, erm,over") == ["over", "erm"]


def test_model_and_training_leave_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a, b = SmallCNN(1, 3, 8, seed=5), SmallCNN(1, 3, 8, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = SmallCNN(1, 3, 8, seed=6)
    assert not torch.equal(a.head.weight, c.head.weight)
    assert torch.equal(state, torch.get_rng_state()), "model init must not use the global RNG"
    x = torch.randint(0, 255, (12, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    y = torch.arange(12) % 3

    def feed(epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(x[:6], y[:6]), (x[6:], y[6:])]

    state = torch.get_rng_state()
    epochs = train(a, feed, steps=3, budget=Budget(3, 6), device=torch.device("cpu"))
    assert epochs == 2
    assert torch.equal(state, torch.get_rng_state())
