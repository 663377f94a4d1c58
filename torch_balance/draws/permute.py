"""A keyed random-access permutation of ``[0, n)``: where position ``i`` goes, computed for
any ``i`` on its own, in constant time and memory.

A stream reader that holds a few of a class's samples must know which of them take the
class's extra copies without drawing (or storing) a permutation of the whole class:
``permute(i, n, key) < r`` marks exactly ``r`` of the ``n`` samples, the same ones on every
reader. The permutation is a Feistel network (Luby and Rackoff, SIAM J. Comput. 1988) on the
smallest domain of ``4**h >= n`` values, with SplitMix64 (Steele, Lea and Flood, OOPSLA 2014)
as its round function, restricted to ``[0, n)`` by cycle walking (Black and Rogaway, CT-RSA
2002): a value that lands outside is enciphered again until it lands inside, which keeps the
map a bijection of ``[0, n)``. Since the domain is under ``4 n``, a value walks fewer than
four times on average.

:func:`permute` is the numpy kernel, over arrays of positions (each with its own ``n`` and
``key``, so one call serves every class of a shard); :func:`permute_reference` is the same
map written plainly for one position, the reference the kernel is tested against.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ROUNDS", "permute", "permute_reference"]

#: Feistel rounds (four make a pseudorandom permutation; two more for margin).
ROUNDS = 6

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _half_bits(n: int) -> int:
    """``h`` with ``4**h >= n`` (at least 1): each Feistel half holds ``h`` bits."""
    return max(1, (max(int(n) - 1, 1).bit_length() + 1) // 2)


def _mix(x: int) -> int:
    x = (x + _GOLDEN) & _MASK
    x = ((x ^ (x >> 30)) * _M1) & _MASK
    x = ((x ^ (x >> 27)) * _M2) & _MASK
    return x ^ (x >> 31)


def permute_reference(i: int, n: int, key: int) -> int:
    """Where ``i`` goes under the permutation of ``[0, n)`` keyed by ``key`` (plain Python).

    Example:
        >>> sorted(permute_reference(i, 5, 7) for i in range(5))
        [0, 1, 2, 3, 4]
    """
    h = _half_bits(n)
    mask = (1 << h) - 1
    x = i
    while True:
        left, right = x >> h, x & mask
        for r in range(ROUNDS):
            f = _mix(right ^ _mix((key + r) & _MASK)) & mask
            left, right = right, left ^ f
        x = (left << h) | right
        if x < n:
            return x


def _mix_array(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(_GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(_M1)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(_M2)
    return x ^ (x >> np.uint64(31))


def permute(i: np.ndarray, n: np.ndarray | int, key: np.ndarray | int) -> np.ndarray:
    """Where each ``i`` goes under the permutation of ``[0, n)`` keyed by ``key``; ``n`` and
    ``key`` are one value or one per position (then each position has its own domain).

    Args:
        i: Positions, each in ``[0, n)``.
        n: The domain's size (``>= 1``), one or one per position.
        key: The 64-bit key, one or one per position.

    Returns:
        The images, an ``int64`` array of the shape of ``i``.

    Example:
        >>> out = permute(np.arange(10), 10, 3)
        >>> sorted(out.tolist()) == list(range(10))
        True
        >>> int(out[4]) == permute_reference(4, 10, 3)
        True
    """
    positions = np.asarray(i, dtype=np.int64)
    shape = positions.shape
    current = positions.reshape(-1).astype(np.uint64)
    size = np.broadcast_to(np.asarray(n, dtype=np.int64), shape).reshape(-1)
    keys = np.broadcast_to(np.asarray(key, dtype=np.uint64), shape).reshape(-1)
    # h per position: half the bits of n - 1, rounded up (at least 1)
    span = np.maximum(size - 1, 1)
    bits = np.zeros(span.shape, dtype=np.int64)
    while (span >> bits).any():
        bits += (span >> bits) > 0
    shift = ((bits + 1) // 2).astype(np.uint64)
    mask = (np.uint64(1) << shift) - np.uint64(1)
    limit = size.astype(np.uint64)
    result = np.empty_like(current)
    todo = np.arange(current.shape[0])
    with np.errstate(over="ignore"):
        round_keys = [_mix_array(keys + np.uint64(r)) for r in range(ROUNDS)]
        while todo.size:  # cycle walking: again, for the values that landed outside [0, n)
            s, m, v = shift[todo], mask[todo], current[todo]
            left, right = v >> s, v & m
            for r in range(ROUNDS):
                f = _mix_array(right ^ round_keys[r][todo]) & m
                left, right = right, left ^ f
            v = (left << s) | right
            inside = v < limit[todo]
            result[todo[inside]] = v[inside]
            current[todo] = v
            todo = todo[~inside]
    return result.astype(np.int64).reshape(shape)
