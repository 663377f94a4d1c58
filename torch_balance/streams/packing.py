"""Unsigned integers packed at a fixed width of 1 to 64 bits, in parts that each begin on a
byte, so that one part (a shard's class codes, a row of per-class counts) is read alone.

Within a part, value ``j`` occupies bits ``j * width`` to ``(j + 1) * width - 1``, least
significant bit first (bit ``i`` of the part is bit ``i % 8`` of its byte ``i // 8``); the
last byte of a part is padded with zeros. At widths of 8, 16, 32 and 64 bits this is the
little-endian ``uint8`` .. ``uint64`` array, read as a plain typed view. Packing and
unpacking are whole-array numpy operations (a gather of 32- or 64-bit windows, a shift and
a mask): no Python loop over values.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

__all__ = ["Packed", "bits_for", "part_starts"]

_TYPED = (8, 16, 32, 64)  # widths read as a plain typed view


def bits_for(count: int) -> int:
    """The width that holds the values ``0 .. count - 1``: ``max(1, ceil(log2(count)))``.

    Example:
        >>> [bits_for(n) for n in (1, 2, 3, 256, 257, 1000, 65536, 70000)]
        [1, 1, 2, 8, 9, 10, 16, 17]
    """
    return max(1, (max(int(count), 1) - 1).bit_length())


def part_starts(offsets: np.ndarray, width: int) -> np.ndarray:
    """Where each part begins in the packed bytes (and, last, their total), from the value
    offsets of the parts (``int64``, ``P + 1``).

    Example:
        >>> part_starts(np.array([0, 3, 3, 8]), 10).tolist()
        [0, 4, 4, 11]
    """
    sizes = np.diff(np.asarray(offsets, dtype=np.int64))
    starts = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
    np.cumsum((sizes * width + 7) // 8, out=starts[1:])
    return starts


class Packed:
    """Values of ``width`` bits in parts that each begin on a byte: ``read(a, b)`` unpacks
    values ``a`` to ``b`` (across parts), the one place packed values are read.

    Args:
        data: The packed bytes (``uint8``; a memory map is read where asked only).
        width: Bits per value: 1 to 56, or 64.
        offsets: Where each part begins among the values (``int64``, ``P + 1``).

    Example:
        >>> packed = Packed.pack(np.array([5, 0, 7, 1, 2]), np.array([0, 2, 2, 5]), 3)
        >>> packed.nbytes, packed.read(1, 4).tolist()
        (3, [0, 7, 1])
    """

    def __init__(self, data: np.ndarray, width: int, offsets: np.ndarray) -> None:
        self.data = data
        self.width = width
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.starts = part_starts(self.offsets, width)

    @property
    def nbytes(self) -> int:
        """The packed bytes of every part."""
        return int(self.starts[-1])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @classmethod
    def pack(cls, values: np.ndarray, offsets: np.ndarray, width: int) -> Packed:
        """Pack ``values`` (non-negative, below ``2**width``) in the parts ``offsets`` says."""
        values = np.asarray(values)
        offsets = np.asarray(offsets, dtype=np.int64)
        if width in _TYPED:  # parts are whole bytes: the typed array itself
            data = values.astype(f"<u{width // 8}").view(np.uint8)
        else:
            parts = [pack_part(values[a:b], width) for a, b in itertools.pairwise(offsets)]
            data = np.concatenate([np.zeros(0, np.uint8), *parts])
        return cls(data, width, offsets)

    def read(self, first: int, stop: int) -> np.ndarray:
        """Values ``first`` to ``stop`` (excluded) as ``int64``."""
        first, stop = int(first), int(stop)
        width = self.width
        if stop <= first:
            return np.zeros(0, dtype=np.int64)
        if width in _TYPED:
            size = width // 8
            span = self.data[first * size : stop * size]
            typed = np.frombuffer(np.ascontiguousarray(span), dtype=f"<u{size}")
            return typed.astype(np.int64)
        lo = int(np.searchsorted(self.offsets, first, side="right")) - 1
        hi = int(np.searchsorted(self.offsets, stop, side="left"))
        out = np.empty(stop - first, dtype=np.int64)
        for part in range(lo, hi):  # a loop over parts; each part's values at once
            begin, end = int(self.offsets[part]), int(self.offsets[part + 1])
            a, b = max(begin, first), min(end, stop)
            if a < b:
                at = int(self.starts[part])
                out[a - first : b - first] = unpack_part(
                    self.data[at : int(self.starts[part + 1])], a - begin, b - begin, width
                )
        return out


def pack_part(values: np.ndarray, width: int) -> np.ndarray:
    """One part's values as ``ceil(len * width / 8)`` bytes, least significant bit first."""
    values = np.asarray(values, dtype=np.uint64)
    shifts = np.arange(width, dtype=np.uint64)
    bits = ((values[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits.reshape(-1), bitorder="little")


def unpack_part(data: Any, first: int, stop: int, width: int) -> np.ndarray:
    """Values ``first`` to ``stop`` of one part's bytes ``data``, as ``int64``. Value ``j``
    begins at bit ``width * j``: the values ``r, r + 8, r + 16, ..`` begin at the same bit of
    bytes ``width`` apart, so each of those eight runs is one strided read of 4- or 8-byte
    windows, a shift and a mask (no index arrays)."""
    g0, g1 = first // 8, -(-stop // 8)  # whole groups of eight values: width bytes each
    window = 4 if width <= 25 else 8  # a value and its shift of up to 7 bits fit
    lo = g0 * width
    buffer = np.zeros((g1 - g0) * width + window, dtype=np.uint8)
    chunk = data[lo : g1 * width]
    buffer[: chunk.shape[0]] = chunk
    windows = np.ndarray(  # the window that begins at every byte (unaligned reads)
        (buffer.shape[0] - window + 1,), dtype=f"<u{window}", buffer=buffer, strides=(1,)
    )
    kind = windows.dtype.type
    mask = kind((1 << width) - 1)
    groups = g1 - g0
    out = np.empty(groups * 8, dtype=np.int64)
    for r in range(8):
        bit = width * r
        run = windows[bit >> 3 :: width][:groups]
        out[r::8] = (run >> kind(bit & 7)) & mask
    return out[first - 8 * g0 : stop - 8 * g0]
