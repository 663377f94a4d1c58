"""The shell every balanced stream shares: seed, epoch, readers, resume.

A stream's pass is a pure function of (seed, epoch, rank, worker) and the data: the subclass
writes ``_emit(epoch, slot)``, the samples of one reader's whole pass, and this shell adds

* the epoch, kept in shared memory (:class:`~torch_balance._epoch.SharedEpoch`) so that
  DataLoader workers, persistent ones too, see ``set_epoch`` at their next pass;
* which reader this is (:func:`~torch_balance.streams.sources.current_slot`);
* ``state_dict`` / ``load_state_dict``: where a reader stands is ``(epoch, samples emitted)``.
  Resuming replays the pass and drops what was emitted already: the samples are read again
  (the data is never part of a checkpoint), so a resumed pass emits exactly what the
  interrupted one would have emitted next. ``StatefulDataLoader`` keeps one state per
  worker and hands each worker its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from torch.utils.data import IterableDataset

from torch_balance._epoch import SharedEpoch, check_epoch
from torch_balance._validation import Text, check_bool, check_int, check_seed, fail
from torch_balance.sharding import check_replicas
from torch_balance.streams.sources import Slot, current_slot

__all__ = ["StreamShell", "refuse_feedback"]


def refuse_feedback(strategy: Any) -> None:
    """A stream's plan must be fixed when it is built: DataLoader workers hold copies of the
    stream that would never see a :class:`~torch_balance.Feedback`'s updates."""
    from torch_balance.feedback import Feedback

    if isinstance(strategy, Feedback):
        fail(
            "strategy",
            "a strategy whose targets are fixed at construction",
            Text("a Feedback"),
            "DataLoader workers hold copies of a stream that would not see its updates: use "
            "BalancedSampler(..., Feedback(...)) with a map-style dataset",
        )


class StreamShell(IterableDataset):
    """Seed, epoch, readers and resume for a balanced stream (see the module text)."""

    seed: int
    drop_last: bool
    _requested: tuple[int | None, int | None]

    def _open(self, *, seed: Any, num_replicas: Any, rank: Any, drop_last: Any) -> None:
        self.seed = check_seed(seed)
        self.drop_last = check_bool("drop_last", drop_last)
        self._requested = check_replicas(num_replicas, rank)
        self._epoch = SharedEpoch()
        self._resume: tuple[int, int] | None = None
        self._pass: list[int] | None = None  # [epoch, samples emitted] of the pass under way

    @property
    def epoch(self) -> int:
        """The epoch of the next pass (or of the one under way)."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch of the next pass; call it at the start of every epoch (under a
        trainer, :mod:`torch_balance.integrations`' ``SetEpochCallback`` does)."""
        epoch = check_epoch(epoch)
        self._epoch.set(epoch)
        self._pass = None
        if self._resume is not None and self._resume[0] != epoch:
            self._resume = None

    def slot(self) -> Slot:
        """The reader this process is now: rank and DataLoader worker."""
        return current_slot(self._requested)

    def _emit(self, epoch: int, slot: Slot) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        slot = self.slot()
        epoch = self._epoch.get()
        skip = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        self._resume = None
        current = [epoch, skip]
        self._pass = current
        items = self._emit(epoch, slot)
        if skip:
            items = itertools.islice(items, skip, None)  # replay what was emitted, dropped
        return self._counted(items, current)

    @staticmethod
    def _counted(items: Iterator[Any], current: list[int]) -> Iterator[Any]:
        for item in items:
            current[1] += 1
            yield item

    def _position(self) -> tuple[int, int]:
        if self._pass is not None:
            return self._pass[0], self._pass[1]
        if self._resume is not None:
            return self._resume
        return self._epoch.get(), 0

    def _settings(self) -> dict[str, Any]:
        """What a saved state must agree on besides seed and readers (the data, the plan)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Where this reader stands: its epoch and how many samples it has emitted in it.

        Taken in a DataLoader worker (``StatefulDataLoader`` does), it is that worker's.
        """
        slot = self.slot()
        epoch, emitted = self._position()
        return {
            "kind": type(self).__name__,
            "seed": self.seed,
            "epoch": epoch,
            "emitted": emitted,
            "num_replicas": slot.num_replicas,
            "rank": slot.rank,
            "num_workers": slot.num_workers,
            "worker": slot.worker,
            **self._settings(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next pass continues where that one stopped.

        Raises:
            TypeError: If ``state_dict`` is not a dict.
            ValueError: If it was saved by another kind of stream, with another seed, for
                other data or plan, or by another reader (rank, worker, their numbers).
        """
        if not isinstance(state_dict, dict):
            fail(
                "state_dict", "a dict from state_dict()", type(state_dict).__name__, kind=TypeError
            )
        missing = {"kind", "seed", "epoch", "emitted"} - set(state_dict)
        if missing:
            fail("state_dict", "a dict from state_dict()", f"a dict without {sorted(missing)}")
        expected = self.state_dict()
        for key in (
            "kind",
            "seed",
            *self._settings(),
            "num_replicas",
            "rank",
            "num_workers",
            "worker",
        ):
            if state_dict.get(key) != expected[key]:
                fail(
                    f"state_dict[{key!r}]",
                    f"{expected[key]!r}, as in this stream",
                    state_dict.get(key),
                    "Resume with the same data, strategy, seed, ranks and DataLoader workers",
                )
        epoch = check_epoch(state_dict["epoch"])
        emitted = check_int("state_dict['emitted']", state_dict["emitted"], minimum=0)
        self._epoch.set(epoch)
        self._resume = (epoch, emitted) if emitted else None
        self._pass = None
