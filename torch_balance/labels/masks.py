"""Per-image class pixel counts of segmentation masks, read from the mask files alone, once.

:func:`class_pixel_counts` decodes every PNG label mask (palette ``'P'`` or greyscale ``'L'``
mode, one class id per pixel) with PIL, takes its 256-bin histogram and folds it into one row
of an ``(images, classes)`` ``int64`` array, pixels of ``ignore_index`` left out. The images
are never opened. The mask files come from torchvision's ``VOCSegmentation`` and
``Cityscapes`` (their file lists, read without loading a sample), from a :class:`MaskFolder`,
from any dataset with a ``masks`` list of paths, or from a list of paths. With ``cache=`` the
array is written to disk beside a fingerprint of the mask files and read back only while the
files are unchanged: a stale cache is refused, naming the first file that differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Subset
from tqdm.auto import tqdm

from torch_balance._validation import (
    Text,
    as_array,
    check_bool,
    check_int,
    fail,
)
from torch_balance.labels.mask_folder import MaskFolder

__all__ = [
    "MaskFolder",
    "class_pixel_counts",
    "count_mask",
    "mask_fingerprint",
    "mask_paths",
    "value_counts",
]

MODES = ("P", "L")  # one 8-bit class id per pixel
CACHE_VERSION = 1
FINGERPRINTS = ("stat", "content")


def _tv_semantic(dataset: Any, path: str) -> list[str]:
    """The mask files of torchvision's ``Cityscapes`` (``target_type`` with 'semantic')."""
    types = dataset.target_type
    types = [types] if isinstance(types, str) else list(types)
    if "semantic" not in types:
        fail(
            f"{path}.target_type",
            "a target_type that includes 'semantic'",
            types,
            "Build Cityscapes with target_type='semantic' to count its label masks",
        )
    column = types.index("semantic")
    return [str(entry[column]) for entry in dataset.targets]


def mask_paths(source: Any, path: str = "masks") -> list[str]:
    """The mask files of ``source``, in dataset order, without opening any of them.

    Args:
        source: A sequence of paths; torchvision's ``VOCSegmentation`` (``masks``) or
            ``Cityscapes`` (``targets``, ``target_type`` with ``'semantic'``), also inside
            its tv_tensors wrapper; a :class:`MaskFolder` or any dataset with a ``masks``
            list of paths; or a ``torch.utils.data.Subset`` of one of these.
        path: How to name ``source`` in error messages.

    Returns:
        The paths, as strings.

    Raises:
        TypeError: For a source that holds no list of mask files.

    Example:
        >>> mask_paths(["a.png", Path("b.png")])
        ['a.png', 'b.png']
    """
    if isinstance(source, (str, bytes, os.PathLike)):
        fail(
            path,
            "a list of mask paths or a segmentation dataset",
            source,
            "Wrap one path in a list, or use MaskFolder(root) for a folder of pairs",
            kind=TypeError,
        )
    if isinstance(source, Subset):
        inner = mask_paths(source.dataset, f"{path}.dataset")
        return [inner[int(i)] for i in source.indices]
    if type(source).__name__ == "VisionDatasetTVTensorWrapper" and hasattr(source, "_dataset"):
        return mask_paths(source._dataset, f"{path}._dataset")
    cityscapes = any(cls.__name__ == "Cityscapes" for cls in type(source).__mro__)
    if cityscapes and hasattr(source, "target_type"):
        found = _tv_semantic(source, path)
    elif hasattr(source, "masks"):
        found = list(source.masks)
    elif isinstance(source, Sequence) or (isinstance(source, np.ndarray) and source.ndim == 1):
        found = list(source)
    else:
        fail(
            path,
            "a list of mask paths, VOCSegmentation, Cityscapes, MaskFolder or a "
            "dataset with a 'masks' list",
            Text(f"a {type(source).__name__}"),
            "Pass the list of mask files in dataset order",
            kind=TypeError,
        )
    for i, item in enumerate(found):
        if not isinstance(item, (str, os.PathLike)):
            fail(f"{path}[{i}]", "a path (str or os.PathLike)", item, kind=TypeError)
    return [os.fspath(p) for p in found]


def _lookup(num_classes: int, ignore_index: int | None, id_map: Any) -> np.ndarray:
    """Pixel value (0-255) -> class id, or -1 for pixels left out; ids >= num_classes kept to
    be reported."""
    if id_map is None:
        table = np.arange(256, dtype=np.int64)
    else:
        if isinstance(id_map, dict):
            table = np.full(256, -1 if ignore_index is None else ignore_index, dtype=np.int64)
            items = list(id_map.items())
        else:
            values = as_array("id_map", id_map)
            if values.ndim != 1 or values.shape[0] > 256 or values.dtype.kind not in "iu":
                fail(
                    "id_map",
                    "a dict or a 1-D integer array of at most 256 entries "
                    "(pixel value -> class id)",
                    Text(f"an array of shape {values.shape}, dtype {values.dtype}"),
                    kind=TypeError,
                )
            table = np.full(256, -1 if ignore_index is None else ignore_index, dtype=np.int64)
            items = list(enumerate(values.tolist()))
        for key, value in items:
            check_int("id_map key", key, minimum=0, maximum=255)
            value = check_int(f"id_map[{key}]", value)
            if value != ignore_index and not 0 <= value < num_classes:
                fail(
                    f"id_map[{key}]",
                    f"a class id in [0, {num_classes}) or the ignore_index {ignore_index}",
                    value,
                )
            table[key] = value
    if ignore_index is not None:
        table[table == ignore_index] = -1
    return table


class _Scan(threading.local):
    """What counting masks needs, one per scan, its buffers one per thread: the fold of pixel
    values into classes, the decoded mask and the run flags, reused from mask to mask."""

    def __init__(self, num_classes: int, table: np.ndarray) -> None:
        self.num_classes = num_classes
        # value -> class id, num_classes for pixels left out, num_classes + 1 for bad ids
        self.fold = np.where(table < 0, num_classes, table).astype(np.intp)
        self.fold[table >= num_classes] = num_classes + 1
        self.pixels = np.empty(0, dtype=np.uint8)
        self.flags = np.empty(0, dtype=np.bool_)

    def buffer(self, size: int) -> np.ndarray:
        """This thread's ``uint8`` buffer of ``size`` pixels (grown, never shrunk)."""
        if self.pixels.shape[0] < size:
            self.pixels = np.empty(size, dtype=np.uint8)
            self.flags = np.empty(size // 8 + 1, dtype=np.bool_)
        return self.pixels[:size]


def _decode(image: Image.Image, scan: _Scan | None) -> np.ndarray:
    """Decode ``image`` (opened, not loaded) and return its pixels, one byte each, row-major.

    PIL decodes straight into the thread's buffer when it will (its image memory mapped on
    the buffer, as ``Image.frombuffer`` does): the same decode, without the copy out of PIL's
    memory that ``tobytes`` makes. Where PIL keeps its own memory instead (a file it maps
    itself, say), the pixels are copied out with ``tobytes``.
    """
    width, height = image.size
    if scan is not None and width * height > 0:
        pixels = scan.buffer(width * height)
        try:
            core = Image.core.map_buffer(pixels, image.size, "raw", 0, (image.mode, 0, 1))
        except (AttributeError, TypeError, ValueError):
            core = None
        if core is not None:
            image.im = core
            image.load()
            if image.im is core:
                return pixels
    image.load()
    return np.frombuffer(image.tobytes(), dtype=np.uint8)


def _runs(pixels: np.ndarray, flags: np.ndarray | None) -> np.ndarray | None:
    """:func:`value_counts` by runs of equal 64-bit words (float counts), or None where the
    runs are short (over one word in 4 starts one)."""
    whole = pixels.shape[0] - pixels.shape[0] % 8
    words = pixels[:whole].view(np.uint64)
    size = words.shape[0]
    if size == 0:
        return None
    if flags is None or flags.shape[0] <= size:
        flags = np.empty(size + 1, dtype=np.bool_)
    edges = flags[: size + 1]  # True where a run starts, and at the end
    edges[0] = edges[size] = True
    np.not_equal(words[1:], words[:-1], out=edges[1:size])
    bounds = edges.nonzero()[0]
    if bounds.shape[0] * 4 > size + 4:
        return None
    starts = bounds[:-1]
    counts = np.bincount(
        words[starts].view(np.uint8), weights=(bounds[1:] - starts).repeat(8), minlength=256
    )
    if whole < pixels.shape[0]:
        counts += np.bincount(pixels[whole:], minlength=256)  # the last size % 8 pixels
    return counts


def value_counts(
    pixels: np.ndarray, image: Image.Image | None = None, flags: np.ndarray | None = None
) -> np.ndarray:
    """How many of the 8-bit ``pixels`` hold each value 0-255 (``int64``).

    Label masks are piecewise constant, so the pixels are read 8 at a time (as 64-bit words)
    in runs of equal words: one vector compare finds where runs end, and each run adds its
    length to each of its word's 8 bytes, far less work than a pass per pixel. Where runs are
    short (over one word in 4 ends one), it is the plain histogram instead, PIL's when
    ``image`` is given: the reference the property test holds this equal to. ``flags`` is a
    ``bool`` buffer of more than ``len(pixels) // 8`` entries to reuse (else one is made).

    Example:
        >>> value_counts(np.array([3] * 17 + [0] * 3, dtype=np.uint8))[[0, 3]].tolist()
        [3, 17]
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8).reshape(-1)
    counts = _runs(pixels, flags)
    if counts is not None:
        return counts.astype(np.int64)
    if image is not None:
        return np.asarray(image.histogram(), dtype=np.int64)
    return np.bincount(pixels, minlength=256).astype(np.int64)


def count_mask(
    path: str, num_classes: int, table: np.ndarray, scan: _Scan | None = None
) -> np.ndarray:
    """One mask file's class pixel counts (``int64``, ``num_classes`` long).

    ``table`` maps each pixel value (0-255) to a class id, or -1 for a pixel left out;
    ``scan`` holds the buffers to reuse (made for this call when None).

    Raises:
        ValueError: Naming the file, for one that cannot be read, is not a ``'P'`` or ``'L'``
            image, or holds a class id ``>= num_classes``.

    Example:
        >>> import tempfile
        >>> file = os.path.join(tempfile.mkdtemp(), "m.png")
        >>> Image.fromarray(np.array([[0, 1], [1, 255]], dtype=np.uint8)).save(file)
        >>> count_mask(file, 2, np.r_[np.arange(255), -1]).tolist()
        [1, 2]
    """
    if scan is None:
        scan = _Scan(num_classes, table)
    try:
        with Image.open(path) as image:
            if image.mode not in MODES:
                fail(
                    f"mask file {path!r}",
                    "a label mask in PIL mode 'P' (palette) or 'L' "
                    "(greyscale), one class id per pixel",
                    Text(f"mode {image.mode!r}"),
                    "Save the class ids as 8-bit PNG: Image.fromarray(ids.astype('uint8'))",
                )
            pixels = _decode(image, scan)
            histogram = _runs(pixels, scan.flags)
            if histogram is None:
                histogram = np.asarray(image.histogram(), dtype=np.float64)
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        fail(
            f"mask file {path!r}",
            "a readable PNG label mask",
            Text(f"{type(error).__name__}: {error}"),
            "Replace or remove the file",
        )
    folded = np.bincount(scan.fold, weights=histogram, minlength=num_classes + 2)
    if folded[num_classes + 1]:
        values = np.flatnonzero((histogram > 0) & (table >= num_classes))
        fail(
            f"mask file {path!r}",
            f"class ids in [0, {num_classes}) or the ignore_index",
            Text(f"pixel value(s) {values[:5].tolist()} (class {int(table[values[0]])})"),
            "Pass the right num_classes, ignore_index, or an id_map for these values",
        )
    return folded[:num_classes].astype(np.int64)


def mask_fingerprint(paths: Sequence[str], how: str = "stat") -> list[str]:
    """What identifies each mask file: its size and modification time (``"stat"``, cheap) or
    a digest of its bytes (``"content"``, survives copies and touches).

    Example:
        >>> import tempfile
        >>> file = os.path.join(tempfile.mkdtemp(), "m.png")
        >>> _ = open(file, "wb").write(b"x")
        >>> mask_fingerprint([file], "content")
        ['1:...']
    """
    out = []
    for path in paths:
        try:
            if how == "content":
                digest = hashlib.blake2b(digest_size=12)
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                out.append(f"{os.path.getsize(path)}:{digest.hexdigest()}")
            else:
                stat = os.stat(path)
                out.append(f"{stat.st_size}:{stat.st_mtime_ns}")
        except OSError as error:
            fail(
                f"mask file {path!r}",
                "a readable file",
                Text(f"{type(error).__name__}: {error}"),
                "Replace or remove the file",
            )
    return out


def _settings(num_classes: int, ignore_index: int | None, table: np.ndarray, how: str) -> dict:
    return {
        "version": CACHE_VERSION,
        "num_classes": num_classes,
        "ignore_index": ignore_index,
        "id_map": hashlib.blake2b(table.tobytes(), digest_size=8).hexdigest(),
        "fingerprint": how,
    }


def _read_cache(cache: Path, paths: list[str], stamps: list[str], settings: dict) -> np.ndarray:
    try:
        with np.load(cache, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            counts = np.asarray(data["counts"], dtype=np.int64)
    except (OSError, ValueError, KeyError) as error:
        fail(
            "cache",
            "a cache file written by class_pixel_counts",
            Text(f"{cache} ({type(error).__name__}: {error})"),
            "Delete it or pass refresh=True",
        )
    fix = f"Delete {cache} or pass refresh=True to count the masks again"
    for key, value in settings.items():
        if meta.get(key) != value:
            fail(
                "cache",
                f"counts for {key}={value!r}",
                Text(f"a cache written with {key}={meta.get(key)!r} ({cache})"),
                fix,
            )
    saved_paths, saved_stamps = meta["paths"], meta["stamps"]
    if saved_paths != paths:
        gone = [p for p in saved_paths if p not in set(paths)]
        new = [p for p in paths if p not in set(saved_paths)]
        what = (
            f"{len(new)} file(s) not in it, the first {new[0]!r}"
            if new
            else f"{len(gone)} file(s) no longer listed, the first {gone[0]!r}"
            if gone
            else "the same files in another order"
        )
        fail(
            "cache",
            f"counts for these {len(paths)} mask files",
            Text(f"a stale cache ({cache}): {what}"),
            fix,
        )
    changed = [i for i, (a, b) in enumerate(zip(saved_stamps, stamps, strict=True)) if a != b]
    if changed:
        first = paths[changed[0]]
        fail(
            "cache",
            "counts for the mask files as they are now",
            Text(
                f"a stale cache ({cache}): {len(changed)} file(s) changed since it was written "
                f"(size or modification time), the first {first!r}"
            ),
            fix,
        )
    if counts.shape != (len(paths), settings["num_classes"]):
        fail(
            "cache",
            f"counts of shape {(len(paths), settings['num_classes'])}",
            Text(f"shape {counts.shape} in {cache}"),
            fix,
        )
    return counts


def _write_cache(
    cache: Path, counts: np.ndarray, paths: list[str], stamps: list[str], settings: dict
) -> None:
    meta = json.dumps({**settings, "paths": paths, "stamps": stamps})
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    with open(partial, "wb") as handle:  # a file object: np.savez adds no suffix to it
        np.savez(handle, counts=counts, meta=np.array(meta))
    os.replace(partial, cache)  # atomic: ranks writing at once leave one whole file


def class_pixel_counts(
    source: Any,
    num_classes: int,
    *,
    ignore_index: int | None = 255,
    id_map: Any = None,
    cache: str | os.PathLike[str] | None = None,
    refresh: bool = False,
    fingerprint: str = "stat",
    num_threads: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Pixels of each class in each mask: an ``(images, num_classes)`` ``int64`` array.

    Each mask file is decoded once with PIL (a thread pool over the files; PIL's PNG decoder
    runs outside the GIL), straight into a buffer each thread reuses, and reduced to its
    histogram by runs (see :func:`value_counts`); the images are never opened. The counts are
    those of the files as stored, before any transform.

    Args:
        source: The masks: a list of paths, ``VOCSegmentation``, ``Cityscapes`` (with
            ``target_type`` including ``'semantic'``), a :class:`MaskFolder`, a dataset with a
            ``masks`` list, or a ``Subset`` of one (see :func:`mask_paths`).
        num_classes: Number of classes; every pixel value must be a class id below it, the
            ``ignore_index``, or mapped by ``id_map``.
        ignore_index: Pixel value left out of the counts (255, the VOC and mmseg convention);
            None to count every value.
        id_map: Pixel value -> class id, a dict or an array indexed by value (Cityscapes'
            ``labelIds`` to its 19 ``trainIds``, for instance); values it leaves out, and
            those it maps to ``ignore_index``, are ignored.
        cache: A file (``.npz``) to keep the counts in: written on the first call, read on
            later ones while the fingerprint of the mask files still matches; refused,
            naming the first file that differs, when it does not.
        refresh: Count again and overwrite ``cache``.
        fingerprint: ``"stat"`` (size and modification time of every file) or
            ``"content"`` (a digest of every file's bytes).
        num_threads: Threads that decode masks; default ``min(8, os.cpu_count())``.
        progress: Show a progress bar (only where stderr is a terminal).

    Returns:
        The counts, one row per mask in dataset order.

    Raises:
        TypeError: For a source without mask files or arguments of the wrong type.
        ValueError: Naming the file, for a mask that cannot be read, is not in mode ``'P'``
            or ``'L'``, or holds a class id ``>= num_classes``; and for a stale cache.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> ids = np.array([[0, 0, 1], [2, 255, 1]], dtype=np.uint8)
        >>> Image.fromarray(ids).save(folder / "a.png")
        >>> Image.fromarray(np.zeros((2, 3), dtype=np.uint8)).save(folder / "b.png")
        >>> class_pixel_counts([folder / "a.png", folder / "b.png"], 3, progress=False)
        array([[2, 2, 1],
               [6, 0, 0]])
    """
    num_classes = int(check_int("num_classes", num_classes, minimum=1, maximum=256))
    if ignore_index is not None:
        ignore_index = int(check_int("ignore_index", ignore_index, minimum=0, maximum=255))
    check_bool("refresh", refresh)
    check_bool("progress", progress)
    if fingerprint not in FINGERPRINTS:
        fail("fingerprint", "'stat' or 'content'", fingerprint)
    threads = check_int("num_threads", num_threads, minimum=1, allow_none=True)
    threads = min(8, os.cpu_count() or 1) if threads is None else threads
    paths = mask_paths(source, "source")
    if not paths:
        fail("source", "at least one mask", Text("no mask paths"))
    table = _lookup(num_classes, ignore_index, id_map)
    settings = _settings(num_classes, ignore_index, table, fingerprint)
    stamps: list[str] = []
    if cache is not None and not isinstance(cache, (str, os.PathLike)):
        fail("cache", "a file path (str or os.PathLike) or None", cache, kind=TypeError)
    cache_path = None if cache is None else Path(cache)
    if cache_path is not None:
        stamps = mask_fingerprint(paths, fingerprint)
        if cache_path.exists() and not refresh:
            return _read_cache(cache_path, paths, stamps, settings)
    counts = np.zeros((len(paths), num_classes), dtype=np.int64)
    scan = _Scan(num_classes, table)
    with tqdm(
        total=len(paths), desc="class_pixel_counts", unit="mask", disable=None if progress else True
    ) as bar:
        if threads == 1 or len(paths) < 2:
            for i, path in enumerate(paths):
                counts[i] = count_mask(path, num_classes, table, scan)
                bar.update(1)
        else:
            with ThreadPoolExecutor(threads, thread_name_prefix="torch_balance-masks") as pool:
                rows = pool.map(
                    lambda path: count_mask(path, num_classes, table, scan), paths, chunksize=1
                )
                for i, row in enumerate(rows):
                    counts[i] = row
                    bar.update(1)
    if cache_path is not None:
        _write_cache(cache_path, counts, paths, stamps, settings)
    return counts
