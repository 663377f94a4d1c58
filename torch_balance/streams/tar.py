"""A small reader for WebDataset tar shards: headers parsed directly, data read only on demand.

Python's ``tarfile`` builds a ``TarInfo`` object per member (about 20 us each); a shard of
small samples spends most of its reading time there. This reader parses the 512-byte ustar
headers itself (with GNU long names and pax ``path`` and ``size`` records), seeks past the data
of members nobody asked for, and groups members into samples as webdataset does: consecutive
members whose names share the part before the first dot of the file name.

It trusts nothing a shard says. Every header's checksum is checked; a size that is not a
number, is negative, or runs past the end of the file is refused before anything is read or
allocated; metadata members (pax headers, GNU long names) and the members asked for have size
limits; the stream only ever moves forward; a file cut off inside a member or a header is
refused. Every refusal is a ``ValueError`` naming the shard and the byte offset of the member.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Iterator
from typing import IO, Any, NoReturn

from torch_balance._validation import Text, check_int, fail

__all__ = ["MAX_META_SIZE", "tar_members", "tar_samples"]

_BLOCK = 512
_CHUNK = 1 << 20  # reads of unknown length are made in pieces of this size
_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
_REGULAR = (b"0", b"\0", b"7")
_META = (b"L", b"K", b"x", b"g")
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")  # tarfile reads no data after these
_OCTAL = re.compile(rb"^[ \0]*([0-7]*)[ \0]*$")

#: Default size limit of a metadata member (a pax header, a GNU long name): 1 MiB.
MAX_META_SIZE = 1 << 20


class _Shard:
    """A forward-only reader of one tar stream: it knows where it is and, where the stream
    can seek, how much is left; every error names the shard and a byte offset."""

    def __init__(self, stream: IO[bytes], where: str) -> None:
        self.stream = stream
        self.where = where
        self.seekable = stream.seekable()
        self.offset = stream.tell() if self.seekable else 0
        self.end: int | None = None
        if self.seekable:
            self.end = stream.seek(0, os.SEEK_END)
            stream.seek(self.offset)

    def fail(self, at: int, what: str, expected: str = "a valid tar shard") -> NoReturn:
        fail("shard", expected, Text(f"{self.where!r} at byte {at}: {what}"))

    def need(self, n: int, at: int, what: str) -> None:
        """Refuse, before reading, ``n`` bytes that the file does not hold."""
        if self.end is not None and n > self.end - self.offset:
            left = self.end - self.offset
            self.fail(at, f"{what} of {n:,} bytes, but only {left:,} remain", "a complete tar file")

    def read(self, n: int, at: int, what: str) -> bytes:
        self.need(n, at, what)
        return b"".join(self._pieces(n, at, what))

    def skip(self, n: int, at: int, what: str) -> None:
        self.need(n, at, what)
        if self.seekable:
            self.stream.seek(n, os.SEEK_CUR)  # n >= 0: never backwards
            self.offset += n
            return
        for _ in self._pieces(n, at, what):
            pass

    def _pieces(self, n: int, at: int, what: str) -> Iterator[bytes]:
        """The next ``n`` bytes, a chunk at a time; a file that ends first is refused."""
        left = n
        while left > 0:
            piece = self.stream.read(min(left, _CHUNK))
            if not piece:
                self.fail(
                    at, f"{what} of {n:,} bytes cut off after {n - left:,}", "a complete tar file"
                )
            left -= len(piece)
            yield piece
        self.offset += n

    def header(self) -> bytes | None:
        """The next 512-byte header, or None at the end of the archive."""
        at = self.offset
        block = self.stream.read(_BLOCK)
        if not block:
            if at == 0:
                self.fail(at, "an empty file")
            return None  # the end of the file at a member boundary
        if len(block) < _BLOCK:
            self.fail(at, f"a header cut off after {len(block)} bytes", "a complete tar file")
        self.offset += _BLOCK
        if block.count(0) == _BLOCK:
            return None
        if not _checksum_ok(block):
            self.fail(at, "a header whose checksum does not match (not a tar header)")
        return block


def _checksum_ok(header: bytes) -> bool:
    match = _OCTAL.match(header[148:156])
    if match is None or not match.group(1):
        return False
    stored = int(match.group(1), 8)
    unsigned = 256 + sum(header[:148]) + sum(header[156:])
    signed = (
        256 + sum(struct.unpack("148b", header[:148])) + sum(struct.unpack("356b", header[156:]))
    )
    return stored in (unsigned, signed)


def _size(shard: _Shard, field: bytes, at: int) -> int:
    """A header's size field: octal digits, or GNU base-256 (positive only)."""
    if field[0] == 0x80:  # GNU base-256, positive
        return int.from_bytes(field[1:], "big")
    if field[0] == 0xFF:
        shard.fail(at, "a negative size (base-256)", "a member size >= 0")
    match = _OCTAL.match(field)
    if match is None:
        shard.fail(at, f"a size field {field!r} that is not an octal number", "a member size >= 0")
    return int(match.group(1), 8) if match.group(1) else 0


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(shard: _Shard, data: bytes, at: int) -> dict[bytes, bytes]:
    """The records ``"<length> <key>=<value>\\n"`` of a pax header."""
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos, pos + 21)
        length = data[pos:space] if space > pos else b""
        if not length.isdigit() or int(length) <= space - pos or pos + int(length) > len(data):
            shard.fail(at, f"a pax header with a malformed record at its byte {pos}")
        record = data[space + 1 : pos + int(length)]
        if not record.endswith(b"\n") or b"=" not in record:
            shard.fail(at, f"a pax header with a malformed record at its byte {pos}")
        key, value = record[:-1].split(b"=", 1)
        records[key] = value
        pos += int(length)
    return records


def tar_members(
    stream: IO[bytes],
    wanted: Callable[[str], bool] = lambda name: True,
    *,
    where: str = "<stream>",
    max_meta_size: int = MAX_META_SIZE,
    max_member_size: int | None = None,
) -> Iterator[tuple[str, bytes | None]]:
    """``(name, data)`` of every regular file of a tar stream, in order; ``data`` is None for
    a member ``wanted(name)`` refuses (its data is skipped, by seeking where possible).

    Args:
        stream: A binary stream at the start of a tar archive.
        wanted: Which members to read.
        where: The shard's name in error messages.
        max_meta_size: The largest pax header or GNU long name accepted, in bytes.
        max_member_size: The largest member ``wanted`` accepts, in bytes (None: any that the
            file holds).

    Raises:
        ValueError: For a header that is not one (bad checksum), a size that is negative, not
            a number, over its limit or past the end of the file, a malformed pax header, or a
            file cut off inside a header or a member; the message names ``where`` and the byte
            offset of the member.
    """
    max_meta_size = check_int("max_meta_size", max_meta_size, minimum=0)
    max_member_size = check_int("max_member_size", max_member_size, minimum=0, allow_none=True)
    shard = _Shard(stream, where)
    long_name: str | None = None
    pax: dict[bytes, bytes] = {}
    pending = False  # a metadata member was read; a member must follow
    while True:
        at = shard.offset
        header = shard.header()
        if header is None:
            if pending:
                shard.fail(
                    at, "a pax header or long name followed by no member", "a complete tar file"
                )
            return
        kind = header[156:157]
        size = _size(shard, header[124:136], at)
        if kind in _META:
            if size > max_meta_size:
                shard.fail(
                    at,
                    f"a metadata member (type {kind.decode()}) of {size:,} bytes",
                    f"metadata members of at most max_meta_size={max_meta_size:,} bytes",
                )
            data = shard.read(size, at, "a metadata member")
            shard.skip(-size % _BLOCK, at, "the padding of a metadata member")
            pending = True
            if kind == b"L":
                long_name = _text(data)
            elif kind == b"x":
                pax = _pax(shard, data, at)
            elif kind == b"g" and {b"path", b"size"} & set(_pax(shard, data, at)):
                shard.fail(at, "a global pax header that names or sizes every member")
            continue
        if b"size" in pax:
            text = pax[b"size"]
            if not text.isdigit():
                shard.fail(at, f"a pax size {text!r} that is not a number", "a member size >= 0")
            size = int(text)
        name = long_name
        if b"path" in pax:
            name = pax[b"path"].decode("utf-8", "surrogateescape")
        long_name, pax, pending = None, {}, False
        if name is None:
            name = _text(header[0:100])
            prefix = _text(header[345:500])
            if prefix:
                name = f"{prefix}/{name}"
        padding = -size % _BLOCK
        if kind == b"S":
            shard.fail(at, f"a GNU sparse member {name!r}", "a tar shard without sparse members")
        if kind in _NO_DATA and size:
            shard.fail(at, f"a link, directory or device {name!r} with {size:,} bytes of data")
        if kind not in _REGULAR or (kind == b"\0" and name.endswith("/")):  # not a file: skip
            shard.skip(size + padding, at, f"member {name!r}")
            continue
        if wanted(name):
            if max_member_size is not None and size > max_member_size:
                shard.fail(
                    at,
                    f"member {name!r} of {size:,} bytes",
                    f"members of at most {max_member_size:,} bytes "
                    "(max_member_size, or scan_tar's max_label_size)",
                )
            data = shard.read(size, at, f"member {name!r}")
            shard.skip(padding, at, f"the padding of member {name!r}")
            yield name, data
        else:
            shard.skip(size + padding, at, f"member {name!r}")
            yield name, None


def tar_samples(
    path: str,
    fields: set[str] | None = None,
    *,
    max_meta_size: int = MAX_META_SIZE,
    max_member_size: int | None = None,
    every: tuple[int, int] | None = None,
) -> Iterator[dict[str, Any]]:
    """The samples of one tar shard as webdataset groups them: dicts with ``__key__``,
    ``__url__`` and one ``bytes`` entry per member extension (only ``fields``, if given).

    With ``every=(start, step)`` only the samples at positions ``start, start + step, ...``
    come out, and the members of the others are seeked over, never read: a stream reader that
    shares a shard with others reads (and decodes) only its own samples.

    Args:
        path: The shard's path.
        fields: The member extensions to read (None: all); the others are seeked over.
        max_meta_size: The largest pax header or GNU long name accepted, in bytes.
        max_member_size: The largest member read, in bytes (None: any the file holds).
        every: ``(start, step)``: the positions of the samples to yield (None: all).

    Raises:
        ValueError: For a damaged or hostile shard (see :func:`tar_members`), with the
            shard's path and the byte offset of the member.

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

    start, step = (0, 1) if every is None else every
    start = int(check_int("every[0]", start, minimum=0))
    step = int(check_int("every[1]", step, minimum=1))
    at: list[Any] = [-1, None]  # the position and key of the sample the last member is of

    def wanted_field(name: str) -> bool:
        if fields is None:
            return True
        match = _KEY_EXT.match(name)
        return match is not None and match.group(2).lower() in fields

    def wanted_position(name: str) -> bool:  # a member of a sample this call yields
        match = _KEY_EXT.match(name)
        base = os.path.basename(name)
        if match is None or (base.startswith("__") and base.endswith("__")):
            return False
        if match.group(1) != at[1]:
            at[0], at[1] = at[0] + 1, match.group(1)
        if at[0] < start or (at[0] - start) % step:
            return False
        return fields is None or match.group(2).lower() in fields

    wanted = wanted_field if every is None else wanted_position

    def kept(position: int) -> bool:
        return position >= start and (position - start) % step == 0

    sample: dict[str, Any] | None = None
    position = -1
    try:
        opened = open(path, "rb")  # noqa: SIM115 (closed by the with below)
    except OSError as error:  # the same kind of error, worded for the shard
        raise type(error)(
            error.errno,
            f"shard {os.fspath(path)!r}: {error.strerror or error}. Check the shard names or "
            "pattern (expand_shards shows what a pattern names) and that every shard exists",
        ) from error
    with opened as stream:
        members = tar_members(
            stream, wanted, where=path, max_meta_size=max_meta_size, max_member_size=max_member_size
        )
        for name, data in members:
            base = os.path.basename(name)
            if base.startswith("__") and base.endswith("__"):
                continue
            match = _KEY_EXT.match(name)
            if match is None:
                continue
            key, ext = match.group(1), match.group(2).lower()
            if sample is None or sample["__key__"] != key:
                if sample is not None and (every is None or kept(position)):
                    yield sample
                position += 1
                sample = {"__key__": key, "__url__": path}
            if data is not None:
                sample[ext] = data
    if sample is not None and (every is None or kept(position)):
        yield sample
