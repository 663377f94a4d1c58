"""The binary manifest: every label of a collection as a class code packed in a few bits,
read by memory-mapping, so that opening a manifest of a billion samples costs neither time
nor memory and every DataLoader worker of a machine shares the same pages.

Layout (version 2, little-endian): an 8-byte magic ``TBMANIF1`` and 56 reserved bytes; the
class codes of every shard in manifest order, each ``max(1, ceil(log2(classes)))`` bits
(10 bits for 1,000 classes, 16 for 65,536), packed as :mod:`~torch_balance.streams.packing`
packs them, each shard's codes beginning on a byte so that a shard is unpacked alone; the
shard offsets (``int64``, ``S + 1``); the per-class prefix counts at every ``stride``-th
shard boundary after the first (see :func:`class_checkpoints`; the last one each class's
count), each row ``C`` counts of as many bits as the largest class's count needs (17 for a
class of 100,000 samples), beginning on a byte; a UTF-8
JSON header (version, widths, sizes, classes (their count where they are ``0 .. C - 1``),
shard names, stride, fingerprint and where each array begins); the header's length
(``uint64``) and the magic again. The rows take about a 512th of the codes at most
(:func:`checkpoint_stride`). A reader checks the magics, the widths against the class and
sample counts, the sizes against the file's length, the offsets and the last row; the codes
are checked where they are read (a reader's own shards).

Version 1 files (codes as ``uint8``, ``uint16`` or ``uint32``; rows of ``int64`` from the
first boundary on) are still read: they are the same layout at widths of 8, 16 or 32 and 64
bits.

:class:`ManifestWriter` writes one shard at a time (the codes of the whole collection never
need to be in memory); :func:`read_manifest_file` maps one.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable
from typing import IO, Any, NoReturn

import numpy as np

from torch_balance._validation import Text, fail
from torch_balance.streams.packing import Packed, bits_for

__all__ = [
    "MAGIC",
    "ManifestWriter",
    "PrefixRows",
    "checkpoint_stride",
    "class_checkpoints",
    "code_dtype",
    "count_codes",
    "is_manifest_file",
    "read_manifest_file",
]

MAGIC = b"TBMANIF1"
_HEAD = 64  # the magic and reserved bytes before the codes
_VERSION = 2
_DTYPES = ("uint8", "uint16", "uint32")  # version 1's codes
_CHUNK = 1 << 20  # codes unpacked and counted at once


def code_dtype(num_classes: int) -> np.dtype[Any]:
    """The smallest unsigned integer type that holds a class code: uint8 up to 256 classes,
    uint16 up to 65,536, else uint32 (codes in memory, and the fingerprint's bytes).

    Example:
        >>> code_dtype(20), code_dtype(1000), code_dtype(70_000)
        (dtype('uint8'), dtype('uint16'), dtype('uint32'))
    """
    for dtype in (np.uint8, np.uint16, np.uint32):
        if num_classes <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    fail("num_classes", "at most 2**32 classes", num_classes)


def checkpoint_stride(
    num_shards: int, num_classes: int, num_samples: int, code_bits: int, row_bits: int
) -> int:
    """Shards between two stored rows of per-class prefix counts: the rows take at most
    about a 512th of the codes' bits, so a reader adds the codes of at most half this many
    shards to the nearest row (about ``256 * classes * row_bits / code_bits`` samples,
    whatever the size of the collection).

    Example:
        >>> checkpoint_stride(10_000, 1_000, 10**8, 10, 20)
        103
    """
    need = 512 * num_shards * num_classes * row_bits
    return max(1, -(-need // max(num_samples * code_bits, 1)))


def count_codes(
    read: Callable[[int, int], np.ndarray], first: int, stop: int, num_classes: int
) -> np.ndarray:
    """Samples of each class among codes ``first`` to ``stop`` (``int64``), ``read(a, b)``
    unpacking a million at a time (never a copy of the whole range)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for a in range(int(first), int(stop), _CHUNK):
        counts += np.bincount(read(a, min(a + _CHUNK, int(stop))), minlength=num_classes)
    return counts


def class_checkpoints(
    read: Callable[[int, int], np.ndarray], offsets: np.ndarray, num_classes: int, stride: int
) -> np.ndarray:
    """Row ``k``: the samples of each class in the shards before ``min(k * stride, S)``, for
    ``k = 0 .. ceil(S / stride)`` (the last row: each class's count), ``int64``; ``read(a,
    b)`` unpacks codes ``a`` to ``b``.

    Example:
        >>> codes = np.array([0, 1, 1, 0])
        >>> class_checkpoints(lambda a, b: codes[a:b], np.array([0, 1, 3, 4]), 2, 2).tolist()
        [[0, 0], [1, 2], [2, 2]]
    """
    num_shards = offsets.shape[0] - 1
    bounds = [min(k * stride, num_shards) for k in range(-(-num_shards // stride) + 1)]
    rows = np.zeros((len(bounds), num_classes), dtype=np.int64)
    for k in range(1, len(bounds)):
        part = count_codes(read, offsets[bounds[k - 1]], offsets[bounds[k]], num_classes)
        rows[k] = rows[k - 1] + part
    return rows


class PrefixRows:
    """The per-class prefix counts at every ``stride``-th shard boundary, packed: ``row(k)``
    the counts before shard ``min(k * stride, S)``.

    Args:
        packed: The stored rows, one part of ``num_classes`` counts each.
        num_classes: Counts per row.
        first: The first row stored (version 2 leaves out row 0, all zeros; version 1
            stores it).
    """

    def __init__(self, packed: Packed, num_classes: int, first: int) -> None:
        self.packed = packed
        self.num_classes = num_classes
        self.first = first

    @classmethod
    def pack(cls, rows: np.ndarray, row_bits: int) -> PrefixRows:
        """Rows ``1 ..`` of :func:`class_checkpoints`' result at ``row_bits`` bits."""
        kept, classes = rows[1:], rows.shape[1]
        offsets = np.arange(kept.shape[0] + 1, dtype=np.int64) * classes
        return cls(Packed.pack(kept.reshape(-1), offsets, row_bits), classes, 1)

    def __len__(self) -> int:
        """Row boundaries, row 0 included."""
        return self.first + self.packed.offsets.shape[0] - 1

    def row(self, k: int) -> np.ndarray:
        """The counts before the ``k``-th boundary, ``int64``."""
        k -= self.first
        if k < 0:
            return np.zeros(self.num_classes, dtype=np.int64)
        return self.packed.read(k * self.num_classes, (k + 1) * self.num_classes)


def is_manifest_file(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` begins with the binary manifest's magic."""
    with open(path, "rb") as stream:
        return stream.read(len(MAGIC)) == MAGIC


class ManifestWriter:
    """Write a binary manifest shard by shard: ``add(name, codes)`` for each shard in order,
    then ``close()`` (or use it as a context manager).

    Args:
        path: Where to write (a partial file beside it until ``close``, then renamed).
        classes: The class labels (ints or strings, sorted), codes index into them.

    Example:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/m.tbm"
        >>> with ManifestWriter(path, [3, 7, 9]) as writer:
        ...     writer.add("a.tar", np.array([0, 1, 2]))
        >>> found = read_manifest_file(path)
        >>> found["code_bits"], found["codes"].read(0, 3).tolist()
        (2, [0, 1, 2])
    """

    def __init__(self, path: str | os.PathLike[str], classes: Any) -> None:
        self.path = os.fspath(path)
        self.classes = [c.item() if hasattr(c, "item") else c for c in list(classes)]
        self.dtype = code_dtype(len(self.classes))
        self.bits = bits_for(len(self.classes))
        self._partial = self.path + ".partial"
        self._stream: IO[bytes] = open(self._partial, "wb")  # noqa: SIM115 - closed in close()
        self._stream.write(MAGIC + bytes(_HEAD - len(MAGIC)))
        self._names: list[str] = []
        self._offsets = [0]
        self._totals = np.zeros(len(self.classes), dtype=np.int64)  # sets the rows' width
        self._hash = hashlib.blake2b(digest_size=16)

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *error: Any) -> None:
        if error[0] is None:
            self.close()
        else:
            self._stream.close()
            os.remove(self._partial)

    def _plain(self) -> bool:
        """Whether the classes are the ints ``0 .. C - 1``."""
        labels = self.classes
        return all(type(c) is int for c in labels) and labels == list(range(len(labels)))

    def add(self, name: str, codes: np.ndarray) -> None:
        """Append one shard: its name and its samples' class codes, in order."""
        codes = np.asarray(codes)
        if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= len(self.classes)):
            fail("codes", f"class codes in [0, {len(self.classes)})", Text(f"shard {name!r}"))
        typed = codes.astype(self.dtype.newbyteorder("<"), copy=False)
        self._hash.update(typed.tobytes())  # the fingerprint: codes as code_dtype
        size = int(codes.shape[0])
        self._stream.write(Packed.pack(typed, np.array([0, size]), self.bits).data.tobytes())
        self._totals += np.bincount(typed, minlength=len(self.classes))
        self._names.append(name)
        self._offsets.append(self._offsets[-1] + size)

    def close(self) -> None:
        """Write the offsets, the prefix counts and the header; rename into place."""
        num_shards, total, classes = len(self._names), self._offsets[-1], len(self.classes)
        row_bits = bits_for(int(self._totals.max(initial=0)) + 1)
        stride = checkpoint_stride(num_shards, classes, total, self.bits, row_bits)
        stream = self._stream
        stream.flush()
        offsets = np.array(self._offsets, dtype=np.int64)
        nbytes = stream.tell() - _HEAD
        data = (
            np.memmap(self._partial, dtype=np.uint8, mode="r", offset=_HEAD, shape=(nbytes,))
            if nbytes
            else np.zeros(0, dtype=np.uint8)
        )
        codes = Packed(data, self.bits, offsets)
        rows = PrefixRows.pack(class_checkpoints(codes.read, offsets, classes, stride), row_bits)
        del codes, data
        where: dict[str, int] = {}
        for key, array in (("offsets", offsets.astype("<i8")), ("checkpoints", rows.packed.data)):
            stream.write(bytes(-stream.tell() % 8))
            where[key] = stream.tell()
            stream.write(array.tobytes())
        self._hash.update(json.dumps([self._names, self.classes]).encode())
        self._hash.update(offsets.astype("<i8").tobytes())
        header = {
            "version": _VERSION,
            "code_bits": self.bits,
            "row_bits": row_bits,
            "num_shards": num_shards,
            "num_samples": total,
            "num_classes": classes,
            "stride": stride,
            "rows": len(rows),
            "codes_at": _HEAD,
            "offsets_at": where["offsets"],
            "checkpoints_at": where["checkpoints"],
            "fingerprint": self._hash.hexdigest(),
            # classes 0 .. C - 1 (ints, the common case) as their count: C numbers fewer
            "classes": classes if self._plain() else self.classes,
            "names": self._names,
        }
        text = json.dumps(header).encode()
        stream.write(text + struct.pack("<Q", len(text)) + MAGIC)
        stream.close()
        os.replace(self._partial, self.path)


def read_manifest_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Map a binary manifest: the header's fields, ``offsets`` (an array), ``codes`` (the
    packed codes, :class:`~torch_balance.streams.packing.Packed`) and ``checkpoints`` (the
    prefix counts, :class:`PrefixRows`), both memory-mapped, read-only. Reads versions 1
    and 2.

    Raises:
        ValueError: If the file is not a binary manifest (magic), is cut short or longer
            than its header says, has codes or counts of a width that is not the one of its
            class or sample count, offsets that do not add up or counts that do not add up to
            its samples; the message names the path.
    """
    where = str(path)
    size = os.path.getsize(path)
    tail = 8 + len(MAGIC)
    with open(path, "rb") as stream:
        if stream.read(len(MAGIC)) != MAGIC:
            _bad(where, "no binary manifest magic at its start")
        if size < _HEAD + tail:
            _bad(where, f"{size} bytes, too short for a binary manifest (cut off?)")
        stream.seek(size - tail)
        (length,) = struct.unpack("<Q", stream.read(8))
        if stream.read(len(MAGIC)) != MAGIC:
            _bad(where, "no magic at its end (cut off while it was written?)")
        if length > size - _HEAD - tail:
            _bad(where, f"a header of {length} bytes in a file of {size}")
        stream.seek(size - tail - length)
        try:
            header = json.loads(stream.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            _bad(where, f"a header that is not JSON ({error})")
    keys = ("num_shards", "num_samples", "num_classes", "stride", "rows", "classes", "names")
    if not isinstance(header, dict) or any(k not in header for k in keys):
        _bad(where, "a header without its fields")
    version = header.get("version")
    if version not in (1, _VERSION):
        _bad(where, f"version {version!r} (this reader knows 1 and {_VERSION})")
    shards, total, classes = header["num_shards"], header["num_samples"], header["num_classes"]
    counts = (shards, total, classes, header["rows"], header["stride"])
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
        _bad(where, "sizes that are not counts")
    if version == _VERSION and header["classes"] == classes:
        header["classes"] = list(range(classes))  # written as their count
    names, labels = header["names"], header["classes"]
    if not isinstance(names, list) or not isinstance(labels, list):
        _bad(where, "a header whose names or classes are not lists")
    if len(names) != shards or len(labels) != classes:
        _bad(where, "a header whose names or classes do not match its counts")
    bits, row_bits, first = _widths(where, header)
    stride = header["stride"]
    if stride < 1 or header["rows"] != -(-shards // stride) + 1:
        _bad(where, f"{header['rows']} rows of counts for {shards} shards every {stride}")
    end = size - tail - length
    _inside(where, header, "offsets_at", (shards + 1) * 8, end)
    offsets = np.fromfile(where, dtype="<i8", count=shards + 1, offset=header["offsets_at"])
    if offsets[0] != 0 or offsets[-1] != total or (np.diff(offsets) < 0).any():
        _bad(where, "shard offsets that do not add up to its samples")
    offsets = offsets.astype(np.int64)
    codes = Packed(np.zeros(0, np.uint8), bits, offsets)
    stored = np.arange(header["rows"] - first + 1, dtype=np.int64) * classes
    rows = Packed(np.zeros(0, np.uint8), row_bits, stored)
    for key, packed in (("codes_at", codes), ("checkpoints_at", rows)):
        _inside(where, header, key, packed.nbytes, end)
        if packed.nbytes:
            packed.data = np.memmap(
                where, dtype=np.uint8, mode="r", offset=header[key], shape=(packed.nbytes,)
            )
    found = PrefixRows(rows, classes, first)
    last = found.row(len(found) - 1)
    if int(last.sum()) != total or (last < 0).any():
        _bad(where, "per-class counts that do not add up to its samples")
    return {**header, "codes": codes, "offsets": offsets, "checkpoints": found}


def _widths(where: str, header: dict[str, Any]) -> tuple[int, int, int]:
    """Bits per code and per count, and the first row stored, checked against the counts."""
    classes, total = header["num_classes"], header["num_samples"]
    if header["version"] == 1:
        dtype = header.get("dtype")
        if dtype not in _DTYPES or dtype != code_dtype(classes).name:
            _bad(where, f"codes of dtype {dtype!r} for {classes} classes")
        return 8 * np.dtype(dtype).itemsize, 64, 0
    bits, row_bits = header.get("code_bits"), header.get("row_bits")
    if bits != bits_for(classes):
        _bad(where, f"codes of {bits!r} bits for {classes} classes (want {bits_for(classes)})")
    if not isinstance(row_bits, int) or not 1 <= row_bits <= bits_for(total + 1):
        _bad(where, f"counts of {row_bits!r} bits for {total} samples")
    return bits_for(classes), row_bits, 1


def _inside(where: str, header: dict[str, Any], key: str, span: int, end: int) -> None:
    at = header.get(key)
    if not isinstance(at, int) or at < _HEAD or at + span > end:
        _bad(where, f"its {key[:-3]} past the end of the file (cut off?)")


def _bad(where: str, what: str) -> NoReturn:
    fail(
        "path",
        "a binary manifest written by Manifest.save",
        Text(f"{where!r}: {what}"),
        "Write it again with Manifest.save(path) (or Manifest.scan_tar(..., save=path))",
    )
