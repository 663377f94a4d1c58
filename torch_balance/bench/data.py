"""Benchmark data: load a source, split it, and make its training part imbalanced.

A :class:`Source` knows the labels of its pools (read without decoding an image) and how to
load the images of chosen indices as ``uint8`` tensors ``[k, C, H, W]``. :func:`make_split`
turns a source and a seed into a :class:`Split` (indices only): a balanced test set, an
imbalanced training set and a validation set taken from that imbalanced training data.
:func:`materialize` loads the images of a split.

Sources: ``digits`` (scikit-learn's bundled 8x8 digits), ``fashion-mnist[:DIR]`` and
``cifar10[:DIR]`` (through torchvision, never downloading), ``imagefolder:PATH``.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torch_balance._rng import Stream, generator
from torch_balance._validation import check_int, fail

__all__ = [
    "DATASET_NAMES",
    "DEBIAN_FASHION_MNIST",
    "Source",
    "Split",
    "Tensors",
    "cache_dir",
    "class_counts",
    "load_source",
    "long_tail_counts",
    "make_split",
    "materialize",
    "step_counts",
]

DATASET_NAMES = ("digits", "fashion-mnist[:DIR]", "cifar10[:DIR]", "imagefolder:PATH")
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
PROFILES = ("longtail", "step")


DIGITS_TEST_PER_CLASS = 50
VAL_FRACTION = 0.2
TEST_FRACTION = 0.2
MIN_PER_CLASS = 3

Loader = Callable[[np.ndarray], torch.Tensor]


@dataclass
class Source:
    """Labelled image pools, read lazily.

    Attributes:
        name: Short name (``"digits"``, ``"fashion-mnist"``, ...).
        description: One line for reports.
        classes: Class names, indexed by label.
        train_labels: Labels of the training pool (int64).
        load_train: ``indices -> uint8 tensor [k, C, H, W]`` for the training pool.
        test_labels: Labels of a given test set, or ``None`` to split one from the pool.
        load_test: Loader for the given test set.
        val_labels: Labels of a given validation set, or ``None`` to split one off.
        load_val: Loader for the given validation set.
        natural: The pool is imbalanced already (no extra imbalance unless asked).
        test_per_class: Size per class of a balanced test split cut from the pool.
    """

    name: str
    description: str
    classes: list[str]
    train_labels: np.ndarray
    load_train: Loader
    test_labels: np.ndarray | None = None
    load_test: Loader | None = None
    val_labels: np.ndarray | None = None
    load_val: Loader | None = None
    natural: bool = False
    test_per_class: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class Split:
    """Indices of one seed's split, and how its imbalance was built.

    ``train``/``val`` index the training pool (or ``val`` the given validation set when
    ``val_given``); ``test`` indexes the test pool (or the training pool when
    ``test_from_pool``).
    """

    seed: int
    profile: str
    ratio: float | None
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_counts: np.ndarray
    val_counts: np.ndarray
    test_counts: np.ndarray
    target_counts: np.ndarray
    minority: list[int]
    test_from_pool: bool
    val_given: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class Tensors:
    """The images (uint8 ``[N, C, H, W]``) and labels (int64) of one split."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def cache_dir() -> Path:
    """Where prepared dataset layouts go: ``$TORCH_BALANCE_CACHE`` or ``~/.cache/torch_balance``.

    Example:
        >>> cache_dir().name in ("torch_balance",) or "TORCH_BALANCE_CACHE" in os.environ
        True
    """
    env = os.environ.get("TORCH_BALANCE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "torch_balance"


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Images per class, as an int64 vector of length ``num_classes``.

    Example:
        >>> class_counts(np.array([0, 2, 2]), 3).tolist()
        [1, 0, 2]
    """
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.int64)


def long_tail_counts(n_max: int, ratio: float, num_classes: int) -> np.ndarray:
    """``n_i = floor(n_max * ratio**(-i / (C - 1)))`` for rank ``i`` (Cao et al., NeurIPS 2019).

    Example:
        >>> long_tail_counts(100, 10, 3).tolist()
        [100, 31, 10]
    """
    if num_classes == 1:
        return np.array([n_max], dtype=np.int64)
    ranks = np.arange(num_classes, dtype=np.float64)
    values = n_max * np.power(float(ratio), -ranks / (num_classes - 1))
    # A hair of slack so that exact powers are not floored one below by rounding error.
    return np.floor(values + 1e-9).astype(np.int64)


def step_counts(n_max: int, ratio: float, num_classes: int) -> np.ndarray:
    """Step imbalance (Buda et al., 2018): the last ``C // 2`` ranks get ``n_max / ratio``.

    Example:
        >>> step_counts(100, 10, 4).tolist()
        [100, 100, 10, 10]
    """
    counts = np.full(num_classes, n_max, dtype=np.int64)
    minority = num_classes // 2
    if minority:
        counts[num_classes - minority :] = math.floor(n_max / float(ratio) + 1e-9)
    return counts


def _permutation(n: int, seed: int, *keys: int) -> np.ndarray:
    return torch.randperm(n, generator=generator(seed, *keys)).numpy()


def _members(labels: np.ndarray, c: int) -> np.ndarray:
    return np.flatnonzero(labels == c)


def make_split(
    source: Source,
    *,
    profile: str = "longtail",
    ratio: float | None = None,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
) -> Split:
    """Split ``source`` for one seed and make its training part imbalanced.

    Protocol: a balanced test set (the source's own, or ``test_per_class`` images of every
    class cut from the pool); the rest of the pool is made imbalanced with ``profile`` and
    ``ratio`` around ``n_max`` (the smallest class's pool size), with a random assignment of
    classes to ranks (Buda et al., 2018); a stratified ``val_fraction`` of that imbalanced
    data (at least one image per class) becomes the validation set. Every draw comes from
    ``_rng.generator(seed, ...)``.

    Args:
        source: The data.
        profile: ``"longtail"`` or ``"step"``.
        ratio: Largest over smallest class size; ``None`` keeps a natural source's counts.
        seed: Seeds the test cut, the class ranks and the subsets.
        val_fraction: Share of each imbalanced class held out for validation.

    Returns:
        The split.

    Raises:
        ValueError: For an unknown profile, a ratio below 1, or a class too small.

    Example:
        >>> source = load_source("digits")
        >>> split = make_split(source, ratio=10, seed=0)
        >>> int(split.test_counts.min()) == int(split.test_counts.max()) == 50
        True
        >>> int(split.train_counts.max() + split.val_counts.max()) == 124
        True
    """
    if profile not in PROFILES:
        fail("--profile", "one of " + ", ".join(PROFILES), profile)
    if ratio is not None and (not isinstance(ratio, int | float) or not ratio >= 1.0):
        fail("--ratio", "a number >= 1", ratio, "1 means balanced; 100 is the usual long tail")
    if not 0.0 < val_fraction < 1.0:
        fail("val_fraction", "a number in (0, 1)", val_fraction)
    seed = check_int("seed", seed, minimum=0)
    num_classes = source.num_classes
    pool_labels = np.asarray(source.train_labels, dtype=np.int64)
    pool_counts = class_counts(pool_labels, num_classes)
    notes: list[str] = []

    # 1. The test set.
    if source.test_labels is not None:
        test = np.arange(len(source.test_labels))
        test_counts = class_counts(source.test_labels, num_classes)
        available = [_members(pool_labels, c) for c in range(num_classes)]
        test_from_pool = False
    else:
        smallest = int(pool_counts.min())
        needed = MIN_PER_CLASS if source.val_labels is None else 2
        if smallest < needed:
            c = int(pool_counts.argmin())
            fail(
                source.name,
                f"at least {needed} images in every class for a train/validation/test split",
                f"class {source.classes[c]!r} with {smallest} image(s)",
                "Add images to that class, remove it, or provide train/, val/ and test/ folders",
            )
        per_class = source.test_per_class or max(1, int(smallest * TEST_FRACTION))
        test_parts, available = [], []
        for c in range(num_classes):
            members = _members(pool_labels, c)
            order = members[_permutation(members.size, seed, Stream.BENCH_TEST, c)]
            test_parts.append(order[:per_class])
            available.append(np.sort(order[per_class:]))
        test = np.concatenate(test_parts)
        test_counts = np.full(num_classes, per_class, dtype=np.int64)
        test_from_pool = True

    # 2. The imbalanced training data.
    sizes = np.array([a.size for a in available], dtype=np.int64)
    ranks = _permutation(num_classes, seed, Stream.BENCH_CLASSES)  # ranks[i] = class of rank i
    if ratio is None and source.natural:
        targets = sizes.copy()
        order = np.argsort(-sizes, kind="stable")
        tail = max(1, round(num_classes / 3)) if num_classes > 1 else 0
        minority = sorted(int(c) for c in order[num_classes - tail :])
    else:
        effective = 1.0 if ratio is None else float(ratio)
        n_max = int(sizes.min())
        by_rank = (long_tail_counts if profile == "longtail" else step_counts)(
            n_max, effective, num_classes
        )
        targets = np.empty(num_classes, dtype=np.int64)
        targets[ranks] = by_rank
        if profile == "step":
            minority = sorted(int(c) for c in ranks[num_classes - num_classes // 2 :])
        else:
            tail = max(1, round(num_classes / 3)) if num_classes > 1 else 0
            minority = sorted(int(c) for c in ranks[num_classes - tail :])
    need = 1 if source.val_labels is not None else 2
    if int(targets.min()) < need:
        c = int(targets.argmin())
        fail(
            "--ratio",
            f"a ratio that leaves every class at least {need} training images",
            ratio,
            f"class {source.classes[c]!r} would keep {int(targets[c])} of {int(sizes[c])};"
            " use a smaller --ratio or more data",
        )

    # 3. Subsets, then the validation share of each.
    train_parts, val_parts = [], []
    for c in range(num_classes):
        members = available[c]
        chosen = members[
            _permutation(members.size, seed, Stream.BENCH_SUBSET, c)[: int(targets[c])]
        ]
        if source.val_labels is None:
            n_val = min(max(1, round(val_fraction * chosen.size)), chosen.size - 1)
            val_parts.append(np.sort(chosen[:n_val]))
            train_parts.append(np.sort(chosen[n_val:]))
        else:
            train_parts.append(np.sort(chosen))
    train = np.concatenate(train_parts)
    if source.val_labels is None:
        val = np.concatenate(val_parts)
        val_counts = class_counts(pool_labels[val], num_classes)
    else:
        val = np.arange(len(source.val_labels))
        val_counts = class_counts(source.val_labels, num_classes)
        notes.append("validation: the given val/ folder")
    if not test_from_pool and len(set(test_counts.tolist())) > 1:
        notes.append("test: the given test set is not balanced; accuracy follows its mix")
    return Split(
        seed=seed,
        profile=profile,
        ratio=ratio,
        train=train,
        val=val,
        test=test,
        train_counts=class_counts(pool_labels[train], num_classes),
        val_counts=val_counts,
        test_counts=test_counts,
        target_counts=targets,
        minority=minority,
        test_from_pool=test_from_pool,
        val_given=source.val_labels is not None,
        notes=notes,
    )


def materialize(source: Source, split: Split) -> Tensors:
    """Load the images of ``split`` (uint8) with their labels (int64)."""
    pool = np.asarray(source.train_labels, dtype=np.int64)

    def labels(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.int64))

    x_train, y_train = source.load_train(split.train), labels(pool[split.train])
    if split.val_given:
        if source.load_val is None or source.val_labels is None:
            fail("source", "a loader for its validation set", source.name)
        x_val, y_val = source.load_val(split.val), labels(source.val_labels[split.val])
    else:
        x_val, y_val = source.load_train(split.val), labels(pool[split.val])
    if split.test_from_pool:
        x_test, y_test = source.load_train(split.test), labels(pool[split.test])
    else:
        if source.load_test is None or source.test_labels is None:
            fail("source", "a loader for its test set", source.name)
        x_test, y_test = source.load_test(split.test), labels(source.test_labels[split.test])
    return Tensors(x_train, y_train, x_val, y_val, x_test, y_test)


# ----------------------------------------------------------------------------- sources


def load_source(spec: str, *, image_size: int = 32, progress: bool = True) -> Source:
    """Open the data named by ``spec`` (see :data:`DATASET_NAMES`); nothing is downloaded.

    Args:
        spec: ``"digits"``, ``"fashion-mnist[:DIR]"``, ``"cifar10[:DIR]"`` or
            ``"imagefolder:PATH"``.
        image_size: Side length images of an image folder are resized to.
        progress: Show a progress bar while decoding an image folder.

    Returns:
        The source.

    Raises:
        ValueError: For an unknown name or missing files, with how to get them.

    Example:
        >>> source = load_source("digits")
        >>> source.num_classes, len(source.train_labels)
        (10, 1797)
        >>> load_source("mnist")
        Traceback (most recent call last):
        ...
        ValueError: DATA: expected one of digits, fashion-mnist[:DIR], cifar10[:DIR], ...
    """
    if not isinstance(spec, str):
        fail("DATA", "a string", spec, kind=TypeError)
    name, _, where = spec.partition(":")
    name = name.strip().lower()
    if name == "digits" and not where:
        return _digits()
    if name in ("fashion-mnist", "fashionmnist", "fashion_mnist"):
        return _fashion_mnist(where or None)
    if name in ("cifar10", "cifar-10"):
        return _cifar10(where or None)
    if name == "imagefolder" and where:
        return _image_folder(where, image_size=image_size, progress=progress)
    fail(
        "DATA",
        "one of " + ", ".join(DATASET_NAMES),
        spec,
        "imagefolder needs a path, e.g. imagefolder:./my_images",
    )


def _tensor_loader(images: torch.Tensor) -> Loader:
    def load(indices: np.ndarray) -> torch.Tensor:
        return images[torch.as_tensor(np.asarray(indices, dtype=np.int64))].contiguous()

    return load


def _digits() -> Source:
    from sklearn.datasets import load_digits

    bunch: Any = load_digits()
    # Pixel values are 0..16; spread them over 0..255 (exactly: 16 * 255 / 16).
    pixels = np.round(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0))
    images = torch.as_tensor(pixels.astype(np.uint8)).unsqueeze(1)
    return Source(
        name="digits",
        description="scikit-learn digits (8x8 grey, 1797 images, 10 classes)",
        classes=[str(c) for c in range(10)],
        train_labels=np.asarray(bunch.target, dtype=np.int64),
        load_train=_tensor_loader(images),
        test_per_class=DIGITS_TEST_PER_CLASS,
    )


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _fashion_help(where: str) -> str:
    return (
        f"Fashion-MNIST files not found in {where}. Get them with the Debian/Ubuntu package "
        f"(`apt-get install dataset-fashion-mnist`, which installs {DEBIAN_FASHION_MNIST}), "
        "with torchvision's download when online (`python -c \"from torchvision.datasets "
        "import FashionMNIST; FashionMNIST('DIR', download=True)\"`), or pass "
        "fashion-mnist:DIR for a directory holding the four idx files "
        "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz; .gz optional)"
    )


def _fashion_root(where: str | None) -> Path:
    """A torchvision root for FashionMNIST, building a cache layout when needed."""
    if where is None:
        if not Path(DEBIAN_FASHION_MNIST).is_dir():
            fail("DATA", "fashion-mnist:DIR", "fashion-mnist", _fashion_help(DEBIAN_FASHION_MNIST))
        where = DEBIAN_FASHION_MNIST
    given = Path(where).expanduser()
    raw = given / "FashionMNIST" / "raw"
    if all((raw / stem).is_file() for stem in FASHION_FILES):
        return given  # already torchvision's layout
    for directory in (given, raw):
        found = {stem: _find(directory, stem) for stem in FASHION_FILES}
        if all(found.values()):
            break
    else:
        fail(
            "DATA", "a directory with the four Fashion-MNIST idx files", where, _fashion_help(where)
        )
    key = hashlib.sha1(str(given.resolve()).encode()).hexdigest()[:12]
    root = cache_dir() / "fashion-mnist" / key
    target = root / "FashionMNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for stem, path in found.items():
        assert path is not None  # for mypy; checked just above
        out = target / stem
        if out.exists() or out.is_symlink():
            if out.exists() and out.stat().st_mtime >= path.stat().st_mtime:
                continue
            out.unlink()
        if path.suffix == ".gz":
            # torchvision reads the uncompressed files; decompress once into the cache.
            partial = out.with_name(out.name + ".partial")
            with gzip.open(path, "rb") as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(partial, out)
        else:
            out.symlink_to(path.resolve())
    return root


def _fashion_mnist(where: str | None) -> Source:
    from torchvision.datasets import FashionMNIST

    root = _fashion_root(where)
    try:
        train = FashionMNIST(str(root), train=True, download=False)
        test = FashionMNIST(str(root), train=False, download=False)
    except RuntimeError as error:
        fail("DATA", "readable Fashion-MNIST files", str(error), _fashion_help(str(root)))
    shown = where or DEBIAN_FASHION_MNIST
    return Source(
        name="fashion-mnist",
        description=f"Fashion-MNIST from {shown} (28x28 grey, 10 classes)",
        classes=list(train.classes),
        train_labels=train.targets.numpy().astype(np.int64),
        load_train=_tensor_loader(train.data.unsqueeze(1)),
        test_labels=test.targets.numpy().astype(np.int64),
        load_test=_tensor_loader(test.data.unsqueeze(1)),
    )


def _cifar_help(where: str) -> str:
    return (
        f"CIFAR-10 not found in {where}. Get it with torchvision's download when online "
        "(`python -c \"from torchvision.datasets import CIFAR10; CIFAR10('DIR', "
        'download=True)"`), then pass cifar10:DIR for the directory holding '
        "cifar-10-batches-py/ (or that folder itself)"
    )


def _cifar10(where: str | None) -> Source:
    from torchvision.datasets import CIFAR10

    shown = where or "./data"
    given = Path(shown).expanduser()
    if (given / "cifar-10-batches-py").is_dir():
        root = given
    elif (given / "data_batch_1").is_file():
        key = hashlib.sha1(str(given.resolve()).encode()).hexdigest()[:12]
        root = cache_dir() / "cifar10" / key
        root.mkdir(parents=True, exist_ok=True)
        link = root / "cifar-10-batches-py"
        if not link.exists():
            link.symlink_to(given.resolve())
    else:
        fail("DATA", "cifar10:DIR with CIFAR-10's python batches", shown, _cifar_help(shown))
    try:
        train = CIFAR10(str(root), train=True, download=False)
        test = CIFAR10(str(root), train=False, download=False)
    except RuntimeError as error:
        fail("DATA", "intact CIFAR-10 files", str(error), _cifar_help(shown))

    def chw(array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array).permute(0, 3, 1, 2).contiguous()

    return Source(
        name="cifar10",
        description=f"CIFAR-10 from {shown} (32x32 colour, 10 classes)",
        classes=list(train.classes),
        train_labels=np.asarray(train.targets, dtype=np.int64),
        load_train=_tensor_loader(chw(train.data)),
        test_labels=np.asarray(test.targets, dtype=np.int64),
        load_test=_tensor_loader(chw(test.data)),
    )


def _folder_loader(dataset: Any, image_size: int, progress: bool, what: str) -> Loader:
    from tqdm.auto import tqdm

    def load(indices: np.ndarray) -> torch.Tensor:
        out = torch.empty((len(indices), 3, image_size, image_size), dtype=torch.uint8)
        for row, i in enumerate(
            tqdm(indices, desc=f"decoding {what}", disable=not progress, leave=False)
        ):
            out[row] = dataset[int(i)][0]
        return out

    return load


def _image_folder(where: str, *, image_size: int, progress: bool) -> Source:
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    image_size = check_int("--image-size", image_size, minimum=4)
    path = Path(where).expanduser()
    if not path.is_dir():
        fail("DATA", "imagefolder:PATH with PATH an existing directory", where)
    transform = transforms.Compose(
        [transforms.Resize((image_size, image_size)), transforms.PILToTensor()]
    )

    def open_folder(folder: Path) -> Any:
        try:
            return ImageFolder(str(folder), transform=transform)
        except (FileNotFoundError, RuntimeError) as error:
            fail(
                "DATA", "a folder with one sub-folder of images per class", str(folder), str(error)
            )

    parts = {name: path / name for name in ("train", "val", "test") if (path / name).is_dir()}
    train = open_folder(parts.get("train", path))
    classes = list(train.classes)
    others: dict[str, Any] = {}
    for name in ("val", "test"):
        if name in parts and "train" in parts:
            others[name] = open_folder(parts[name])
            if list(others[name].classes) != classes:
                fail(
                    f"{name}/",
                    f"the same class folders as train/ ({classes})",
                    list(others[name].classes),
                )

    def labels(dataset: Any) -> np.ndarray:
        return np.asarray(dataset.targets, dtype=np.int64)

    test, val = others.get("test"), others.get("val")
    return Source(
        name="imagefolder",
        description=f"image folder {where} ({len(classes)} classes, resized to {image_size}px)",
        classes=classes,
        train_labels=labels(train),
        load_train=_folder_loader(train, image_size, progress, "train"),
        test_labels=None if test is None else labels(test),
        load_test=None if test is None else _folder_loader(test, image_size, progress, "test"),
        val_labels=None if val is None else labels(val),
        load_val=None if val is None else _folder_loader(val, image_size, progress, "val"),
        natural=True,
    )
