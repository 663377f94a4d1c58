"""Rare-class sampling for semantic segmentation (DAFormer's RCS, Hoyer et al., CVPR 2022, §3.3).

Data flows one way: masks -> per-image class pixel counts
(:func:`~torch_balance.labels.masks.class_pixel_counts`) -> class probabilities
(:func:`rare_class_probabilities`) -> draws (:mod:`torch_balance.draws.rare_class`) -> shard
-> :class:`ClassIndex` picks. Each pick is an image index that carries the class it was drawn
for; :class:`~torch_balance.rare_class_crop.RareClassDataset` hands that class to a
:class:`~torch_balance.rare_class_crop.RareClassCrop`, which looks for a crop that holds it.

Where this differs from DAFormer (``mmseg/datasets/uda_dataset.py``):

* an image qualifies for a class with ``>= min_pixels`` pixels of it (DAFormer: ``>``);
* a class without any qualifying image is left out of the distribution (DAFormer stops with
  an assertion), and the probabilities of the others are renormalised;
* an epoch is a pure function of (seed, epoch) with a fixed length, sharded over ranks like
  every other sampler here (DAFormer draws inside ``__getitem__`` from numpy's global RNG).
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from torch_balance._epoch import Pass, SamplerShell
from torch_balance._rng import Stream, generator
from torch_balance._validation import Text, check_epoch_size, check_int, fail, tensor_values
from torch_balance.draws.rare_class import class_members, rare_class_draws
from torch_balance.sharding import iter_shard

__all__ = [
    "ClassIndex",
    "RareClassSampler",
    "check_pixel_counts",
    "rare_class_probabilities",
]

EPOCH_BYTES = 64  # an epoch's draws: classes, uniforms, offsets, images, positions (8 bytes each)


class ClassIndex(int):
    """An image index that carries the class it was drawn for.

    It is an ``int`` (a dataset, a ``Subset`` or a DataLoader treat it as the plain index),
    with three attributes that survive pickling, and so the trip to DataLoader worker
    processes: ``class_id`` (the class chosen), ``epoch`` and ``position`` (where in the
    global epoch it was drawn, which seeds the crop). Equality and hashing are those of the
    index alone.

    Example:
        >>> import pickle
        >>> pick = pickle.loads(pickle.dumps(ClassIndex(7, class_id=3, epoch=1, position=12)))
        >>> pick, pick + 1, pick.class_id, [10, 11, 12, 13, 14, 15, 16, 17][pick]
        (ClassIndex(7, class_id=3), 8, 3, 17)
    """

    class_id: int
    epoch: int
    position: int

    def __new__(cls, index: int, class_id: int, epoch: int = 0, position: int = 0) -> ClassIndex:
        pick = super().__new__(cls, index)
        pick.class_id = class_id
        pick.epoch = epoch
        pick.position = position
        return pick

    def __reduce__(self) -> tuple[Any, ...]:
        return ClassIndex, (int(self), self.class_id, self.epoch, self.position)

    def __repr__(self) -> str:
        return f"ClassIndex({int(self)}, class_id={self.class_id})"


def check_pixel_counts(counts: Any, name: str = "pixel_counts") -> np.ndarray:
    """An ``(images, classes)`` array of non-negative integer pixel counts, as ``int64``.

    Example:
        >>> check_pixel_counts([[3, 0], [1, 2]]).dtype
        dtype('int64')
    """
    if isinstance(counts, torch.Tensor):
        counts = tensor_values(name, counts)
    if not isinstance(counts, (np.ndarray, list, tuple)):
        fail(
            name,
            "an (images, classes) array of pixel counts",
            Text(f"a {type(counts).__name__}"),
            "Count the masks first: class_pixel_counts(dataset, num_classes)",
            kind=TypeError,
        )
    try:
        array = np.asarray(counts)
    except ValueError:  # ragged rows
        fail(name, "a 2-D (images, classes) array with one row per image", Text("ragged rows"))
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        fail(
            name,
            "a 2-D (images, classes) array with at least one of each",
            Text(f"shape {array.shape}"),
        )
    if array.dtype.kind not in "iu":
        fail(name, "integer pixel counts", Text(f"dtype {array.dtype}"), kind=TypeError)
    if array.dtype.kind == "u" and array.itemsize == 8 and int(array.max()) >= 2**63:
        fail(name, "pixel counts below 2**63", Text(f"{int(array.max())}"))
    if (array < 0).any():
        fail(name, "pixel counts >= 0", Text(f"{int(array.min())} at {np.argwhere(array < 0)[0]}"))
    return array.astype(np.int64, copy=False)


def _check_temperature(temperature: Any) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        fail("temperature", "a positive number such as 0.01", temperature, kind=TypeError)
    value = float(temperature)
    if not math.isfinite(value) or value <= 0:
        fail(
            "temperature",
            "a positive finite number (DAFormer uses 0.01)",
            temperature,
            "Smaller values favour rare classes more; large ones approach uniform over classes",
        )
    return value


def _check_min_pixels(min_pixels: Any) -> int:
    return int(
        check_int(
            "min_pixels",
            min_pixels,
            minimum=1,
            fix="An image counts for a class when it holds at least this many of its pixels",
        )
    )


def _frequencies(counts: np.ndarray) -> np.ndarray:
    """``f_c``: each class's share of the counted pixels."""
    total = counts.sum(dtype=np.float64)
    if total == 0:
        fail("pixel_counts", "at least one counted pixel", Text("only zeros"))
    return counts.sum(axis=0, dtype=np.float64) / total


def _probabilities(counts: np.ndarray, temperature: float, min_pixels: int) -> np.ndarray:
    frequencies = _frequencies(counts)
    eligible = (counts >= min_pixels).any(axis=0)
    if not eligible.any():
        fail(
            "min_pixels",
            f"at most {int(counts.max())}, the most pixels any image holds of one class",
            min_pixels,
            "No class has an image with that many pixels of it; lower min_pixels",
        )
    # exp((1 - f_c) / T) over its largest value, written without the large (1 - f_c) / T,
    # which overflows for a tiny T
    drawn = frequencies[eligible]
    weights = np.exp((drawn.min() - drawn) / temperature)
    probabilities = np.zeros(counts.shape[1], dtype=np.float64)
    probabilities[eligible] = weights / weights.sum()
    return probabilities


def rare_class_probabilities(
    pixel_counts: Any, temperature: float = 0.01, min_pixels: int = 3000
) -> np.ndarray:
    """DAFormer's class probabilities: ``P(c) ∝ exp((1 - f_c) / T)``.

    ``f_c`` is class ``c``'s share of all counted pixels. Classes without an image holding at
    least ``min_pixels`` of their pixels get probability 0; the others share 1.

    Args:
        pixel_counts: ``(images, classes)`` pixel counts (see
            :func:`~torch_balance.labels.masks.class_pixel_counts`).
        temperature: ``T``; DAFormer's default 0.01 strongly favours rare classes.
        min_pixels: Pixels an image needs of a class to be drawn for it (DAFormer: 3000).

    Returns:
        ``float64`` probabilities, one per class, summing to 1.

    Raises:
        ValueError: For bad counts or arguments, or when no class has a qualifying image.

    Example:
        >>> counts = [[90, 10], [100, 0]]
        >>> rare_class_probabilities(counts, temperature=1.0, min_pixels=5).round(4)
        array([0.2891, 0.7109])
        >>> rare_class_probabilities(counts, min_pixels=50).tolist()
        [1.0, 0.0]
    """
    return _probabilities(
        check_pixel_counts(pixel_counts),
        _check_temperature(temperature),
        _check_min_pixels(min_pixels),
    )


class RareClassSampler(SamplerShell):
    """Pick a class by ``P(c) ∝ exp((1 - f_c) / T)``, then uniformly an image with at least
    ``min_pixels`` of it: DAFormer's rare class sampling, as a resumable, sharded sampler.

    Every pick is a :class:`ClassIndex`: an ``int`` (the image index) that carries the chosen
    class, so ``DataLoader(dataset, sampler=...)`` works as with any sampler, and a
    :class:`~torch_balance.rare_class_crop.RareClassDataset` (worker processes included)
    passes the class to its crop. Picks are i.i.d. (with replacement); an epoch holds
    ``num_samples`` of them, the same on every rank, sharded with ``DistributedSampler``'s
    padding and ``drop_last`` rules. ``class_id`` is a column of ``pixel_counts``.

    Args:
        pixel_counts: ``(images, classes)`` integer pixel counts, from
            :func:`~torch_balance.labels.masks.class_pixel_counts`.
        temperature: ``T`` (DAFormer: 0.01); larger is closer to uniform over classes.
        min_pixels: Pixels of a class an image needs to be drawn for it (DAFormer: 3000, for
            GTA's 1914x1052 masks; scale it with your mask size).
        num_samples: Picks per global epoch; default the number of images.
        seed: Shared seed; must be the same on every rank.
        num_replicas: Number of ranks; default from ``torch.distributed`` when each epoch
            starts (1 without a process group).
        rank: This rank; default likewise.
        process_group: The data-parallel group (a ``ProcessGroup`` or a 1-D ``DeviceMesh``)
            whose ranks share the epoch; default the default group.
        drop_last: Drop the tail of the epoch so that it divides evenly among ranks, instead
            of padding it.

    Attributes:
        pixel_counts: The counts, ``int64``.
        frequencies: ``f_c``, each class's share of the counted pixels.
        class_probabilities: ``P(c)``, 0 for classes left out.
        images_per_class: How many images qualify for each class.
        num_samples: This rank's picks per epoch (``DistributedSampler``'s meaning); the
            global epoch's length is ``global_length``.

    Raises:
        TypeError: For arguments of the wrong type (a dataset instead of counts, too).
        ValueError: For invalid values, with the fix in the message.

    Example:
        >>> counts = [[900, 100, 0], [1000, 0, 0], [950, 0, 50], [1000, 0, 0]]
        >>> sampler = RareClassSampler(counts, min_pixels=50, seed=3)
        >>> sampler.class_probabilities.round(3).tolist()
        [0.0, 0.223, 0.777]
        >>> picks = list(sampler)
        >>> [(int(p), p.class_id) for p in picks]
        [(2, 2), (2, 2), (0, 1), (2, 2)]
    """

    def __init__(
        self,
        pixel_counts: Any,
        *,
        temperature: float = 0.01,
        min_pixels: int = 3000,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        process_group: Any = None,
        drop_last: bool = False,
    ) -> None:
        self._open(seed, num_replicas, rank, drop_last, process_group)
        counts = check_pixel_counts(pixel_counts)
        self.temperature = _check_temperature(temperature)
        self.min_pixels = _check_min_pixels(min_pixels)
        length = check_int("num_samples", num_samples, minimum=1, allow_none=True)
        picks = counts.shape[0] if length is None else int(length)
        check_epoch_size("num_samples", picks, EPOCH_BYTES, "Use a smaller num_samples")
        self.pixel_counts = counts
        self.frequencies = _frequencies(counts)
        self.class_probabilities = _probabilities(counts, self.temperature, self.min_pixels)
        eligible = counts >= self.min_pixels
        self.images_per_class = eligible.sum(axis=0).astype(np.int64)
        self._offsets, self._members = class_members(eligible)
        self._probabilities = torch.from_numpy(self.class_probabilities)
        digest = hashlib.blake2b(digest_size=12)
        digest.update(repr(counts.shape).encode())
        digest.update(np.ascontiguousarray(counts).tobytes())
        self._counts_digest = digest.hexdigest()
        self._global_length = picks
        self._ready()

    def epoch_picks(self, epoch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, classes)`` of the global epoch (before sharding), in iteration order.

        Args:
            epoch: Which epoch; default the epoch of the next pass.
        """
        epoch = self._epoch_arg(epoch)
        g = generator(self.seed, Stream.RARE_CLASS, epoch)
        return rare_class_draws(
            self._probabilities, self._offsets, self._members, self._global_length, g
        )

    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor:
        """The images of the global epoch (before sharding), in iteration order."""
        return self.epoch_picks(epoch)[0]

    def class_counts(self, epoch: int | None = None) -> dict[int, int]:
        """How many picks of the global epoch chose each class (every class, 0 included)."""
        classes = self.epoch_picks(epoch)[1].numpy()
        counts = np.bincount(classes, minlength=self.pixel_counts.shape[1])
        return {c: int(n) for c, n in enumerate(counts.tolist())}

    def _chunks(self, current: Pass, world: int, rank: int) -> Iterator[list[Any]]:
        images, classes = self.epoch_picks(current.epoch)
        positions = torch.arange(self._global_length, dtype=torch.int64)
        chunks = iter_shard(positions, positions, world, rank, self.drop_last, current.start)
        return _picks(chunks, images.numpy(), classes.numpy(), current.epoch)

    def _num_indices(self) -> int:
        return int(self.pixel_counts.shape[0])

    def _fingerprint(self) -> str:
        return self._counts_digest

    def _own_settings(self, epoch: int) -> dict[str, Any]:
        return {"temperature": self.temperature, "min_pixels": self.min_pixels}

    def extra_repr(self) -> str:
        drawn = int((self.class_probabilities > 0).sum())
        return (
            f"temperature={self.temperature}, min_pixels={self.min_pixels}, "
            f"global_length={self._global_length}, images={self.pixel_counts.shape[0]}, "
            f"classes={drawn}/{self.pixel_counts.shape[1]}"
        )


def _picks(
    chunks: Iterator[list[int]], images: np.ndarray, classes: np.ndarray, epoch: int
) -> Iterator[list[Any]]:
    """Positions of the global epoch -> lists of :class:`ClassIndex`."""
    for chunk in chunks:
        where = np.asarray(chunk, dtype=np.int64)
        yield [
            ClassIndex(i, c, epoch, p)
            for i, c, p in zip(images[where].tolist(), classes[where].tolist(), chunk, strict=True)
        ]
