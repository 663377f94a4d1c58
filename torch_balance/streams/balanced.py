"""BalancedIterableDataset: over- and undersampling for streams, exact or online.

**Mode 1, labels known up front** (``manifest=``): an epoch is drawn exactly as
:class:`~torch_balance.BalancedSampler` draws it (same plan, same walk, same seed), then
turned into a copy count per sample (:func:`epoch_copies`). Each reader reads only its
shards and emits every sample its planned number of times through a :class:`CopyBuffer`.

**Mode 2, labels seen as the stream flows** (no manifest): running class counts ``n``
(optionally primed with ``priors``) give, through the same strategies, a ratio per class
``r_c = t_c(n) / n_c`` (target over available). After ``s_c`` samples of class c have been
read, ``r_c * s_c`` copies of them should have been emitted: each new sample of class c is
emitted ``floor(r_c * s_c - e_c + u)`` times (``e_c`` emitted so far, ``u`` uniform), which
is rejection for ``r_c < 1`` and repeated copies for ``r_c > 1``, and the error never
accumulates. The ratios are refreshed as the counts grow (every 10% of the samples read, at
least every 16, and when a class first appears).

**One fixed length per rank** (so DDP never hangs; webdataset's ``with_epoch`` makes the same
promise by cutting or repeating): in mode 1 a rank emits ``ceil(K / R)`` samples (``floor``
with ``drop_last``) for a plan of ``K``, as ``DistributedSampler`` pads. Its workers share
that in proportion to what their shards hold in the plan; a worker whose share is below what
its shards plan stops early (the rest is cut), one above it adds copies of its own planned
samples, drawn at random (the pad). On one rank nothing is cut or padded and the epoch's
per-class counts equal :meth:`~BalancedIterableDataset.target_counts` exactly. In mode 2 the
length is ``epoch_length`` per rank, split evenly among workers; a reader that reaches the end
of its shards starts them again.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from torch_balance._epoch import check_epoch
from torch_balance._rng import Stream, generator
from torch_balance._validation import Text, check_bool, check_int, fail
from torch_balance.draws import WalkCache, draw_epoch
from torch_balance.labels.index import CountIndex
from torch_balance.labels.kinds import SINGLE, LabelProblem
from torch_balance.sharding import current_ranks, shard_length
from torch_balance.strategies import Plan, Strategy, apportion, describe, make_plan
from torch_balance.streams._shell import StreamShell, refuse_feedback
from torch_balance.streams.manifest import Manifest
from torch_balance.streams.sources import (
    Shards,
    Slot,
    as_source,
    by_shard,
    label_reader,
    read_slot,
    slot_part,
)

__all__ = [
    "BalancedIterableDataset",
    "CopyBuffer",
    "epoch_copies",
    "shard_order",
    "slot_samples",
]

_RANDOM_BLOCK = 4096


class CopyBuffer:
    """A bounded shuffle buffer that holds each sample once, with its copies still to emit.

    ``put`` adds a sample with ``copies`` and, while ``size`` samples are held, emits one copy
    of a held sample chosen uniformly at random (the sample leaves once its last copy is
    out); ``drain`` empties it the same way. At most ``size`` samples are ever held, however
    many copies they carry, and each copy is emitted at a random later point, so the copies
    of one sample are spread out, not emitted in a row. A sample with ``c`` copies stays about
    ``c * size`` emissions, so oversampled samples fill much of the buffer, and the drain at
    the end of a pass (about ``size`` times the mean copies held) leans towards them: the
    epoch's counts are exact, its last stretch is less mixed.

    Example:
        >>> buffer = CopyBuffer(2, torch.Generator().manual_seed(0))
        >>> out = [*buffer.put("a", 3), *buffer.put("b", 1), *buffer.drain()]
        >>> sorted(out)
        ['a', 'a', 'a', 'b']
    """

    def __init__(self, size: int, g: torch.Generator) -> None:
        self.size = size
        self._g = g
        self._held: list[list[Any]] = []
        self._random: list[float] = []

    def __len__(self) -> int:
        return len(self._held)

    def _one(self) -> Any:
        if not self._random:
            self._random = torch.rand(
                _RANDOM_BLOCK, generator=self._g, dtype=torch.float64
            ).tolist()
            self._random.reverse()
        held = self._held
        i = int(self._random.pop() * len(held))
        entry = held[i]
        entry[1] -= 1
        if entry[1] == 0:
            held[i] = held[-1]
            held.pop()
        return entry[0]

    def put(self, sample: Any, copies: int) -> Iterator[Any]:
        if copies > 0:
            self._held.append([sample, copies])
        while len(self._held) >= self.size:
            yield self._one()

    def drain(self) -> Iterator[Any]:
        while self._held:
            yield self._one()


def epoch_copies(
    plan: Plan, seed: int, epoch: int, *, replacement: bool = False, cache: WalkCache | None = None
) -> np.ndarray:
    """How many times each sample appears in ``BalancedSampler``'s epoch (same plan and seed).

    Example:
        >>> from torch_balance import BalancedSampler, make_plan
        >>> labels = [0, 0, 0, 1]
        >>> epoch_copies(make_plan(labels, "over"), 0, 0).tolist()
        [1, 1, 1, 3]
    """
    picks = draw_epoch(plan, seed, epoch, replacement=replacement, cache=cache)
    return np.bincount(picks.numpy(), minlength=len(plan.index)).astype(np.int64)


def shard_order(
    num_shards: int, seed: int, epoch: int, *keys: int, shuffle: bool = True
) -> list[int]:
    """The order shards are dealt out to readers in ``epoch`` (shuffled unless ``shuffle`` is
    False; the same on every rank and worker).

    Example:
        >>> shard_order(4, 0, 0, shuffle=False)
        [0, 1, 2, 3]
        >>> sorted(shard_order(4, 0, 0))
        [0, 1, 2, 3]
    """
    if not shuffle or num_shards == 1:
        return list(range(num_shards))
    g = generator(seed, Stream.STREAM_SHARDS, epoch, *keys)
    return torch.randperm(num_shards, generator=g).tolist()


def slot_samples(offsets: np.ndarray, order: list[int], slot: Slot) -> np.ndarray:
    """The samples (positions in the manifest) ``slot`` reads, in reading order.

    Example:
        >>> offsets = np.array([0, 2, 5])
        >>> slot_samples(offsets, [1, 0], Slot(0, 1, 0, 2)).tolist()
        [2, 3, 4]
        >>> slot_samples(offsets, [1, 0], Slot(0, 1, 0, 4)).tolist()
        [2, 1]
    """

    def run(shards: list[int]) -> np.ndarray:
        parts = [np.arange(offsets[s], offsets[s + 1], dtype=np.int64) for s in shards]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    if by_shard(len(order), slot):
        return run(slot_part(order, slot))
    return slot_part(run(order), slot)


def _pad(copies: np.ndarray, extra: int, g: torch.Generator) -> np.ndarray:
    """Add ``extra`` copies, chosen uniformly from the copies already planned (each planned
    copy at most once per round), so the pad keeps the reader's class mix."""
    total = int(copies.sum())
    rounds = -(-extra // total)
    picks = torch.cat([torch.randperm(total, generator=g) for _ in range(rounds)])[:extra]
    owner = np.repeat(np.arange(copies.shape[0]), copies)[picks.numpy()]
    return copies + np.bincount(owner, minlength=copies.shape[0])


class BalancedIterableDataset(StreamShell):
    """Over- or undersample a stream: WebDataset shards, a Hugging Face ``IterableDataset`` or
    any iterable of samples, across ranks and DataLoader workers (see the module text).

    Samples come out as the source makes them (after its ``.decode()``, ``.to_tuple()``...);
    an oversampled sample is the same object emitted again (augment after this stage, in
    your collate or model, to see copies differ).

    Args:
        source: A ``webdataset.WebDataset`` pipeline, a Hugging Face ``IterableDataset``,
            :class:`~torch_balance.streams.Shards`, or any iterable (one shard).
        strategy: Any strategy of :class:`~torch_balance.BalancedSampler` except ``Feedback``.
        sampling_strategy: imbalanced-learn's ``sampling_strategy`` for ``"over"``/``"under"``.
        manifest: Per shard, its labels in order (a :class:`Manifest`, a dict, or the path
            of a JSON index file): mode 1. ``None``: mode 2.
        label_fn: ``label_fn(sample) -> label``; default the second item of a tuple or the
            ``"label"``/``"cls"``/``"target"`` entry of a dict. Mode 2 reads labels with it;
            mode 1 checks every sample it reads against the manifest when it is given.
        num_samples: Epoch length for power strategies and schedules (mode 1).
        replacement: Draw each class i.i.d. with replacement (mode 1), as ``BalancedSampler``.
        buffer_size: Samples the shuffle buffer holds (each with all its copies).
        seed: Shared seed; must be the same on every rank.
        num_replicas: Number of ranks; default from ``torch.distributed`` (1 without).
        rank: This rank; default from ``torch.distributed`` (0 without).
        drop_last: Mode 1: ``floor(K / R)`` per rank instead of ``ceil(K / R)``.
        shuffle_shards: Deal shards to readers in a new order every epoch.
        priors: Mode 2: ``{class: count}`` known in advance, added to the running counts.
        epoch_length: Mode 2: samples per rank and epoch (required with more than one
            rank); default one pass over the source.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For invalid values; the message names the fix.

    Example:
        >>> data = [(f"img{i}", y) for i, y in enumerate([0, 0, 0, 0, 1])]
        >>> stream = BalancedIterableDataset(data, "over", manifest={"data": [0, 0, 0, 0, 1]})
        >>> len(stream), stream.target_counts()
        (8, {0: 4, 1: 4})
        >>> sorted(x for x, _ in stream)
        ['img0', 'img1', 'img2', 'img3', 'img4', 'img4', 'img4', 'img4']
    """

    def __init__(
        self,
        source: Any,
        strategy: Strategy = "over",
        *,
        sampling_strategy: Any = "auto",
        manifest: Manifest | Mapping[str, Any] | str | None = None,
        label_fn: Callable[[Any], Any] | None = None,
        num_samples: int | None = None,
        replacement: bool = False,
        buffer_size: int = 1000,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        shuffle_shards: bool = True,
        priors: Mapping[Any, int] | None = None,
        epoch_length: int | None = None,
    ) -> None:
        self._open(seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last)
        refuse_feedback(strategy)
        self.source: Shards = as_source(source)
        self.strategy = strategy
        self.sampling_strategy = sampling_strategy
        self.buffer_size = check_int("buffer_size", buffer_size, minimum=1)
        self.replacement = check_bool("replacement", replacement)
        self.shuffle_shards = check_bool("shuffle_shards", shuffle_shards)
        self._label_fn = label_fn
        self._read_label = label_reader(label_fn)
        self.manifest = _as_manifest(manifest)
        self._stats: dict[str, Any] = {}
        if self.manifest is not None:
            for name, value in (("priors", priors), ("epoch_length", epoch_length)):
                if value is not None:
                    fail(
                        name,
                        "None with a manifest (mode 1's epoch is the plan's)",
                        value,
                        "Leave it out, or drop the manifest for mode 2",
                    )
            self._check_shards(self.manifest)
            self.plan: Plan | None = make_plan(
                self.manifest.index,
                strategy,
                sampling_strategy=sampling_strategy,
                num_samples=num_samples,
            )
            self.priors: dict[Any, int] | None = None
            self.epoch_length: int | None = None
            self._walks = WalkCache()
            self._copies: tuple[int, np.ndarray] | None = None
        else:
            if num_samples is not None or replacement:
                fail(
                    "num_samples" if num_samples is not None else "replacement",
                    "their defaults without a manifest (mode 2 follows the stream)",
                    num_samples if num_samples is not None else replacement,
                    "Use epoch_length for the length of a mode 2 epoch",
                )
            self.epoch_length = check_int("epoch_length", epoch_length, minimum=1, allow_none=True)
            self.priors = _check_priors(priors)
            self.plan = None
            # a strategy or sampling_strategy that cannot work fails here, not in a worker
            if self.priors is not None or isinstance(sampling_strategy, str):
                _ratios(self.priors or {0: 2, 1: 1}, strategy, sampling_strategy, 0)

    @property
    def mode(self) -> int:
        """1 with a manifest (exact epochs), 2 without (labels seen as they flow)."""
        return 1 if self.manifest is not None else 2

    def _check_shards(self, manifest: Manifest) -> None:
        names = self.source.names
        if len(names) != manifest.num_shards or (self.source.named and names != manifest.names):
            fail(
                "manifest",
                f"the source's {len(names)} shards, in its order ({names[:3]}...)",
                Text(f"{manifest.num_shards} shards ({manifest.names[:3]}...)"),
                "Build the manifest from the same shard list (Manifest.scan_tar(urls))",
            )

    def target_counts(self, epoch: int | None = None) -> dict[Any, int]:
        """Per-class counts of one global epoch (all ranks, before cut or pad): mode 1, or
        mode 2 with ``priors`` (what the priors alone would plan).

        Raises:
            ValueError: In mode 2 without priors (no plan exists before the stream is read).
        """
        epoch = self.epoch if epoch is None else check_epoch(epoch)
        if self.plan is not None:
            return self.plan.as_dict(epoch)
        if self.priors is None:
            fail(
                "target_counts",
                "a manifest or priors (a plan needs the class counts)",
                Text("a mode 2 stream without priors"),
                "Read stats() after a pass for the realised mix",
            )
        return _targets(self.priors, self.strategy, self.sampling_strategy, epoch)

    def epoch_copies(self, epoch: int | None = None) -> np.ndarray:
        """Mode 1: copies of each sample (manifest order) in the global epoch, before cut or pad."""
        if self.plan is None:
            fail("epoch_copies", "a mode 1 stream (with a manifest)", Text("mode 2"))
        epoch = self.epoch if epoch is None else check_epoch(epoch)
        if self._copies is None or self._copies[0] != epoch:
            copies = epoch_copies(
                self.plan, self.seed, epoch, replacement=self.replacement, cache=self._walks
            )
            self._copies = (epoch, copies)
        return self._copies[1]

    def __len__(self) -> int:
        world, _ = current_ranks(*self._requested)
        if self.plan is not None:
            return shard_length(self.plan.length, world, self.drop_last)
        if self.epoch_length is None:
            raise TypeError(
                "len(BalancedIterableDataset): a mode 2 stream without epoch_length has no "
                "length (it follows the source); pass epoch_length= for a fixed one"
            )
        return self.epoch_length

    def stats(self) -> dict[str, Any]:
        """What the last pass in this process read and emitted (mode 2; mode 1 reports
        samples read and emitted only).

        Returns:
            ``read``, ``emitted``, ``read_per_emitted``, ``emitted_per_class``,
            ``target_mix`` and ``realised_mix`` (``{class: fraction}``) and
            ``total_variation`` between them.
        """
        return dict(self._stats)

    def _settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "strategy": describe(self.strategy),
            "sampling_strategy": describe(self.sampling_strategy),
            "buffer_size": self.buffer_size,
            "shards": len(self.source.names),
        }
        if self.manifest is not None:
            settings["manifest"] = self.manifest.fingerprint()
        else:
            settings["priors"] = describe(self.priors)
            settings["epoch_length"] = self.epoch_length
        return settings

    def _emit(self, epoch: int, slot: Slot) -> Iterator[Any]:
        if self.manifest is not None and self.plan is not None:
            return self._emit_planned(self.manifest, self.plan, epoch, slot)
        if self.epoch_length is None and slot.num_replicas > 1:
            fail(
                "epoch_length",
                "a fixed number of samples per rank when num_replicas > 1",
                None,
                "Without one, ranks would emit different numbers of samples and DDP would hang",
            )
        return self._emit_online(epoch, slot)

    # ---- mode 1 ---------------------------------------------------------------------------

    def _emit_planned(
        self, manifest: Manifest, plan: Plan, epoch: int, slot: Slot
    ) -> Iterator[Any]:
        copies = self.epoch_copies(epoch)
        order = shard_order(manifest.num_shards, self.seed, epoch, shuffle=self.shuffle_shards)
        read = [slot_samples(manifest.offsets, order, s) for s in slot.siblings()]
        planned = [int(copies[ids].sum()) for ids in read]
        length = shard_length(plan.length, slot.num_replicas, self.drop_last)
        if sum(planned) == 0:
            fail(
                "manifest",
                "planned samples in the shards of every rank",
                Text(f"none for rank {slot.rank} of {slot.num_replicas}"),
                "Write more shards than ranks, or use fewer ranks",
            )
        quotas = (
            planned
            if sum(planned) == length
            else apportion(np.array(planned, dtype=np.float64), length).tolist()
        )
        quota = int(quotas[slot.worker])
        mine = read[slot.worker]
        wanted = copies[mine]
        if quota > int(wanted.sum()):
            g = generator(self.seed, Stream.STREAM_BUFFER, epoch, slot.rank, slot.worker, 1)
            wanted = _pad(wanted, quota - int(wanted.sum()), g)
        lookup = np.zeros(len(manifest), dtype=np.int64)
        lookup[mine] = wanted
        stream = self._planned_stream(manifest, epoch, slot, order, lookup)
        return itertools.islice(stream, quota)

    def _planned_stream(
        self, manifest: Manifest, epoch: int, slot: Slot, order: list[int], lookup: np.ndarray
    ) -> Iterator[Any]:
        offsets = manifest.offsets.tolist()
        labels = manifest.labels
        check = self._label_fn is not None
        buffer = CopyBuffer(
            self.buffer_size,
            generator(self.seed, Stream.STREAM_BUFFER, epoch, slot.rank, slot.worker),
        )
        read = emitted = 0
        stats = self._stats = {"read": 0, "emitted": 0}
        for shard, position, sample in read_slot(self.source, order, slot, manifest.sizes):
            at = offsets[shard] + position
            read += 1
            if check and self._read_label(sample) != labels[at]:
                fail(
                    "manifest",
                    f"label {labels[at]!r} for sample {position} of {manifest.names[shard]!r}",
                    self._read_label(sample),
                    "The manifest and the source disagree: rebuild the manifest",
                )
            for item in buffer.put(sample, int(lookup[at])):
                emitted += 1
                stats["read"], stats["emitted"] = read, emitted
                yield item
        for item in buffer.drain():
            emitted += 1
            stats["read"], stats["emitted"] = read, emitted
            yield item

    # ---- mode 2 ---------------------------------------------------------------------------

    def _emit_online(self, epoch: int, slot: Slot) -> Iterator[Any]:
        quota: int | None = None
        if self.epoch_length is not None:
            quota = self.epoch_length // slot.num_workers + (
                slot.worker < self.epoch_length % slot.num_workers
            )
        online = _Online(self, epoch, slot)
        stream = online.run()
        return stream if quota is None else itertools.islice(stream, quota)


class _Online:
    """Mode 2's state for one pass of one reader: running counts, ratios, the buffer."""

    def __init__(self, owner: BalancedIterableDataset, epoch: int, slot: Slot) -> None:
        self.owner, self.epoch, self.slot = owner, epoch, slot
        self.priors = dict(owner.priors or {})
        self.seen: dict[Any, int] = {}
        self.planned: dict[Any, int] = {}  # copies decided, per class
        self.out: dict[Any, int] = {}  # copies emitted, per class
        self.ratios: dict[Any, float] = {}
        self.next_refresh = 0
        self.read = 0

    def _refresh(self) -> None:
        counts = dict(self.priors)
        for key, n in self.seen.items():
            counts[key] = counts.get(key, 0) + n
        self.ratios = _ratios(counts, self.owner.strategy, self.owner.sampling_strategy, self.epoch)
        self.next_refresh = self.read + max(16, self.read // 10)

    def run(self) -> Iterator[Any]:
        try:
            yield from self._run()
        finally:  # also when the quota closes the pass early
            self._publish()

    def _run(self) -> Iterator[Any]:
        owner, slot = self.owner, self.slot
        g_buffer = generator(owner.seed, Stream.STREAM_BUFFER, self.epoch, slot.rank, slot.worker)
        g_round = generator(owner.seed, Stream.STREAM_ONLINE, self.epoch, slot.rank, slot.worker)
        buffer = CopyBuffer(owner.buffer_size, g_buffer)
        read_label = owner._read_label
        uniform: list[float] = []
        out = self.out
        for cycle in itertools.count():
            order = shard_order(
                len(owner.source.names), owner.seed, self.epoch, cycle, shuffle=owner.shuffle_shards
            )
            before = self.read
            for _, _, sample in read_slot(owner.source, order, slot):
                label = read_label(sample)
                self.read += 1
                try:
                    seen = self.seen.get(label, 0) + 1
                except TypeError:  # unhashable: a list or an array of labels
                    seen = 0
                if seen <= 1:  # a class seen for the first time (or no class at all)
                    self._check_label(label)
                self.seen[label] = seen
                if label not in self.ratios or self.read >= self.next_refresh:
                    self._refresh()
                if not uniform:
                    uniform = torch.rand(
                        _RANDOM_BLOCK, generator=g_round, dtype=torch.float64
                    ).tolist()
                owed = self.ratios[label] * seen - self.planned.get(label, 0)
                copies = int(owed + uniform.pop()) if owed > 0 else 0
                if copies:
                    self.planned[label] = self.planned.get(label, 0) + copies
                for kept, item in buffer.put((label, sample), copies):
                    out[kept] = out.get(kept, 0) + 1
                    yield item
            if self.read == before:
                if owner.epoch_length is not None:
                    fail(
                        "source",
                        "samples for every reader",
                        Text(f"nothing for rank {slot.rank}, worker {slot.worker}"),
                        "Use fewer DataLoader workers or ranks, or a source with more samples",
                    )
                break
            if owner.epoch_length is None:
                break
        for kept, item in buffer.drain():
            out[kept] = out.get(kept, 0) + 1
            yield item

    def _check_label(self, label: Any) -> None:
        """Refuse, naming where it came from, a label that is not one class label (the rules
        of ``get_labels``), beyond int64, or of another kind than the labels before it."""
        where = "label_fn" if self.owner._label_fn is not None else "source"
        sample = f"in sample {self.read - 1} read by this reader"
        try:
            value = SINGLE.of_value(label)
        except LabelProblem as problem:
            problem.throw(where, sample)
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            fail(where, "integer labels within int64", Text(f"{value} {sample}"))
        first = next(iter(self.seen), None)
        if first is not None and isinstance(first, str) != isinstance(value, str):
            fail(
                where,
                "labels of one kind: all integers or all strings",
                Text(f"{first!r}, then {label!r} {sample}"),
                kind=TypeError,
            )

    def _publish(self) -> None:
        emitted = sum(self.out.values())
        if self.seen:
            self._refresh()  # the target mix of all the counts read
        targets = {k: self.ratios.get(k, 1.0) * n for k, n in self.seen.items()}
        target_total = sum(targets.values()) or 1.0
        keys = sorted(targets, key=repr)
        target_mix = {k: targets[k] / target_total for k in keys}
        realised = {k: self.out.get(k, 0) / max(emitted, 1) for k in keys}
        self.owner._stats = {
            "read": self.read,
            "emitted": emitted,
            "read_per_emitted": self.read / max(emitted, 1),
            "emitted_per_class": {k: self.out.get(k, 0) for k in keys},
            "target_mix": target_mix,
            "realised_mix": realised,
            "total_variation": 0.5 * sum(abs(realised[k] - target_mix[k]) for k in keys),
        }


def _targets(
    counts: Mapping[Any, int], strategy: Any, sampling_strategy: Any, epoch: int
) -> dict[Any, int]:
    # the counts alone: a label vector of the counts read so far could be billions long
    plan = make_plan(CountIndex(counts), strategy, sampling_strategy=sampling_strategy)
    return plan.as_dict(epoch)


def _ratios(
    counts: Mapping[Any, int], strategy: Any, sampling_strategy: Any, epoch: int
) -> dict[Any, float]:
    """``{class: target / available}`` for the counts so far (1 while only one class is known)."""
    present = {k: n for k, n in counts.items() if n > 0}
    if len(present) < 2:
        return dict.fromkeys(counts, 1.0)
    targets = _targets(present, strategy, sampling_strategy, epoch)
    return {k: targets[k] / present[k] for k in present}


def _check_priors(priors: Any) -> dict[Any, int] | None:
    if priors is None:
        return None
    if not isinstance(priors, Mapping) or not priors:
        fail("priors", "a dict {class: count} with at least one class", priors, kind=TypeError)
    checked = {}
    for key, value in priors.items():
        checked[key] = check_int(f"priors[{key!r}]", value, minimum=0)
    return checked


def _as_manifest(manifest: Any) -> Manifest | None:
    if manifest is None or isinstance(manifest, Manifest):
        return manifest
    if isinstance(manifest, str | Mapping):
        try:
            return Manifest.from_file(manifest) if isinstance(manifest, str) else Manifest(manifest)
        except (TypeError, ValueError) as error:  # name the argument the user passed
            fail("manifest", "a valid manifest", Text(str(error)), kind=type(error))
    fail(
        "manifest",
        "a Manifest, a dict {shard: labels} or the path of a JSON index file",
        manifest,
        kind=TypeError,
    )
