"""The chosen class reaches the crop: :class:`RareClassCrop` and :class:`RareClassDataset`.

:class:`~torch_balance.rare_class.RareClassSampler` yields
:class:`~torch_balance.rare_class.ClassIndex` picks: ``int`` image indices that carry the
class drawn for them and pickle with it, so they reach DataLoader worker processes through
the plain ``DataLoader(dataset, sampler=sampler)``.
:class:`RareClassDataset` reads ``dataset[int(pick)]`` and hands the image, the mask and the
pick to :class:`RareClassCrop`, which draws crop windows until one holds ``min_pixels`` of the
class (``max_tries`` at most).

The crop follows DAFormer's retry (``mmseg/datasets/uda_dataset.py``: up to 10 random crops
until one holds enough pixels of the class), with two differences: it re-crops the sample
already loaded instead of loading it again, and when no try holds enough, it keeps the one
that held the most or a window around a random pixel of the class, whichever holds more.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from torch_balance._rng import Stream, generator
from torch_balance._validation import (
    Text,
    check_callable,
    check_index,
    check_int,
    check_map_style,
    check_seed,
    fail,
    tensor_values,
)

__all__ = ["RareClassCrop", "RareClassDataset"]


MAX_TRIES = 10_000


def _mask_array(mask: Any) -> np.ndarray:
    if isinstance(mask, Image.Image):
        array = np.asarray(mask)
    elif isinstance(mask, torch.Tensor):
        array = tensor_values("mask", mask)
    elif isinstance(mask, np.ndarray):
        array = mask
    else:
        fail(
            "mask",
            "a PIL image, a tensor or a numpy array",
            Text(f"a {type(mask).__name__}"),
            kind=TypeError,
        )
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:2])
    if array.ndim != 2:
        fail("mask", "one class id per pixel (H, W)", Text(f"shape {array.shape}"))
    if array.dtype.kind == "f" and bool(np.isfinite(array).all() and (array % 1 == 0).all()):
        pass  # whole-number ids stored as floats
    elif array.dtype.kind not in "iub":
        fail(
            "mask",
            "whole-number class ids",
            Text(f"a mask of dtype {array.dtype} holding other values"),
            "A mask through ToTensor() is scaled to [0, 1]: convert it with "
            "torch.as_tensor(np.array(mask)) or PILToTensor() instead",
            kind=TypeError,
        )
    if array.size == 0:
        fail("mask", "at least one pixel", Text(f"shape {array.shape}"))
    return array


def _spatial(image: Any) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.height, image.width
    if isinstance(image, torch.Tensor):
        return int(image.shape[-2]), int(image.shape[-1])
    if isinstance(image, np.ndarray):
        return int(image.shape[0]), int(image.shape[1])
    fail(
        "image",
        "a PIL image, a tensor or a numpy array",
        Text(f"a {type(image).__name__}"),
        kind=TypeError,
    )


def _cut(x: Any, top: int, left: int, height: int, width: int) -> Any:
    if isinstance(x, Image.Image):
        return x.crop((left, top, left + width, top + height))
    if isinstance(x, torch.Tensor):
        return x[..., top : top + height, left : left + width]
    return x[top : top + height, left : left + width]


def _held(table: np.ndarray, top: int, left: int, height: int, width: int) -> int:
    """Class pixels in a window, from the summed-area table."""
    bottom, right = top + height, left + width
    return int(table[bottom, right] - table[top, right] - table[bottom, left] + table[top, left])


def _uniform(high: int, g: torch.Generator) -> int:
    """An integer in ``[0, high]``."""
    return int(torch.randint(high + 1, (1,), generator=g).item())


class RareClassCrop:
    """A random crop that looks for the class the sampler chose.

    Called as ``crop(image, mask, pick)``: ``pick`` is the index the sampler yielded. For a
    :class:`~torch_balance.rare_class.ClassIndex`, up to ``max_tries`` uniform windows are
    drawn until one holds at least ``min_pixels`` pixels of ``pick.class_id``; if none does,
    it keeps the one that held the most or a window around a random pixel of the class,
    whichever holds more. The windows are drawn from a generator seeded by (``seed``, the
    pick's epoch, its position in the epoch): the same crop in every run and with any number
    of workers. For a plain ``int`` index (no class) it makes one uniform crop seeded by
    (``seed``, the index): the same window every epoch.

    The image and the mask are PIL images, tensors (``(..., H, W)``) or numpy arrays
    (``(H, W, ...)``), each cut the way its type is; their sizes must agree. A side shorter
    than ``size`` is kept whole (no padding).

    Args:
        size: Crop height and width, an int or ``(height, width)``.
        max_tries: Uniform windows to try before falling back (DAFormer: 10; at most 10,000).
        min_pixels: Pixels of the class a window must hold to be taken at once (DAFormer:
            ``min_pixels * min_crop_ratio`` of its sampler, 3000 * 0.5).
        seed: Seeds the windows.

    Example:
        >>> from torch_balance.rare_class import ClassIndex
        >>> mask = np.zeros((8, 8), dtype=np.uint8)
        >>> mask[6:, 6:] = 4  # class 4 only in the bottom-right corner
        >>> crop = RareClassCrop(3, max_tries=2, seed=0)
        >>> image, cut = crop(np.ones((8, 8, 3)), mask, ClassIndex(0, class_id=4))
        >>> image.shape, bool((cut == 4).any())
        ((3, 3, 3), True)
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        *,
        max_tries: int = 10,
        min_pixels: int = 1,
        seed: int = 0,
    ) -> None:
        sides = (size, size) if not isinstance(size, (tuple, list)) else tuple(size)
        if len(sides) != 2:
            fail("size", "an int or (height, width)", size)
        self.size = tuple(int(check_int("size", s, minimum=1)) for s in sides)
        fix = "Each try is a window drawn in Python: DAFormer tries 10"
        self.max_tries = int(
            check_int("max_tries", max_tries, minimum=1, maximum=MAX_TRIES, fix=fix)
        )
        self.min_pixels = int(check_int("min_pixels", min_pixels, minimum=1))
        self.seed = check_seed(seed)

    def generator_for(self, pick: Any) -> torch.Generator:
        """The generator of ``pick``'s windows."""
        epoch, position = getattr(pick, "epoch", None), getattr(pick, "position", None)
        if getattr(pick, "class_id", None) is not None and epoch is not None:
            return generator(self.seed, Stream.RARE_CROP, epoch, position or 0)
        index = check_int("pick", pick, minimum=0)  # a plain index: one window per index
        return generator(self.seed, Stream.RARE_CROP_INDEX, int(index))

    def window(
        self, mask: Any, class_id: int | None, g: torch.Generator
    ) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of a crop of ``mask`` for ``class_id`` (None: one
        uniform window), drawn from ``g``."""
        array = _mask_array(mask)
        rows, cols = array.shape
        height, width = min(self.size[0], rows), min(self.size[1], cols)
        if class_id is None:
            return _uniform(rows - height, g), _uniform(cols - width, g), height, width
        hit = array == class_id
        # summed-area table: the class pixels of any window in four lookups
        table = np.zeros((rows + 1, cols + 1), dtype=np.int64)
        np.cumsum(np.cumsum(hit, axis=0, dtype=np.int64), axis=1, out=table[1:, 1:])
        best = (-1, 0, 0)
        # no window holds more than this: once one does, later tries cannot do better (and
        # an absent class, or a huge max_tries, would spin through them all)
        most = min(int(table[rows, cols]), height * width)
        for _ in range(self.max_tries):
            top, left = _uniform(rows - height, g), _uniform(cols - width, g)
            held = _held(table, top, left, height, width)
            if held >= self.min_pixels:
                return top, left, height, width
            if held > best[0]:
                best = (held, top, left)
            if held >= most:
                break
        if table[rows, cols] > best[0]:  # the class holds more: try a window around one pixel
            ys, xs = np.nonzero(hit)
            k = _uniform(ys.shape[0] - 1, g)
            y, x = int(ys[k]), int(xs[k])
            low_top, low_left = max(0, y - height + 1), max(0, x - width + 1)
            top = low_top + _uniform(min(y, rows - height) - low_top, g)
            left = low_left + _uniform(min(x, cols - width) - low_left, g)
            held = _held(table, top, left, height, width)
            if held > best[0]:
                best = (held, top, left)
        return best[1], best[2], height, width

    def __call__(self, image: Any, mask: Any, pick: Any) -> tuple[Any, Any]:
        """``(image, mask)`` cut to the window chosen for ``pick``."""
        array = _mask_array(mask)
        if _spatial(image) != array.shape:
            fail("image", f"the size of its mask {array.shape}", Text(f"size {_spatial(image)}"))
        class_id = getattr(pick, "class_id", None)
        top, left, height, width = self.window(array, class_id, self.generator_for(pick))
        return _cut(image, top, left, height, width), _cut(mask, top, left, height, width)

    def __repr__(self) -> str:
        return (
            f"RareClassCrop(size={self.size}, max_tries={self.max_tries}, "
            f"min_pixels={self.min_pixels}, seed={self.seed})"
        )


def _takes_three(fn: Any) -> bool:
    """Whether ``fn`` can be called with three positional arguments (True where its
    signature cannot be read)."""
    try:
        inspect.signature(fn).bind(None, None, None)
    except TypeError:
        return False
    except ValueError:
        return True
    return True


class RareClassDataset(Dataset):
    """``dataset`` with a crop that knows the class each index was drawn for.

    Item ``pick`` is ``crop(image, mask, pick)`` of ``(image, mask) = dataset[int(pick)]``,
    passed through ``transforms(image, mask)`` when given. Use it with
    ``DataLoader(RareClassDataset(dataset, crop), sampler=RareClassSampler(...))``: the
    sampler's :class:`~torch_balance.rare_class.ClassIndex` picks carry the class into the
    worker processes. A plain ``int`` index (a validation loop) gets a uniform crop.

    Args:
        dataset: A map-style dataset of ``(image, mask)`` pairs, such as
            :class:`~torch_balance.labels.masks.MaskFolder` or ``VOCSegmentation``.
        crop: ``crop(image, mask, pick) -> (image, mask)``, usually a :class:`RareClassCrop`.
        transforms: ``transforms(image, mask) -> sample``, after the crop.

    Example:
        >>> from torch_balance.rare_class import ClassIndex
        >>> pairs = [(np.zeros((4, 4)), np.eye(4, dtype=np.uint8))]
        >>> data = RareClassDataset(pairs, RareClassCrop(2, seed=1))
        >>> image, mask = data[ClassIndex(0, class_id=1)]
        >>> mask.shape, bool((mask == 1).any())
        ((2, 2), True)
    """

    def __init__(self, dataset: Any, crop: Any, transforms: Any = None) -> None:
        check_map_style("dataset", dataset)
        try:
            len(dataset)
        except TypeError:  # a 0-d array or tensor
            fail("dataset", "a dataset of (image, mask) pairs", dataset, kind=TypeError)
        if isinstance(dataset, (str, bytes)):
            fail("dataset", "a dataset of (image, mask) pairs", dataset, kind=TypeError)
        if not callable(crop) or not _takes_three(crop):
            fail("crop", "a callable crop(image, mask, pick)", crop, kind=TypeError)
        if transforms is not None:
            check_callable("transforms", transforms, 2, "transforms(image, mask)")
        self.dataset = dataset
        self.crop = crop
        self.transforms = transforms

    def __len__(self) -> int:
        """The wrapped dataset's length."""
        return len(self.dataset)

    def __getitem__(self, pick: Any) -> Any:
        """Sample ``pick`` as ``crop(image, mask, pick)`` gives it (then ``transforms``): the
        crop reads the class a :class:`ClassIndex` carries."""
        sample = self.dataset[check_index(pick, len(self.dataset))]
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            fail(
                f"dataset[{int(pick)}]",
                "an (image, mask) pair",
                Text(f"a {type(sample).__name__}"),
                "Wrap a dataset that returns the image and its mask, or pass "
                "MaskFolder(root) for a folder of pairs",
                kind=TypeError,
            )
        image, mask = self.crop(sample[0], sample[1], pick)
        if self.transforms is not None:
            return self.transforms(image, mask)
        return image, mask
