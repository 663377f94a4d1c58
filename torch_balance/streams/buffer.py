"""CopyBuffer: a bounded buffer that emits each held sample's copies spread out, in the class
mix of the pass (stratified interleaving), so that every prefix of a stream's pass is balanced.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from typing import Any

import torch

__all__ = ["RANDOM_BLOCK", "CopyBuffer"]

#: Uniforms drawn from a generator at a time by the buffer and the online rounding.
RANDOM_BLOCK = 4096


class _Held:
    """One class inside a :class:`CopyBuffer`: its held samples (each ``[sample, copies]``),
    the copies put and emitted so far, the random point of its next copy, its heap entry."""

    __slots__ = ("entries", "entry", "out", "point", "put", "total")

    def __init__(self, point: float, total: int) -> None:
        self.entries: list[list[Any]] = []
        self.put = 0
        self.out = 0
        self.point = point
        self.total = total  # copies of the class in the whole pass, where known (else 0)
        self.entry = -1  # the sequence number of its live heap entry (-1: none)


class CopyBuffer:
    """A bounded buffer that holds each sample once, with its copies still to emit, and emits
    the copies so that every stretch of its output follows the class mix.

    ``put(sample, copies, key)`` adds a sample of class ``key`` and, while ``size`` samples are
    held, emits one copy; ``drain`` empties it the same way. Which class a copy comes from is
    stratified interleaving: with ``p_k`` the copies of class ``k`` in the pass (``totals``,
    where the caller knows them) or else put so far, and ``e_k`` those emitted, the next copy
    is of the held class with the smallest ``(e_k + u_k) / p_k`` (``u_k`` uniform in [0, 1),
    drawn anew after each copy of the class). Every class has then emitted the same fraction
    of its copies, within about one copy, so any prefix of the output holds each class in
    proportion to ``p``; a class with nothing held waits, and catches up when its next sample
    comes. Within the class, the copy is of a held sample chosen uniformly at random (it
    leaves with its last copy), so the copies of one sample are spread out, not emitted in a
    row. (Emitting a held sample chosen uniformly instead, a sample with ``c`` copies would
    stay ``c`` times longer than one with a single copy, and the first stretch of a pass
    would hold mostly samples with few copies, the last mostly the oversampled ones.)

    At most ``size`` samples are held, however many copies they carry; each class costs one
    small record. Every choice comes from ``g``.

    Example:
        >>> buffer = CopyBuffer(2, torch.Generator().manual_seed(0))
        >>> out = [*buffer.put("a", 3, 0), *buffer.put("b", 1, 1), *buffer.drain()]
        >>> sorted(out)
        ['a', 'a', 'a', 'b']
    """

    def __init__(
        self, size: int, g: torch.Generator, totals: Mapping[Any, int] | None = None
    ) -> None:
        self.size = size
        self._g = g
        self._totals = dict(totals or {})
        self._held = 0  # samples held, all classes
        self._classes: dict[Any, _Held] = {}
        self._heap: list[tuple[float, int, _Held]] = []
        self._entries = 0  # sequence numbers of heap entries
        self._random: list[float] = []
        self._last: list[Any] | None = None  # the entry of the copy emitted last
        self._out = 0  # copies emitted
        self._weight = sum(self._totals.values())  # the sum of every class's p_k

    def __len__(self) -> int:
        return self._held

    def _refill(self) -> None:
        """More uniforms, behind those left (popped from the end, in the generator's order)."""
        block = torch.rand(RANDOM_BLOCK, generator=self._g, dtype=torch.float64).tolist()
        block.reverse()
        self._random[:0] = block

    def _uniform(self) -> float:
        if not self._random:
            self._refill()
        return self._random.pop()

    def _schedule(self, held: _Held) -> None:
        """(Re)enter ``held`` in the heap at its new value; an older entry of it goes stale."""
        self._entries += 1
        held.entry = self._entries
        share = (held.out + held.point) / (held.total or held.put)
        heapq.heappush(self._heap, (share, self._entries, held))
        if len(self._heap) > 2 * len(self._classes) + 64:  # drop the stale entries
            self._heap = [e for e in self._heap if e[2].entry == e[1]]
            heapq.heapify(self._heap)

    def _behind(self, held: _Held) -> bool:
        """Whether ``held`` has emitted more than two copies fewer than its share so far."""
        return (held.out + 2) * self._weight < self._out * (held.total or held.put)

    def _pop(self) -> _Held | None:
        """The held class with the smallest value, out of the heap (None: nothing held)."""
        heap = self._heap
        while heap:
            _, number, held = heapq.heappop(heap)
            if held.entry == number:
                return held
        return None

    def _one(self) -> Any:
        """One copy out (the buffer holds some): of a held sample of the class with the
        smallest value, chosen uniformly (not the one emitted last if the class has another);
        then the class at its new value, by replacing its entry at the heap's top."""
        random = self._random
        if len(random) < 3:
            self._refill()
        heap = self._heap
        while heap[0][2].entry != heap[0][1]:  # stale entries of a class re-entered since
            heapq.heappop(heap)
        held = heap[0][2]
        entries, last, on_top = held.entries, self._last, True
        if len(entries) == 1 and entries[0] is last and self._behind(held):
            # a class catching up after a wait, whose one sample came out just before: the
            # next class goes first, so that it catches up with its copies spread out, at
            # most every other one, not one sample many times in a row
            heapq.heappop(heap)
            held.entry, on_top = -1, False
            other = self._pop()
            if other is not None:
                self._schedule(held)
                held, entries = other, other.entries
        n = len(entries)
        i = int(random.pop() * n)
        entry = entries[i]
        if entry is last and n > 1:  # another of the class's samples
            i = (i + 1 + int(random.pop() * (n - 1))) % n
            entry = entries[i]
        self._last = entry
        entry[1] -= 1
        if not entry[1]:
            entries[i] = entries[-1]
            entries.pop()
            self._held -= 1
        out = held.out = held.out + 1
        self._out += 1
        point = held.point = random.pop()
        if not entries:
            if on_top:
                heapq.heappop(heap)
            held.entry = -1
        elif on_top:  # the common case: one heap operation
            number = held.entry = self._entries = self._entries + 1
            heapq.heapreplace(heap, ((out + point) / (held.total or held.put), number, held))
        else:
            self._schedule(held)
        return entry[0]

    def put(self, sample: Any, copies: int, key: Any = None) -> Iterator[Any]:
        """Add ``sample`` of class ``key`` with ``copies`` to emit; yield what leaves."""
        if copies > 0:
            held = self._classes.get(key)
            if held is None:
                held = self._classes[key] = _Held(self._uniform(), self._totals.get(key, 0))
            held.entries.append([sample, copies])
            held.put += copies
            if not held.total:
                self._weight += copies
            self._held += 1
            self._schedule(held)
        while self._held >= self.size:
            yield self._one()

    def add(self, key: Any, copies: int) -> bool:
        """Add ``copies`` to a held sample of class ``key`` (chosen uniformly at random), if the
        buffer holds one; return whether it did."""
        held = self._classes.get(key)
        if held is None or not held.entries or copies <= 0:
            return False
        held.entries[int(self._uniform() * len(held.entries))][1] += copies
        held.put += copies
        if not held.total:
            self._weight += copies
        self._schedule(held)
        return True

    def drain(self) -> Iterator[Any]:
        """Emit every copy still held."""
        while self._held:
            yield self._one()
