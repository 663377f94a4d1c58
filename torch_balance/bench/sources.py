"""Benchmark data sources: labelled image pools, read lazily, never downloaded.

A :class:`Source` knows the labels of its pools (read without decoding an image) and how to
load the images of chosen indices as ``uint8`` tensors ``[k, C, H, W]``. :func:`load_source`
opens one from its name: ``digits`` (scikit-learn's bundled 8x8 digits),
``fashion-mnist[:DIR]`` and ``cifar10[:DIR]`` (through torchvision), ``imagefolder:PATH``.
``bench.split`` turns a source into one seed's imbalanced split.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from torch_balance._validation import Text, check_int, fail

__all__ = [
    "DATASET_NAMES",
    "DEBIAN_FASHION_MNIST",
    "Loader",
    "Source",
    "cache_dir",
    "load_source",
]

DATASET_NAMES = ("digits", "fashion-mnist[:DIR]", "cifar10[:DIR]", "imagefolder:PATH")
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DIGITS_TEST_PER_CLASS = 50

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
        """The number of classes."""
        return len(self.classes)


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


def load_source(spec: str, *, image_size: int = 32, progress: bool = True) -> Source:
    """Open the data named by ``spec`` (see :data:`DATASET_NAMES`); nothing is downloaded.

    Args:
        spec: ``"digits"``, ``"fashion-mnist[:DIR]"``, ``"cifar10[:DIR]"`` or
            ``"imagefolder:PATH"``.
        image_size: Side length images of an image folder are resized to.
        progress: Show a progress bar while decoding an image folder (only on a terminal).

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
            try:
                gunzip_idx(path, partial)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            os.replace(partial, out)
        else:
            out.symlink_to(path.resolve())
    return root


# The idx files' element types (the third byte of the magic number) and their sizes.
_IDX_ITEM = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}
#: The largest idx file decompressed (Fashion-MNIST's largest is 47 MB).
MAX_IDX_BYTES = 1 << 31
_CHUNK = 1 << 20


def gunzip_idx(path: Path, out: Path, *, limit: int = MAX_IDX_BYTES) -> int:
    """Decompress a gzipped idx file, no further than the size its header promises.

    The header (magic ``00 00 <type> <dims>`` and one big-endian 32-bit size per dimension)
    says how many bytes the file holds; a stream that runs past that, or stops short of it, or
    promises more than ``limit`` bytes, is refused before it fills the disk (a gzip bomb).

    Returns:
        The bytes written.

    Raises:
        ValueError: For a file that is not a gzipped idx file, is cut short, holds more than
            its header says, or promises more than ``limit`` bytes; the message names it.
    """

    def refuse(what: str) -> NoReturn:
        fail("DATA", "gzipped idx files (Fashion-MNIST's format)", Text(f"{str(path)!r}: {what}"))

    try:
        with gzip.open(path, "rb") as src, open(out, "wb") as dst:
            head = src.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_ITEM:
                refuse(f"a header {head!r} that is not an idx magic number")
            dims_raw = src.read(4 * head[3])
            if len(dims_raw) < 4 * head[3]:
                refuse("a header cut off")
            size = _IDX_ITEM[head[2]]
            for i in range(head[3]):
                size *= int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big")
            total = 4 + len(dims_raw) + size
            if total > limit:
                refuse(f"a header that promises {total:,} bytes (the limit is {limit:,})")
            dst.write(head + dims_raw)
            left = size
            while left > 0:
                piece = src.read(min(left, _CHUNK))
                if not piece:
                    refuse(f"{size - left:,} of the {size:,} data bytes its header promises")
                dst.write(piece)
                left -= len(piece)
            if src.read(1):
                refuse(f"more than the {total:,} bytes its header promises")
    except (OSError, EOFError, gzip.BadGzipFile) as error:  # not gzip, truncated, unreadable
        refuse(f"{type(error).__name__}: {error}")
    return total


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
    from torch_balance._progress import progress_bar

    def load(indices: np.ndarray) -> torch.Tensor:
        out = torch.empty((len(indices), 3, image_size, image_size), dtype=torch.uint8)
        shown = progress_bar(indices, desc=f"decoding {what}", enabled=progress, leave=False)
        for row, i in enumerate(shown):
            out[row] = dataset[int(i)][0]
        return out

    return load


def _image_folder(where: str, *, image_size: int, progress: bool) -> Source:
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    fix = "Images are held in memory at this size: 32 to 224 are usual"
    image_size = check_int("--image-size", image_size, minimum=4, maximum=2048, fix=fix)
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
