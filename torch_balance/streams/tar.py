"""A small reader for WebDataset tar shards: headers parsed directly, data read only on demand.

Python's ``tarfile`` builds a ``TarInfo`` object per member (about 20 us each); a shard of
small samples spends most of its reading time there. This reader parses the 512-byte ustar
headers itself (with GNU long names and pax ``path`` records), seeks past the data of members
nobody asked for, and groups members into samples as webdataset does: consecutive members
whose names share the part before the first dot of the file name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import IO, Any

from torch_balance._validation import Text, fail

__all__ = ["tar_members", "tar_samples"]

_BLOCK = 512
_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def _number(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def tar_members(
    stream: IO[bytes], wanted: Callable[[str], bool] = lambda name: True
) -> Iterator[tuple[str, bytes | None]]:
    """``(name, data)`` of every regular file of a tar stream, in order; ``data`` is None for
    a member ``wanted(name)`` refuses (its data is skipped, by seeking where possible)."""
    long_name: str | None = None
    seekable = stream.seekable()
    while True:
        header = stream.read(_BLOCK)
        if len(header) < _BLOCK or header.count(0) == _BLOCK:
            return
        size = _number(header[124:136])
        kind = header[156:157]
        padded = (size + _BLOCK - 1) // _BLOCK * _BLOCK
        if kind in (b"L", b"x", b"g"):  # GNU long name, pax headers: read their data
            data = stream.read(padded)[:size]
            if kind == b"L":
                long_name = _text(data)
            elif kind == b"x":
                match = re.search(rb"\d+ path=([^\n]*)\n", data)
                long_name = match.group(1).decode("utf-8", "surrogateescape") if match else None
            continue
        name = long_name
        long_name = None
        if name is None:
            name = _text(header[0:100])
            prefix = _text(header[345:500]) if header[257:262] == b"ustar" else ""
            if prefix:
                name = f"{prefix}/{name}"
        if kind not in (b"0", b"\0", b"7"):  # not a regular file: skip it
            _skip(stream, padded, seekable)
            continue
        if wanted(name):
            data = stream.read(padded)
            if len(data) < size:
                fail("shard", "a complete tar file", Text(f"a truncated member {name!r}"))
            yield name, data[:size]
        else:
            _skip(stream, padded, seekable)
            yield name, None


def _skip(stream: IO[bytes], padded: int, seekable: bool) -> None:
    if seekable:
        stream.seek(padded, os.SEEK_CUR)
    else:
        stream.read(padded)


def tar_samples(path: str, fields: set[str] | None = None) -> Iterator[dict[str, Any]]:
    """The samples of one tar shard as webdataset groups them: dicts with ``__key__``,
    ``__url__`` and one ``bytes`` entry per member extension (only ``fields``, if given).

    Use it as a fast opener for :class:`~torch_balance.streams.Shards`:
    ``Shards("train-{000..099}.tar", tar_samples)``.

    Example:
        >>> import io, tarfile, tempfile
        >>> path = tempfile.mkdtemp() + "/s.tar"
        >>> with tarfile.open(path, "w") as tar:
        ...     for name, data in [("a.png", b"p"), ("a.cls", b"1"), ("b.png", b"q")]:
        ...         info = tarfile.TarInfo(name); info.size = len(data)
        ...         tar.addfile(info, io.BytesIO(data))
        >>> [(s["__key__"], s.get("cls")) for s in tar_samples(path)]
        [('a', b'1'), ('b', None)]
    """

    def wanted(name: str) -> bool:
        if fields is None:
            return True
        match = _KEY_EXT.match(name)
        return match is not None and match.group(2).lower() in fields

    sample: dict[str, Any] | None = None
    with open(path, "rb") as stream:
        for name, data in tar_members(stream, wanted):
            base = os.path.basename(name)
            if base.startswith("__") and base.endswith("__"):
                continue
            match = _KEY_EXT.match(name)
            if match is None:
                continue
            key, ext = match.group(1), match.group(2).lower()
            if sample is None or sample["__key__"] != key:
                if sample is not None:
                    yield sample
                sample = {"__key__": key, "__url__": path}
            if data is not None:
                sample[ext] = data
    if sample is not None:
        yield sample
