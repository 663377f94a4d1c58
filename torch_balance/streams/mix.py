"""BalancedMix: one stream per class, mixed with the target counts of any strategy.

Many collections are already split by class (a folder or a set of shards per class). Mixing
them is mode 3: the plan of the class sizes fixes how many samples of each class one epoch
holds (``target_counts()``), a shuffled class sequence with exactly those counts says which
class comes next, and each class's stream supplies its next sample. The sequence is sharded
across ranks as ``DistributedSampler`` shards indices (padding repeats its start, or
``drop_last`` drops the tail), then dealt round-robin to the rank's DataLoader workers: every
rank emits ``ceil(K / R)`` samples (``floor`` with ``drop_last``), and on one rank the
epoch's per-class counts equal the plan.

Exhausted sources: with ``exhausted="cycle"`` (default) a class stream that runs out starts
again from its first shard (oversampling repeats it); with ``"stop"`` the epoch ends at the
first class stream that runs out, like ``interleave_datasets(stopping_strategy=
"first_exhausted")`` (a shorter, data-dependent epoch: one rank only).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from torch_balance._apportion import describe
from torch_balance._epoch import check_epoch
from torch_balance._rng import Stream, generator
from torch_balance._validation import Text, check_bool, check_int, fail
from torch_balance.labels import as_label_array
from torch_balance.labels.index import CountIndex
from torch_balance.sharding import current_ranks, iter_shard, shard_length
from torch_balance.strategies import Strategy, make_plan
from torch_balance.streams._shell import StreamShell, refuse_feedback
from torch_balance.streams.balanced import shard_order
from torch_balance.streams.sources import Shards, Slot, as_source, read_slot

__all__ = ["BalancedMix", "class_sequence"]


def class_sequence(
    targets: np.ndarray, seed: int, epoch: int, slot: Slot, drop_last: bool
) -> list[int]:
    """The class codes ``slot`` emits in ``epoch``: the epoch's shuffled class sequence
    (``targets[c]`` of class c), sharded by rank as ``DistributedSampler`` shards indices
    (:func:`~torch_balance.sharding.iter_shard`), then every ``num_workers``-th for the worker.

    Example:
        >>> sorted(class_sequence(np.array([3, 1]), 0, 0, Slot(), drop_last=False))
        [0, 0, 0, 1]
    """
    codes = torch.from_numpy(np.repeat(np.arange(targets.shape[0]), targets))
    order = torch.randperm(codes.shape[0], generator=generator(seed, Stream.STREAM_MIX, epoch))
    chunks = iter_shard(codes, order, slot.num_replicas, slot.rank, drop_last, helper=False)
    return list(itertools.chain.from_iterable(chunks))[slot.worker :: slot.num_workers]


class BalancedMix(StreamShell):
    """Mix one stream per class with the target counts of a strategy (mode 3).

    Args:
        sources_by_class: ``{class: source}``; each source is anything
            :class:`~torch_balance.BalancedIterableDataset` accepts (webdataset pipeline,
            Hugging Face ``IterableDataset``, :class:`~torch_balance.streams.Shards`, an
            iterable). Samples are emitted as the source makes them.
        strategy: Any strategy of :class:`~torch_balance.BalancedSampler` except ``Feedback``.
        counts: ``{class: samples}``; default ``len(source)`` where every source has one.
        sampling_strategy: imbalanced-learn's ``sampling_strategy`` for ``"over"``/``"under"``.
        num_samples: Epoch length for power strategies and schedules.
        exhausted: ``"cycle"`` or ``"stop"`` (see the module text).
        seed: Shared seed; must be the same on every rank.
        num_replicas: Number of ranks; default from ``torch.distributed`` (1 without).
        rank: This rank; default from ``torch.distributed`` (0 without).
        process_group: The data-parallel group (a ``ProcessGroup`` or a 1-D ``DeviceMesh``)
            whose ranks share the stream, read when the stream is built (DataLoader
            workers get its rank and size, not the group); default the default group.
        drop_last: ``floor(K / R)`` per rank instead of ``ceil(K / R)``.
        shuffle_shards: Read each class's shards in a new order every epoch and cycle.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For invalid values; the message names the fix.

    Example:
        >>> mix = BalancedMix({"cat": ["c0", "c1", "c2", "c3"], "dog": ["d0"]}, "over")
        >>> len(mix), mix.target_counts()
        (8, {'cat': 4, 'dog': 4})
        >>> sorted(mix)
        ['c0', 'c1', 'c2', 'c3', 'd0', 'd0', 'd0', 'd0']
    """

    def __init__(
        self,
        sources_by_class: Mapping[Any, Any],
        strategy: Strategy = "over",
        *,
        counts: Mapping[Any, int] | None = None,
        sampling_strategy: Any = "auto",
        num_samples: int | None = None,
        exhausted: str = "cycle",
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        process_group: Any = None,
        drop_last: bool = False,
        shuffle_shards: bool = True,
    ) -> None:
        self._open(seed, num_replicas, rank, drop_last, process_group)
        refuse_feedback(strategy)
        if not isinstance(sources_by_class, Mapping) or not sources_by_class:
            fail(
                "sources_by_class",
                "a dict {class: source} with at least one class",
                sources_by_class,
                kind=TypeError,
            )
        if exhausted not in ("cycle", "stop"):
            fail("exhausted", "'cycle' or 'stop'", exhausted)
        self.exhausted = exhausted
        self.shuffle_shards = check_bool("shuffle_shards", shuffle_shards)
        self.strategy = strategy
        self.sampling_strategy = sampling_strategy
        for key, source in sources_by_class.items():  # refused by name before counting
            as_source(source, f"sources_by_class[{key!r}]")
        as_label_array(list(sources_by_class), "sources_by_class")  # one kind of class key
        self.counts = _class_counts(sources_by_class, counts)
        index = CountIndex(self.counts)  # planned from the counts: no label vector is built
        self.classes = index.keys()
        self.sources: list[Shards] = [
            as_source(sources_by_class[k], f"sources_by_class[{k!r}]") for k in self.classes
        ]
        self._take_node_splits(self.sources)
        self.plan = make_plan(
            index, strategy, sampling_strategy=sampling_strategy, num_samples=num_samples
        )

    def target_counts(self, epoch: int | None = None) -> dict[Any, int]:
        """Per-class counts of one global epoch (all ranks together, before padding)."""
        epoch = self.epoch if epoch is None else check_epoch(epoch)
        return self.plan.as_dict(epoch)

    def __len__(self) -> int:
        """The number of samples one rank emits per epoch."""
        world, _ = current_ranks(*self._requested)
        return shard_length(self.plan.length, world, self.drop_last)

    def _settings(self) -> dict[str, Any]:
        return {
            "strategy": describe(self.strategy),
            "sampling_strategy": describe(self.sampling_strategy),
            "counts": describe(self.counts),
            "exhausted": self.exhausted,
        }

    def _emit(self, epoch: int, slot: Slot) -> Iterator[Any]:
        if self.exhausted == "stop" and slot.num_replicas > 1:
            fail(
                "exhausted",
                "'cycle' when num_replicas > 1",
                "stop",
                "'stop' ends each rank's epoch at a different point and DDP would hang",
            )
        sequence = class_sequence(self.plan.targets(epoch), self.seed, epoch, slot, self.drop_last)
        streams: dict[int, Iterator[Any]] = {}
        for code in sequence:
            stream = streams.get(code)
            if stream is None:
                stream = streams[code] = self._class_stream(code, epoch, slot)
            item = next(stream, _END)
            if item is _END:
                return
            yield item

    def _class_stream(self, code: int, epoch: int, slot: Slot) -> Iterator[Any]:
        source = self.sources[code]
        for cycle in itertools.count():
            order = shard_order(
                len(source.names), self.seed, epoch, code, cycle, shuffle=self.shuffle_shards
            )
            found = False
            for _, _, sample in read_slot(source, order, slot):
                found = True
                yield sample
            if self.exhausted == "stop":
                return
            if not found:
                fail(
                    f"sources_by_class[{self.classes[code]!r}]",
                    "samples for every reader (rank and DataLoader worker)",
                    Text(f"nothing for rank {slot.rank}, worker {slot.worker}"),
                    "Give the class more samples or shards, or use fewer workers or ranks",
                )


_END = object()


def _class_counts(sources: Mapping[Any, Any], counts: Mapping[Any, int] | None) -> dict[Any, int]:
    if counts is None:
        found = {}
        for key, source in sources.items():
            try:
                found[key] = len(source)
            except TypeError:
                fail(
                    "counts",
                    "{class: samples} for sources without len()",
                    None,
                    f"Pass counts=; the source of class {key!r} has no length",
                )
        counts = found
    if not isinstance(counts, Mapping) or set(counts) != set(sources):
        fail(
            "counts",
            f"a count for each class of sources_by_class ({sorted(sources, key=repr)[:5]})",
            counts,
        )
    return {k: check_int(f"counts[{k!r}]", counts[k], minimum=1) for k in sources}
