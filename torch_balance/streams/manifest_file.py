"""The binary manifest: every label of a collection as a fixed-width class code, read by
memory-mapping, so that opening a manifest of a billion samples costs neither time nor memory
and every DataLoader worker of a machine shares the same pages.

Layout (little-endian): an 8-byte magic ``TBMANIF1`` and 56 reserved bytes; the class codes of
every sample in manifest order (``uint8`` up to 256 classes, ``uint16`` up to 65,536, else
``uint32``); the shard offsets (``int64``, ``S + 1``); the per-class prefix counts at every
``stride``-th shard (``int64``, see :func:`~torch_balance.streams.manifest.class_checkpoints`);
a UTF-8 JSON header (version, dtype, sizes, classes, shard names, stride, fingerprint and
where each array begins); the header's length (``uint64``) and the magic again. A reader
checks the magics, the sizes against the file's length, the dtype against the class count and
the offsets; the codes are checked where they are used (a reader's own shards).

:class:`ManifestWriter` writes one shard at a time (the codes of the whole collection never
need to be in memory); :func:`read_manifest_file` maps one.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from typing import IO, Any

import numpy as np

from torch_balance._validation import Text, fail

__all__ = [
    "MAGIC",
    "ManifestWriter",
    "checkpoint_stride",
    "class_checkpoints",
    "code_dtype",
    "is_manifest_file",
    "read_manifest_file",
]

MAGIC = b"TBMANIF1"
_HEAD = 64  # the magic and reserved bytes before the codes
_VERSION = 1
_DTYPES = ("uint8", "uint16", "uint32")


def code_dtype(num_classes: int) -> np.dtype[Any]:
    """The smallest unsigned integer type that holds a class code: uint8 up to 256 classes,
    uint16 up to 65,536, else uint32.

    Example:
        >>> code_dtype(20), code_dtype(1000), code_dtype(70_000)
        (dtype('uint8'), dtype('uint16'), dtype('uint32'))
    """
    for dtype in (np.uint8, np.uint16, np.uint32):
        if num_classes <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    fail("num_classes", "at most 2**32 classes", num_classes)


def checkpoint_stride(num_shards: int, num_classes: int, num_samples: int, itemsize: int) -> int:
    """Shards between two stored rows of per-class prefix counts: the rows take at most a
    64th of the codes' bytes (a reader adds the codes of fewer than this many shards to a
    row: a small multiple of the per-class table's own size).

    Example:
        >>> checkpoint_stride(10_000, 1_000, 10**8, 2)
        26
    """
    need = 512 * num_shards * num_classes
    return max(1, -(-need // max(num_samples * itemsize, 1)))


def class_checkpoints(
    codes: np.ndarray, offsets: np.ndarray, num_classes: int, stride: int
) -> np.ndarray:
    """Row ``k``: the samples of each class in the shards before ``min(k * stride, S)``, for
    ``k = 0 .. ceil(S / stride)`` (the last row: each class's count), ``int64``.

    Example:
        >>> class_checkpoints(np.array([0, 1, 1, 0]), np.array([0, 1, 3, 4]), 2, 2).tolist()
        [[0, 0], [1, 2], [2, 2]]
    """
    num_shards = offsets.shape[0] - 1
    bounds = [min(k * stride, num_shards) for k in range(-(-num_shards // stride) + 1)]
    rows = np.zeros((len(bounds), num_classes), dtype=np.int64)
    for k in range(1, len(bounds)):
        part = codes[offsets[bounds[k - 1]] : offsets[bounds[k]]]
        rows[k] = rows[k - 1] + np.bincount(part, minlength=num_classes)
    return rows


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
        >>> with ManifestWriter(path, [3, 7]) as writer:
        ...     writer.add("a.tar", np.array([0, 1, 1]))
        >>> read_manifest_file(path)["codes"].tolist()
        [0, 1, 1]
    """

    def __init__(self, path: str | os.PathLike[str], classes: Any) -> None:
        self.path = os.fspath(path)
        self.classes = [c.item() if hasattr(c, "item") else c for c in list(classes)]
        self.dtype = code_dtype(len(self.classes))
        self._partial = self.path + ".partial"
        self._stream: IO[bytes] = open(self._partial, "wb")  # noqa: SIM115 - closed in close()
        self._stream.write(MAGIC + bytes(_HEAD - len(MAGIC)))
        self._names: list[str] = []
        self._offsets = [0]
        self._hash = hashlib.blake2b(digest_size=16)

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *error: Any) -> None:
        if error[0] is None:
            self.close()
        else:
            self._stream.close()
            os.remove(self._partial)

    def add(self, name: str, codes: np.ndarray) -> None:
        """Append one shard: its name and its samples' class codes, in order."""
        codes = np.asarray(codes)
        if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= len(self.classes)):
            fail("codes", f"class codes in [0, {len(self.classes)})", Text(f"shard {name!r}"))
        data = codes.astype(self.dtype.newbyteorder("<"), copy=False)
        self._stream.write(data.tobytes())
        self._hash.update(data.tobytes())
        self._names.append(name)
        self._offsets.append(self._offsets[-1] + int(codes.shape[0]))

    def close(self) -> None:
        """Write the offsets, the prefix counts and the header; rename into place."""
        num_shards, total = len(self._names), self._offsets[-1]
        stride = checkpoint_stride(num_shards, len(self.classes), total, self.dtype.itemsize)
        stream = self._stream
        stream.flush()
        offsets = np.array(self._offsets, dtype=np.int64)
        codes = (
            np.memmap(self._partial, dtype=self.dtype, mode="r", offset=_HEAD, shape=(total,))
            if total
            else np.zeros(0, dtype=self.dtype)
        )
        kept = class_checkpoints(codes, offsets, len(self.classes), stride)
        del codes
        where: dict[str, int] = {}
        for key, array in (("offsets", offsets.astype("<i8")), ("checkpoints", kept.astype("<i8"))):
            stream.write(bytes(-stream.tell() % 8))
            where[key] = stream.tell()
            stream.write(array.tobytes())
        self._hash.update(json.dumps([self._names, self.classes]).encode())
        self._hash.update(np.array(self._offsets, dtype="<i8").tobytes())
        header = {
            "version": _VERSION,
            "dtype": self.dtype.name,
            "num_shards": num_shards,
            "num_samples": total,
            "num_classes": len(self.classes),
            "stride": stride,
            "rows": len(kept),
            "codes_at": _HEAD,
            "offsets_at": where["offsets"],
            "checkpoints_at": where["checkpoints"],
            "fingerprint": self._hash.hexdigest(),
            "classes": self.classes,
            "names": self._names,
        }
        text = json.dumps(header).encode()
        stream.write(text + struct.pack("<Q", len(text)) + MAGIC)
        stream.close()
        os.replace(self._partial, self.path)


def read_manifest_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Map a binary manifest: the header's fields, and ``codes``, ``offsets`` and
    ``checkpoints`` as arrays (the codes and prefix counts memory-mapped, read-only).

    Raises:
        ValueError: If the file is not a binary manifest (magic), is cut short or longer
            than its header says, has a dtype that is not the one of its class count, or
            offsets that do not add up; the message names the path.
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
    keys = ("dtype", "num_shards", "num_samples", "num_classes", "stride", "rows", "classes")
    if not isinstance(header, dict) or any(k not in header for k in (*keys, "names")):
        _bad(where, "a header without its fields")
    if header.get("version") != _VERSION:
        _bad(where, f"version {header.get('version')!r} (this reader knows {_VERSION})")
    shards, total, classes = header["num_shards"], header["num_samples"], header["num_classes"]
    if not all(isinstance(v, int) and v >= 0 for v in (shards, total, classes, header["rows"])):
        _bad(where, "sizes that are not counts")
    if header["dtype"] not in _DTYPES or header["dtype"] != code_dtype(classes).name:
        _bad(where, f"codes of dtype {header['dtype']!r} for {classes} classes")
    dtype = np.dtype(header["dtype"]).newbyteorder("<")
    spans = {
        "codes_at": total * dtype.itemsize,
        "offsets_at": (shards + 1) * 8,
        "checkpoints_at": header["rows"] * classes * 8,
    }
    end = size - tail - length
    for key, span in spans.items():
        at = header.get(key)
        if not isinstance(at, int) or at < _HEAD or at + span > end:
            _bad(where, f"its {key[:-3]} past the end of the file (cut off?)")
    if len(header["names"]) != shards or len(header["classes"]) != classes:
        _bad(where, "a header whose names or classes do not match its counts")
    offsets = np.fromfile(where, dtype="<i8", count=shards + 1, offset=header["offsets_at"])
    if offsets[0] != 0 or offsets[-1] != total or (np.diff(offsets) < 0).any():
        _bad(where, "shard offsets that do not add up to its samples")
    codes = np.memmap(where, dtype=dtype, mode="r", offset=header["codes_at"], shape=(total,))
    rows = np.memmap(
        where,
        dtype="<i8",
        mode="r",
        offset=header["checkpoints_at"],
        shape=(header["rows"], classes),
    )
    return {**header, "codes": codes, "offsets": offsets.astype(np.int64), "checkpoints": rows}


def _bad(where: str, what: str) -> None:
    fail(
        "path",
        "a binary manifest written by Manifest.save",
        Text(f"{where!r}: {what}"),
        "Write it again with Manifest.save(path) (or Manifest.scan_tar(..., save=path))",
    )
