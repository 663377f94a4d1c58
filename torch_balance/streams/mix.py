"""BalancedMix: streams mixed, one per class by a strategy's target counts, or sources by
proportions or temperature, each source optionally class-balanced inside.

Many collections are already split by class (a folder or a set of shards per class). Mixing
them is mode 3: the plan of the class sizes fixes how many samples of each class one epoch
holds (``target_counts()``), a shuffled class sequence with exactly those counts says which
class comes next, and each class's stream supplies its next sample. The sequence is sharded
across ranks as ``DistributedSampler`` shards indices (padding repeats its start, or
``drop_last`` drops the tail), then dealt round-robin to the rank's DataLoader workers: every
rank emits ``ceil(K / R)`` samples (``floor`` with ``drop_last``), and on one rank the
epoch's per-class counts equal the plan. No reader builds the sequence: a keyed
random-access permutation gives the class at each of its own positions
(:func:`class_codes`), so a reader's cost follows its own samples, not the epoch's ``K``.

Exhausted sources: with ``exhausted="cycle"`` (default) a class stream that runs out starts
again from its first shard (oversampling repeats it); with ``"stop"`` the epoch ends at the
first class stream that runs out, like ``interleave_datasets(stopping_strategy=
"first_exhausted")`` (a shorter, data-dependent epoch: one rank only, and no ``len()``).

**Mixing sources** (``proportions=`` or ``temperature=``): the sources are datasets, not
classes. Each can be a :class:`~torch_balance.BalancedIterableDataset` (balanced inside by its
own strategy) or any source ``BalancedIterableDataset`` accepts (taken as it is). Each reader
picks the source of each sample i.i.d. by the shares and stops by torchdata's rules
(``stop=``, see :mod:`torch_balance.streams._mixing`); ``epoch_length=`` fixes the samples
per rank instead (every source cycles), which more than one rank needs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from torch_balance._apportion import describe
from torch_balance._epoch import check_epoch
from torch_balance._rng import Stream, mix_seed
from torch_balance._validation import Text, check_bool, check_int, fail
from torch_balance.draws import permute
from torch_balance.labels import as_label_array
from torch_balance.labels.index import CountIndex
from torch_balance.mixtures import mixture_shares
from torch_balance.sharding import current_ranks, reader_positions, shard_length
from torch_balance.strategies import Strategy, make_plan
from torch_balance.streams._mixing import STOP_RULES, MixedPass, quota
from torch_balance.streams._shell import StreamShell, refuse_feedback
from torch_balance.streams.balanced import shard_order
from torch_balance.streams.sources import Shards, Slot, as_source, read_slot

__all__ = ["BalancedMix", "class_codes", "class_sequence"]


def class_codes(
    targets: np.ndarray, seed: int, epoch: int, slot: Slot, drop_last: bool
) -> Iterator[np.ndarray]:
    """The class codes ``slot`` emits in ``epoch``, a chunk at a time.

    The epoch is a sequence of ``K = sum(targets)`` positions, class c's ``targets[c]`` of
    them, shuffled: position ``p`` holds the class whose range of ``[0, K)`` contains
    ``perm(p)``, where ``perm`` is the epoch's keyed random-access permutation
    (:func:`~torch_balance.draws.permute.permute`, keyed by seed and epoch). The reader's
    positions are sharded by rank as ``DistributedSampler`` shards indices, then every
    ``num_workers``-th goes to the worker
    (:func:`~torch_balance.sharding.reader_positions`). Each reader evaluates its own
    positions only, in time of those and memory of one chunk plus the classes: the epoch's
    sequence is never built.

    Example:
        >>> chunks = class_codes(np.array([3, 1]), 0, 0, Slot(), drop_last=False)
        >>> sorted(np.concatenate(list(chunks)).tolist())
        [0, 0, 0, 1]
    """
    total = int(targets.sum())
    bounds = np.cumsum(targets)
    key = mix_seed(seed, Stream.STREAM_MIX_ORDER, epoch)
    positions = reader_positions(
        total, slot.num_replicas, slot.rank, drop_last, slot.worker, slot.num_workers
    )
    for chunk in positions:
        yield np.searchsorted(bounds, permute(chunk, total, key), side="right")


def class_sequence(
    targets: np.ndarray, seed: int, epoch: int, slot: Slot, drop_last: bool
) -> Iterator[int]:
    """:func:`class_codes` one code at a time, as Python ints.

    Example:
        >>> sorted(class_sequence(np.array([3, 1]), 0, 0, Slot(), drop_last=False))
        [0, 0, 0, 1]
    """
    for chunk in class_codes(targets, seed, epoch, slot, drop_last):
        yield from chunk.tolist()


class BalancedMix(StreamShell):
    """Mix one stream per class with the target counts of a strategy (mode 3), or mix sources
    by proportions or temperature, each optionally class-balanced inside.

    Args:
        sources_by_class: ``{class: source}``; each source is anything
            :class:`~torch_balance.BalancedIterableDataset` accepts (webdataset pipeline,
            Hugging Face ``IterableDataset``, :class:`~torch_balance.streams.Shards`, an
            iterable). Samples are emitted as the source makes them. With ``proportions`` or
            ``temperature``: the sources to mix, a list or a dict ``{name: source}``, each
            such a source or a ``BalancedIterableDataset`` (balanced by its own strategy; a
            source that starts again repeats its pass of the epoch).
        strategy: Any strategy of :class:`~torch_balance.BalancedSampler` except ``Feedback``;
            default ``"over"``. None when mixing sources (each balances itself).
        proportions: Mixing sources: one weight ``>= 0`` per source (normalised).
        temperature: Mixing sources: ``T > 0``, shares ``∝ n_s ** (1 / T)`` over the sizes
            (``counts``).
        stop: Mixing sources: ``"cycle_until_all"`` (default), ``"all"`` or
            ``"first_exhausted"``, torchdata's ``StopCriteria``.
        epoch_length: Mixing sources: samples per rank and epoch (every source cycles); needed
            with more than one rank. Default: the stop rule ends the pass.
        counts: ``{class: samples}``; default ``len(source)`` where every source has one.
            Mixing sources: each source's size (a list or a dict by name), for
            ``temperature``; default ``len(source)`` (a balanced stream's global epoch).
        sampling_strategy: imbalanced-learn's ``sampling_strategy`` for ``"over"``/``"under"``.
        num_samples: Epoch length for power strategies and schedules.
        exhausted: ``"cycle"`` or ``"stop"`` (see the module text; ``"stop"`` has no
            ``len()``: the data ends its pass).
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
        >>> web, books = [f"w{i}" for i in range(6)], ["b0", "b1"]
        >>> mixed = BalancedMix([web, books], proportions=[1, 1], stop="all")
        >>> sorted(mixed)
        ['b0', 'b1', 'w0', 'w1', 'w2', 'w3', 'w4', 'w5']
    """

    def __init__(
        self,
        sources_by_class: Any,
        strategy: Strategy | None = None,
        *,
        proportions: Any = None,
        temperature: float | None = None,
        stop: str | None = None,
        epoch_length: int | None = None,
        counts: Any = None,
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
        self.counts: dict[Any, int] | None
        self.shuffle_shards = check_bool("shuffle_shards", shuffle_shards)
        self.mixing = proportions is not None or temperature is not None
        self._last: MixedPass | None = None
        if self.mixing:
            self._open_sources(sources_by_class, proportions, temperature, stop, counts)
            self._refuse_in_source_mode(strategy, sampling_strategy, num_samples, exhausted)
            if counts is not None and temperature is None:
                fail(
                    "counts",
                    "None with proportions= (the sizes set only temperature= shares)",
                    Text(type(counts).__name__),
                )
            if self.drop_last:
                fail(
                    "drop_last",
                    "False when mixing sources (epoch_length fixes each rank's samples)",
                    True,
                )
            self.epoch_length = check_int("epoch_length", epoch_length, minimum=1, allow_none=True)
            if self.epoch_length is not None and self.stop != "cycle_until_all":
                fail(
                    "stop",
                    "'cycle_until_all' with epoch_length (every source cycles to fill it)",
                    stop,
                    "Leave out epoch_length for a pass that the stop rule ends",
                )
            return
        for name, value in (("stop", stop), ("epoch_length", epoch_length)):
            if value is not None:
                fail(
                    name,
                    "None for one stream per class (exhausted= says what a class does at its end)",
                    value,
                    "Pass proportions= or temperature= to mix sources",
                )
        strategy = "over" if strategy is None else strategy
        refuse_feedback(strategy)
        if not isinstance(sources_by_class, Mapping) or not sources_by_class:
            fail(
                "sources_by_class",
                "a dict {class: source} with at least one class",
                sources_by_class,
                "Or pass proportions= or temperature= to mix a list of sources",
                kind=TypeError,
            )
        if exhausted not in ("cycle", "stop"):
            fail("exhausted", "'cycle' or 'stop'", exhausted)
        self.exhausted = exhausted
        self.strategy = strategy
        self.sampling_strategy = sampling_strategy
        for key, source in sources_by_class.items():  # refused by name before counting
            as_source(source, f"sources_by_class[{key!r}]")
        as_label_array(list(sources_by_class), "sources_by_class")  # one kind of class key
        class_counts = self.counts = _class_counts(sources_by_class, counts)
        index = CountIndex(class_counts)  # planned from the counts: no label vector is built
        self.classes = index.keys()
        self.sources: list[Shards] = [
            as_source(sources_by_class[k], f"sources_by_class[{k!r}]") for k in self.classes
        ]
        self._take_node_splits(self.sources)
        self.plan = make_plan(
            index, strategy, sampling_strategy=sampling_strategy, num_samples=num_samples
        )

    def _open_sources(
        self, sources: Any, proportions: Any, temperature: Any, stop: Any, counts: Any
    ) -> None:
        """Mixing sources: the sources, their names, sizes and shares, the stop rule."""
        if isinstance(sources, Mapping):
            names, given = list(sources), list(sources.values())
        elif isinstance(sources, list | tuple):
            names, given = list(range(len(sources))), list(sources)
        else:
            fail(
                "sources_by_class",
                "a list or a dict {name: source} of sources to mix",
                Text(type(sources).__name__),
                kind=TypeError,
            )
        if not given:
            fail("sources_by_class", "at least one source to mix", sources)
        for n, s in zip(names, given, strict=True):
            if isinstance(s, Mapping):  # iterating it would yield its keys as the samples
                fail(
                    f"sources_by_class[{n!r}]",
                    "a source of samples (an iterable, shards or a stream)",
                    Text(f"a {type(s).__name__}"),
                    "A dict is not a stream of samples: pass the dataset or its shards",
                    kind=TypeError,
                )
        self.names = names
        self.mixed: list[Any] = [
            s if isinstance(s, StreamShell) else as_source(s, f"sources_by_class[{n!r}]")
            for n, s in zip(names, given, strict=True)
        ]
        # a balanced stream's own source counts too: one split by node must be this rank's
        inner = [getattr(s, "source", s) for s in self.mixed]
        self._take_node_splits([s for s in inner if isinstance(s, Shards)])
        if stop is not None and (not isinstance(stop, str) or stop not in STOP_RULES):
            kind = ValueError if isinstance(stop, str) else TypeError
            fail("stop", " or ".join(repr(r) for r in STOP_RULES), stop, kind=kind)
        self.stop: str = "cycle_until_all" if stop is None else stop
        self.counts = None if temperature is None else _source_sizes(names, given, counts)
        sizes = [1] * len(names) if self.counts is None else list(self.counts.values())
        self.shares: list[float] = mixture_shares(sizes, proportions, temperature).tolist()

    def _refuse_in_source_mode(
        self, strategy: Any, sampling_strategy: Any, num_samples: Any, exhausted: Any
    ) -> None:
        given = {
            "strategy": (strategy, None),
            "sampling_strategy": (sampling_strategy, "auto"),
            "num_samples": (num_samples, None),
            "exhausted": (exhausted, "cycle"),
        }
        for name, (value, default) in given.items():
            if not (value is default or (isinstance(value, str) and value == default)):
                fail(
                    name,
                    f"{default!r} when mixing sources (proportions= or temperature=)",
                    value,
                    "Balance a source inside with BalancedIterableDataset(source, strategy); "
                    "stop= says what a source does at its end",
                )

    def target_counts(self, epoch: int | None = None) -> dict[Any, int]:
        """Per-class counts of one global epoch (all ranks together, before padding).

        Raises:
            ValueError: When mixing sources (their shares are ``target_shares()``).
        """
        epoch = self.epoch if epoch is None else check_epoch(epoch)
        if self.mixing:
            fail(
                "target_counts",
                "one stream per class",
                Text("a mix of sources"),
                "Read target_shares() for the sources' shares, stats() for a pass",
            )
        return self.plan.as_dict(epoch)

    def target_shares(self) -> dict[Any, float]:
        """Mixing sources: each source's share, by name (position for a list)."""
        if not self.mixing:
            classes = self.target_counts()
            total = sum(classes.values())
            return {k: v / total for k, v in classes.items()}
        return dict(zip(self.names, self.shares, strict=True))

    def stats(self) -> dict[str, Any]:
        """Mixing sources: what the last pass in this process emitted from each source.

        Returns:
            ``emitted`` (per source), ``cycles`` (restarts per source), ``exhausted`` (which
            ran out), ``target_share`` and ``realised_share`` (per source) and
            ``total_variation`` between them; ``{}`` before a pass.
        """
        last = self._last
        if last is None:
            return {}
        total = max(sum(last.emitted), 1)
        realised = {n: e / total for n, e in zip(self.names, last.emitted, strict=True)}
        target = self.target_shares()
        return {
            "emitted": dict(zip(self.names, last.emitted, strict=True)),
            "cycles": dict(zip(self.names, last.cycles, strict=True)),
            "exhausted": dict(zip(self.names, last.exhausted, strict=True)),
            "target_share": target,
            "realised_share": realised,
            "total_variation": 0.5 * sum(abs(realised[n] - target[n]) for n in self.names),
        }

    def __len__(self) -> int:
        """The number of samples one rank emits per epoch.

        Raises:
            TypeError: Where a pass has no length known before it is read: a mix of sources
                without ``epoch_length`` (its stop rule ends the pass), or one stream per
                class with ``exhausted="stop"`` (the first class that runs out ends it). A
                DataLoader over such a stream has no ``len()`` either, as over any
                open-ended ``IterableDataset``; trainers then run each epoch to its end.
        """
        world, _ = current_ranks(*self._requested)
        if self.mixing:
            if self.epoch_length is None:
                raise TypeError(
                    "len(BalancedMix): a mix of sources without epoch_length has no length "
                    "(its stop rule ends the pass); pass epoch_length= for a fixed one"
                )
            return self.epoch_length
        if self.exhausted == "stop":
            raise TypeError(
                "len(BalancedMix): exhausted='stop' has no length (the first class stream "
                "that runs out ends the pass); pass exhausted='cycle' for a fixed one"
            )
        return shard_length(self.plan.length, world, self.drop_last)

    def _pass_length(self, epoch: int, slot: Slot) -> int | None:
        if self.mixing and self.epoch_length is not None:
            return quota(self.epoch_length, slot)
        return None

    def _settings(self) -> dict[str, Any]:
        if self.mixing:
            return {
                "sources": [describe(n) for n in self.names],
                "shares": list(self.shares),
                "stop": self.stop,
                "epoch_length": self.epoch_length,
            }
        return {
            "strategy": describe(self.strategy),
            "sampling_strategy": describe(self.sampling_strategy),
            "counts": describe(self.counts),
            "exhausted": self.exhausted,
        }

    def _emit(self, epoch: int, slot: Slot) -> Iterator[Any]:
        if self.mixing:
            return self._emit_mixed(epoch, slot)
        return self._emit_classes(epoch, slot)

    def _emit_mixed(self, epoch: int, slot: Slot) -> Iterator[Any]:
        length = self.epoch_length
        if length is None and slot.num_replicas > 1:
            fail(
                "epoch_length",
                "a fixed number of samples per rank when num_replicas > 1",
                None,
                "Without one, each rank's stop rule would end its pass at another point and "
                "DDP would hang",
            )

        def order(s: int, cycle: int) -> list[int]:
            names = self.mixed[s].names
            return shard_order(len(names), self.seed, epoch, s, cycle, shuffle=self.shuffle_shards)

        mixed = MixedPass(
            self.mixed, self.shares, order, self.seed, epoch, slot, self.stop, self.names
        )
        self._last = mixed
        items = mixed.run(forever=length is not None)
        return items if length is None else itertools.islice(items, quota(length, slot))

    def _emit_classes(self, epoch: int, slot: Slot) -> Iterator[Any]:
        if self.exhausted == "stop" and slot.num_replicas > 1:
            fail(
                "exhausted",
                "'cycle' when num_replicas > 1",
                "stop",
                "'stop' ends each rank's epoch at a different point and DDP would hang",
            )
        targets = self.plan.targets(epoch)
        streams: dict[int, Iterator[Any]] = {}
        for chunk in class_codes(targets, self.seed, epoch, slot, self.drop_last):
            for code in chunk.tolist():
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


def _source_sizes(names: list[Any], sources: list[Any], counts: Any) -> dict[Any, int]:
    """Each source's size for ``temperature``: ``counts`` (a list or a dict by name), else
    ``len(source)``, a balanced stream's being its global epoch (its plan's length)."""
    if counts is not None:
        if isinstance(counts, Mapping):
            if set(counts) != set(names):
                fail("counts", f"a size for each source ({names[:5]})", counts)
            values = [counts[n] for n in names]
        elif isinstance(counts, list | tuple) and len(counts) == len(names):
            values = list(counts)
        else:
            fail("counts", f"{len(names)} sizes, one per source (a list or a dict)", counts)
        return {
            n: check_int(f"counts[{n!r}]", v, minimum=1) for n, v in zip(names, values, strict=True)
        }
    found = {}
    for name, source in zip(names, sources, strict=True):
        plan = getattr(source, "plan", None)
        try:
            found[name] = plan.length if plan is not None else len(source)
        except TypeError:
            fail(
                "counts",
                "each source's size for temperature= (sources without len())",
                None,
                f"Pass counts=; source {name!r} has no length",
            )
    return {n: check_int(f"counts[{n!r}]", v, minimum=1) for n, v in found.items()}


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
