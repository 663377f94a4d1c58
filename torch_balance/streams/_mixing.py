"""One reader's pass over a mixture of streams: which source comes next, and when it ends.

Each reader (a DataLoader worker of a rank) reads its own part of every source (a balanced
stream's own split, or the shards :func:`~torch_balance.streams.sources.read_slot` gives it)
and picks the source of each sample i.i.d. by the shares
(:func:`~torch_balance.draws.mixtures.source_choices`, from ``(seed, STREAM_SOURCES, epoch,
rank, worker)``). When a source runs out, torchdata's ``MultiNodeWeightedSampler`` stop rules
(``StopCriteria``) decide:

* ``"cycle_until_all"``: the source starts again (its next cycle) and the pass ends once
  every source has run out at least once;
* ``"all"``: the source leaves the mix (the others' shares grow in proportion) and the pass
  ends when none is left: each sample of each source once;
* ``"first_exhausted"``: the pass ends there.

With ``epoch_length`` every source starts again whenever it runs out and the reader emits
its part of ``epoch_length`` exactly (the same on every rank).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from torch_balance._rng import Stream, generator
from torch_balance._validation import Text, fail
from torch_balance.draws.mixtures import source_choices
from torch_balance.streams._shell import StreamShell
from torch_balance.streams.sources import Shards, Slot, read_slot

__all__ = ["STOP_RULES", "MixedPass", "cycle_of", "quota"]

STOP_RULES = ("cycle_until_all", "all", "first_exhausted")
_BLOCK = 1024  # source choices drawn at a time


def cycle_of(
    source: Any, epoch: int, slot: Slot, cycle: int, order: list[int] | None
) -> Iterator[Any]:
    """This reader's samples of ``source`` in one cycle: a balanced stream's pass of ``epoch``
    for the reader (the same pass in every cycle: its draw is a function of its seed and the
    epoch), or the shards in ``order`` (a new order each cycle)."""
    if isinstance(source, StreamShell):
        return source._emit(epoch, slot)
    shards: Shards = source
    read = order if order is not None else list(range(len(shards.names)))
    return (sample for _, _, sample in read_slot(shards, read, slot))


class MixedPass:
    """One reader's pass: :meth:`run` yields the samples; ``emitted`` and ``cycles`` say per
    source what it has done so far."""

    def __init__(
        self,
        sources: list[Any],
        shares: list[float],
        orders: Callable[[int, int], list[int]],
        seed: int,
        epoch: int,
        slot: Slot,
        stop: str,
        names: list[Any],
    ) -> None:
        self.sources, self.shares, self.orders = sources, shares, orders
        self.seed, self.epoch, self.slot, self.stop, self.names = seed, epoch, slot, stop, names
        self.emitted = [0] * len(sources)
        self.cycles = [0] * len(sources)
        self.exhausted = [False] * len(sources)

    def _open(self, s: int) -> Iterator[Any]:
        cycle = self.cycles[s]
        order = None if isinstance(self.sources[s], StreamShell) else self.orders(s, cycle)
        return cycle_of(self.sources[s], self.epoch, self.slot, cycle, order)

    def run(self, forever: bool) -> Iterator[Any]:
        """The pass; with ``forever`` every source cycles and only the caller's cut ends it."""
        slot = self.slot
        g = generator(self.seed, Stream.STREAM_SOURCES, self.epoch, slot.rank, slot.worker)
        active = torch.tensor(self.shares, dtype=torch.float64)
        live = [s for s, p in enumerate(self.shares) if p > 0]
        streams: dict[int, Iterator[Any]] = {}
        in_cycle = [0] * len(self.sources)
        choices: list[int] = []
        while True:
            if not choices:
                choices = source_choices(active, _BLOCK, g).tolist()
                choices.reverse()
            s = choices.pop()
            stream = streams.get(s)
            if stream is None:
                stream = streams[s] = self._open(s)
            item = next(stream, _END)
            if item is not _END:
                self.emitted[s] += 1
                in_cycle[s] += 1
                yield item
                continue
            self.exhausted[s] = True  # source s has run out for this reader
            if not forever:
                if self.stop == "first_exhausted":
                    return
                if self.stop == "all":  # s leaves the mix; the others' shares grow
                    active[s] = 0.0
                    choices = []
                    if not bool((active > 0).any()):
                        return
                    continue
                if all(self.exhausted[i] for i in live):  # cycle_until_all
                    return
            if not in_cycle[s]:  # starting it again would never yield anything
                fail(
                    f"sources_by_class[{self.names[s]!r}]",
                    "samples for every reader (rank and DataLoader worker)",
                    Text(f"nothing for rank {slot.rank}, worker {slot.worker}"),
                    "Give the source more samples or shards, or use fewer workers or ranks",
                )
            self.cycles[s] += 1
            in_cycle[s] = 0
            streams[s] = self._open(s)
            choices.append(s)  # the pick stands: the source's next cycle gives the sample


_END = object()


def quota(epoch_length: int, slot: Slot) -> int:
    """This reader's part of ``epoch_length`` (a rank's samples, split among its workers)."""
    workers = slot.num_workers
    return epoch_length // workers + (slot.worker < epoch_length % workers)
