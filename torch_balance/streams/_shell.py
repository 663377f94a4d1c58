"""The shell every balanced stream shares: seed, epoch, readers, resume.

A stream's pass is a pure function of (seed, epoch, rank, worker) and the data: the subclass
writes ``_emit(epoch, slot)``, the samples of one reader's whole pass, and this shell adds

* the epoch, kept in shared memory (:class:`~torch_balance._shared_epoch.SharedEpoch`) so that
  DataLoader workers, persistent ones too, see ``set_epoch`` at their next pass;
* which reader this is (:func:`~torch_balance.streams.sources.current_slot`);
* ``state_dict`` / ``load_state_dict`` on the samplers' own
  :class:`~torch_balance._epoch_state.EpochState` (one resume machine, one counter): where a
  reader stands is ``(epoch, position)``, the position counting the samples that this
  worker slot has emitted on every rank together (``emitted * num_replicas``, as a sampler
  counts its global position). Resuming replays the pass and drops what was emitted already:
  the samples are read again (the data is never part of a checkpoint), so a resumed pass
  emits exactly what the interrupted one would have emitted next. ``StatefulDataLoader``
  keeps one state per worker and hands each worker its own; worker ``w`` emits as many
  samples on every rank, so a state saved on one rank loads on every rank of the same world
  (Lightning saves rank 0's) and continues that rank's pass. A state past the pass's end is
  refused; one saved at the end of epoch ``e`` continues with ``e + 1`` (after
  ``set_epoch(e)``: the rest of ``e``, nothing), as a sampler's does. States saved before
  positions (a count named ``emitted``) still load;
* one warning when a second pass starts at the same epoch with no ``set_epoch`` (or
  ``load_state_dict``) in between: it would repeat the first pass's draw.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from typing import Any

from torch.utils.data import IterableDataset

from torch_balance._collective import check_group, group_ranks
from torch_balance._epoch_state import EpochState, Key, Pass, check_epoch
from torch_balance._shared_epoch import SharedEpoch
from torch_balance._validation import Text, check_bool, check_seed, fail
from torch_balance.feedback import Feedback
from torch_balance.sharding import check_replicas
from torch_balance.streams.sources import Shards, Slot, current_slot

__all__ = ["StreamShell", "refuse_feedback"]


def refuse_feedback(strategy: Any) -> None:
    """A stream's plan must be fixed when it is built: DataLoader workers hold copies of the
    stream that would never see a :class:`~torch_balance.Feedback`'s updates."""
    if isinstance(strategy, Feedback):
        fail(
            "strategy",
            "a strategy whose targets are fixed at construction",
            Text("a Feedback"),
            "DataLoader workers hold copies of a stream that would not see its updates: use "
            "BalancedSampler(..., Feedback(...)) with a map-style dataset",
        )


def _refuse_split(split: tuple[int, int], ranks: str) -> None:
    world, rank = split
    fail(
        "source",
        f"a dataset split for this stream's ranks ({ranks})",
        Text(f"one that split_dataset_by_node split for rank {rank} of {world}"),
        "Pass the dataset before split_dataset_by_node (the stream splits by rank and "
        f"DataLoader worker itself), or num_replicas={world}, rank={rank}",
    )


#: The length of a pass that is known only by reading it (mode 2 without ``epoch_length``).
_OPEN_ENDED = 2**62


def _closable(items: Iterator[Any]) -> Iterator[Any]:
    """``items`` as a generator (one that ``close()`` ends, as a pass's iterator was)."""
    yield from items


class StreamShell(IterableDataset):
    """Seed, epoch, readers and resume for a balanced stream (see the module text)."""

    seed: int
    drop_last: bool
    _requested: tuple[int | None, int | None]

    def _open(
        self, seed: Any, num_replicas: Any, rank: Any, drop_last: Any, process_group: Any
    ) -> None:
        self.seed = check_seed(seed)
        self.drop_last = check_bool("drop_last", drop_last)
        self._requested = check_replicas(num_replicas, rank)
        group = check_group(process_group)
        if group is not None:
            # DataLoader workers get a copy of the stream, and a group does not travel to a
            # spawned worker: its size and this process's rank in it are read now
            size, me = group_ranks(group)
            given = self._requested
            self._requested = check_replicas(
                size if given[0] is None else given[0], me if given[1] is None else given[1]
            )
        # the epoch, in shared memory: each DataLoader worker iterates its own copy of the
        # stream, and set_epoch is called on the main process's
        self._epoch = SharedEpoch()
        # epoch + 1 of the last pass that worker 0 began since set_epoch / load_state_dict
        # (0: none), and whether the repeated-pass warning was given; shared, like the epoch
        self._begun = SharedEpoch()
        self._warned = SharedEpoch()
        # the pass under way, resume and saved states: the samplers' machine, per reader
        self._state = EpochState(self.seed, type(self).__name__)
        self._node_split: tuple[int, int] | None = None  # see _take_node_splits

    @property
    def epoch(self) -> int:
        """The epoch of the next pass (or of the one under way)."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch of the next pass; call it at the start of every epoch (under a
        trainer, :mod:`torch_balance.integrations`' ``SetEpochCallback`` does)."""
        epoch = check_epoch(epoch)
        self._epoch.set(epoch)
        self._begun.set(0)
        self._state.set_epoch(epoch)

    def slot(self) -> Slot:
        """The reader this process is now: rank and DataLoader worker."""
        slot = current_slot(self._requested)
        split = self._node_split
        if split is not None and split != (slot.num_replicas, slot.rank):
            _refuse_split(split, f"rank {slot.rank} of {slot.num_replicas}")
        return slot

    def _take_node_splits(self, sources: list[Shards]) -> None:
        """Note the rank a source was split for by its own library (it is read whole): the
        stream must run as that rank; ranks given that differ are refused here."""
        splits = {s.node_split for s in sources if s.node_split is not None}
        if len(splits) > 1:
            fail(
                "source",
                "sources split by node for one rank",
                Text(", ".join(f"rank {r} of {w}" for w, r in sorted(splits))),
                "Pass the datasets before split_dataset_by_node",
            )
        self._node_split = splits.pop() if splits else None
        world, rank = self._requested
        split = self._node_split
        if split is not None and (world not in (None, split[0]) or rank not in (None, split[1])):
            _refuse_split(split, f"num_replicas={world}, rank={rank}")

    def _emit(self, epoch: int, slot: Slot) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _pass_length(self, epoch: int, slot: Slot) -> int | None:
        """Samples ``slot`` emits in ``epoch``, where that is known before reading (else None)."""
        return None

    def _global_length(self, epoch: int, slot: Slot) -> int:
        """The positions of ``slot``'s worker over every rank in ``epoch``: its pass length
        times the ranks (an open end where the length is known only by reading)."""
        length = self._pass_length(epoch, slot)
        return _OPEN_ENDED if length is None else length * slot.num_replicas

    def _sync(self) -> None:
        """Begin at the shared epoch: ``set_epoch`` may have been called on another process's
        copy of the stream (the main process's, for a DataLoader worker), and a pass is never
        moved on to the next epoch by itself (workers could not agree when)."""
        epoch = self._epoch.get()
        if self._state.epoch != epoch:
            self._state.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        """Yield this reader's samples of the current epoch (from where a loaded state stood)."""
        slot = self.slot()
        self._sync()
        epoch = self._epoch.get()
        self._note_pass(epoch, slot)
        world = slot.num_replicas
        current = self._state.begin(self._global_length(epoch, slot), world, False)
        items = self._emit(epoch, slot)
        skip = current.start // world
        if skip:
            items = self._replayed(items, skip)
        return _closable(self._state.run(current, self._chunks(items, current)))

    @staticmethod
    def _chunks(items: Iterator[Any], current: Pass) -> Iterator[list[Any]]:
        """One chunk per sample (a stream is read as it goes); a pass of open length learns
        its length at its end."""
        for item in items:
            yield [item]
        if current.global_length == _OPEN_ENDED:
            current.length = current.base + current.size
            current.global_length = current.start + current.length * current.world

    def _note_pass(self, epoch: int, slot: Slot) -> None:
        """Warn once when a pass begins at the epoch of the last one, with no ``set_epoch``.

        Warn, rather than advance the epoch by itself: the workers of one pass begin at the
        same time, each in its own process with its own copy of the stream and no barrier
        between them, so which of them would see an advance made by another is a race, and
        the epoch (hence the draw, the order and every resume) must be a function of what the
        trainer did, not of timing. Nor can a pass's end be seen: only workers see their end,
        each its own, and a pass cut short (``max_steps``, ``limit_train_batches``, a
        ``break``) has none. Repeating an epoch on purpose stays silent: call ``set_epoch``
        with the same number. Worker 0 alone checks, so the workers of one pass count once.
        """
        if slot.worker != 0:
            return
        if self._begun.get() == epoch + 1 and not self._warned.get():
            self._warned.set(1)
            name = type(self).__name__
            warnings.warn(
                f"{name}: a second pass started at epoch {epoch} without set_epoch() since "
                f"the last one, so it repeats that pass's draw. Call {name}.set_epoch(epoch) "
                "before each epoch; under a trainer add the SetEpochCallback of "
                "torch_balance.integrations.lightning (Lightning) or "
                "torch_balance.integrations.huggingface (transformers.Trainer). To repeat an "
                "epoch on purpose, call set_epoch with the same epoch. (This warning is given "
                "once.)",
                UserWarning,
                stacklevel=3,
            )
        self._begun.set(epoch + 1)

    @staticmethod
    def _replayed(items: Iterator[Any], skip: int) -> Iterator[Any]:
        """Replay the first ``skip`` samples and drop them (what a resumed pass emitted)."""
        replayed = sum(1 for _ in itertools.islice(items, skip))
        if replayed < skip:  # a pass whose length is known only by reading it
            fail(
                f"state_dict[{Key.POSITION!r}]",
                f"at most {replayed} samples of this reader's pass, times num_replicas",
                skip,
                "Resume from a state saved by this stream, over the same data",
            )
        yield from items

    def _settings(self) -> dict[str, Any]:
        """What a saved state must agree on besides seed and readers (the data, the plan)."""
        return {}

    def _saved(self, slot: Slot) -> dict[str, Any]:
        """Everything a saved state must agree on: the readers and :meth:`_settings`."""
        # not the rank: worker w emits as many samples on every rank, so a reader's position
        # is the same on every rank of the world (Lightning saves rank 0's loader state only)
        return {
            "fingerprint": None,  # the data's, where it has one, is among the settings
            "num_workers": slot.num_workers,
            "worker": slot.worker,
            **self._settings(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Where this reader stands: its epoch and position in it (see the module text).

        Taken in a DataLoader worker (``StatefulDataLoader`` does), it is that worker's.
        """
        slot = self.slot()
        return self._state.state_dict(lambda _: self._saved(slot), slot.num_replicas)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next pass continues where that one stopped.

        Raises:
            TypeError: If ``state_dict`` is not a dict.
            ValueError: If it was saved by another kind of stream, with another seed, for
                other data or plan, by another worker, with other numbers of ranks or
                workers, or past the end of the pass. A state saved on another rank of the
                same world loads: it continues this rank's pass from the same position.
        """
        slot = self.slot()
        world = state_dict.get(Key.WORLD) if isinstance(state_dict, dict) else None
        if isinstance(state_dict, dict) and world != slot.num_replicas:
            fail(
                f"state_dict[{Key.WORLD!r}]",
                f"{slot.num_replicas!r}, as in this stream",
                world,
                "Resume with the same data, strategy, seed, ranks and DataLoader workers",
            )
        length = _OPEN_ENDED
        if isinstance(state_dict, dict) and Key.EPOCH in state_dict:
            length = self._global_length(check_epoch(state_dict[Key.EPOCH]), slot)
        self._state.load_state_dict(state_dict, lambda _: self._saved(slot), length)
        self._epoch.set(self._state.epoch)
        self._begun.set(0)
