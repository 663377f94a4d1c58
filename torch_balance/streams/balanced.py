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
least every 16, when a class first appears, and when a class's own count has grown by a
tenth), and after a refresh every class is given the copies it now owes on one of its held
samples, so a rare class does not lag its target until its next sample comes.

**Every prefix is balanced.** The :class:`CopyBuffer` emits copies by stratified interleaving
of the classes (in mode 1 in proportion to the reader's whole plan, in mode 2 to the copies
decided so far), so wherever a pass is cut (``epoch_length``, the rank's length, a
``break``), what came out follows the target mix.

**One fixed length per rank** (so DDP never hangs; webdataset's ``with_epoch`` makes the same
promise by cutting or repeating): in mode 1 a rank emits ``ceil(K / R)`` samples (``floor``
with ``drop_last``) for a plan of ``K``, as ``DistributedSampler`` pads. Its workers share
that in proportion to what their shards hold in the plan; a worker whose share is below what
its shards plan drops some of its planned copies (the cut), one above it repeats some (the
pad), chosen at random within each class, with each class's part of the cut or pad in
proportion to its planned count in the epoch, so that all readers together change each class
in proportion to the plan (within one copy per reader). On one rank nothing is cut or padded
and the epoch's per-class counts equal :meth:`~BalancedIterableDataset.target_counts` exactly.
In mode 2 the length is ``epoch_length`` per rank, split evenly among workers; a reader that
reaches the end of its shards starts them again.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from torch_balance._apportion import apportion, describe
from torch_balance._epoch import check_epoch
from torch_balance._rng import Stream, SubStream, generator
from torch_balance._validation import Text, check_bool, check_int, fail
from torch_balance.draws import WalkCache, draw_epoch
from torch_balance.labels.index import CountIndex
from torch_balance.labels.kinds import SINGLE, LabelProblem
from torch_balance.sharding import current_ranks, shard_length
from torch_balance.strategies import Plan, Strategy, make_plan
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
        block = torch.rand(_RANDOM_BLOCK, generator=self._g, dtype=torch.float64).tolist()
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


def _split_in_proportion(total: int, weights: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Split ``total`` among classes in proportion to ``weights`` (largest remainder), none
    past its ``room``: a class that is full passes its share on to the others, in proportion.

    Example:
        >>> _split_in_proportion(6, np.array([1.0, 1.0, 1.0]), np.array([9, 9, 1])).tolist()
        [3, 2, 1]
    """
    parts = np.zeros(weights.shape[0], dtype=np.int64)
    left = int(min(total, int(room.sum())))
    open_ = (room > 0) & (weights > 0)
    while left > 0:
        if not open_.any():  # only classes without weight have room left: fill those
            open_ = room > parts
        shares = np.where(open_, weights, 0.0)
        share = apportion(shares if shares.sum() > 0 else open_.astype(np.float64), left)
        taken = np.minimum(share, room - parts)
        parts += taken
        left -= int(taken.sum())
        open_ &= room > parts
    return parts


def _fit_copies(
    copies: np.ndarray, codes: np.ndarray, total: int, weights: np.ndarray, g: torch.Generator
) -> np.ndarray:
    """Cut or pad one reader's planned ``copies`` (per sample; ``codes``: each sample's class)
    to ``total``, taking from or adding to each class in proportion to ``weights`` (the
    epoch's planned count of each class: then the cut and pad of all readers together take
    from each class in proportion to its planned count, within one copy per reader), and
    within a class from or to its planned copies chosen uniformly at random (each at most once
    per round). A class cannot lose more copies than the reader plans of it, nor gain any
    where the reader plans none: its share goes to the other classes, in proportion.

    Example:
        >>> copies, codes = np.array([1, 1, 1, 1, 4]), np.array([0, 0, 0, 0, 1])
        >>> cut = _fit_copies(copies, codes, 4, np.array([4.0, 4.0]), torch.Generator())
        >>> int(cut[:4].sum()), int(cut[4])
        (2, 2)
    """
    planned = int(copies.sum())
    if total == planned:
        return copies
    per_class = np.bincount(codes, weights=copies, minlength=weights.shape[0]).astype(np.int64)
    if total < planned:
        change = -_split_in_proportion(planned - total, weights, per_class)
    else:
        room = np.where(per_class > 0, total, 0)
        change = _split_in_proportion(total - planned, weights, room)
    fitted = copies.copy()
    for code in np.flatnonzero(change).tolist():
        mine = np.flatnonzero(codes == code)
        have, step = int(per_class[code]), int(change[code])
        owner = np.repeat(mine, copies[mine])  # one entry per planned copy
        if step < 0:  # the cut: which planned copies go
            picks = torch.randperm(have, generator=g)[:-step]
            fitted -= np.bincount(owner[picks.numpy()], minlength=copies.shape[0])
        else:  # the pad: which planned copies are repeated
            rounds = -(-step // have)
            picks = torch.cat([torch.randperm(have, generator=g) for _ in range(rounds)])
            fitted += np.bincount(owner[picks[:step].numpy()], minlength=copies.shape[0])
    return fitted


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
        process_group: The data-parallel group (a ``ProcessGroup`` or a 1-D ``DeviceMesh``)
            whose ranks share the stream, read when the stream is built (DataLoader
            workers get its rank and size, not the group); default the default group.
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
        process_group: Any = None,
        drop_last: bool = False,
        shuffle_shards: bool = True,
        priors: Mapping[Any, int] | None = None,
        epoch_length: int | None = None,
    ) -> None:
        self._open(seed, num_replicas, rank, drop_last, process_group)
        refuse_feedback(strategy)
        self.source: Shards = as_source(source)
        self._take_node_splits([self.source])
        self.strategy = strategy
        self.sampling_strategy = sampling_strategy
        self.buffer_size = check_int("buffer_size", buffer_size, minimum=1)
        self.replacement = check_bool("replacement", replacement)
        self.shuffle_shards = check_bool("shuffle_shards", shuffle_shards)
        self._label_fn = label_fn
        self._read_label = label_reader(label_fn)
        self.manifest = _as_manifest(manifest)
        self._stats: dict[str, Any] = {}
        self._online: _Online | None = None  # mode 2's pass under way or last, for stats()
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
        """The number of samples one rank emits per epoch."""
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
        if self._online is not None:
            return self._online.stats()
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

    def _reader_plan(
        self, manifest: Manifest, plan: Plan, epoch: int, slot: Slot
    ) -> tuple[list[int], np.ndarray, int]:
        """Mode 1: the shard order, the samples ``slot`` reads and its quota (its workers share
        the rank's length in proportion to what their shards plan)."""
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
        return order, read[slot.worker], int(quotas[slot.worker])

    def _online_quota(self, slot: Slot) -> int | None:
        """Mode 2: ``slot``'s share of ``epoch_length`` (None without one)."""
        if self.epoch_length is None:
            return None
        workers = slot.num_workers
        return self.epoch_length // workers + (slot.worker < self.epoch_length % workers)

    def _pass_length(self, epoch: int, slot: Slot) -> int | None:
        if self.manifest is not None and self.plan is not None:
            return self._reader_plan(self.manifest, self.plan, epoch, slot)[2]
        return self._online_quota(slot)

    def _emit_planned(
        self, manifest: Manifest, plan: Plan, epoch: int, slot: Slot
    ) -> Iterator[Any]:
        order, mine, quota = self._reader_plan(manifest, plan, epoch, slot)
        wanted = self.epoch_copies(epoch)[mine]
        if quota != int(wanted.sum()):  # the cut or the pad, in proportion to each class
            g = generator(
                self.seed, Stream.STREAM_BUFFER, epoch, slot.rank, slot.worker, SubStream.FIT
            )
            codes = np.searchsorted(manifest.index.classes, manifest.labels[mine])
            weights = plan.targets(epoch).astype(np.float64)
            wanted = _fit_copies(wanted, codes, quota, weights, g)
        lookup = np.zeros(len(manifest), dtype=np.int64)
        lookup[mine] = wanted
        classes, codes = np.unique(manifest.labels[mine], return_inverse=True)
        per_class = np.bincount(codes.reshape(-1), weights=wanted, minlength=classes.shape[0])
        totals = dict(zip(classes.tolist(), per_class.astype(np.int64).tolist(), strict=True))
        stream = self._planned_stream(manifest, epoch, slot, order, lookup, totals)
        return itertools.islice(stream, quota)

    def _planned_stream(
        self,
        manifest: Manifest,
        epoch: int,
        slot: Slot,
        order: list[int],
        lookup: np.ndarray,
        totals: dict[Any, int],
    ) -> Iterator[Any]:
        offsets = manifest.offsets.tolist()
        labels = manifest.labels
        check = self._label_fn is not None
        buffer = CopyBuffer(
            self.buffer_size,
            generator(self.seed, Stream.STREAM_BUFFER, epoch, slot.rank, slot.worker),
            totals,  # the reader's whole pass, known: every prefix follows its mix
        )
        read = emitted = 0
        stats = self._stats = {"read": 0, "emitted": 0}
        self._online = None
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
            for item in buffer.put(sample, int(lookup[at]), labels[at]):
                emitted += 1
                stats["read"], stats["emitted"] = read, emitted
                yield item
        for item in buffer.drain():
            emitted += 1
            stats["read"], stats["emitted"] = read, emitted
            yield item

    # ---- mode 2 ---------------------------------------------------------------------------

    def _emit_online(self, epoch: int, slot: Slot) -> Iterator[Any]:
        quota = self._online_quota(slot)
        online = self._online = _Online(self, epoch, slot)
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
        self.refreshed: tuple[int, dict[Any, int]] = (0, {})  # reads and counts at the refresh
        self.read = 0

    def _refresh(self) -> None:
        counts = dict(self.priors)
        for key, n in self.seen.items():
            counts[key] = counts.get(key, 0) + n
        self.ratios = _ratios(counts, self.owner.strategy, self.owner.sampling_strategy, self.epoch)
        self.next_refresh = self.read + max(16, self.read // 10)
        self.refreshed = (self.read, dict(self.seen))

    def run(self) -> Iterator[Any]:
        """The pass. Nothing runs when it is closed early (a ``break``, the quota, interpreter
        exit): the stats are computed from the counts when :meth:`stats` asks, not on close."""
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
                refresh = (
                    label not in self.ratios
                    or self.read >= self.next_refresh
                    or self._stale(label, seen)
                )
                if refresh:
                    self._refresh()
                if not uniform:
                    uniform = torch.rand(
                        _RANDOM_BLOCK, generator=g_round, dtype=torch.float64
                    ).tolist()
                owed = self.ratios[label] * seen - self.planned.get(label, 0)
                copies = int(owed + uniform.pop()) if owed > 0 else 0
                if copies:
                    self.planned[label] = self.planned.get(label, 0) + copies
                for kept, item in buffer.put((label, sample), copies, label):
                    out[kept] = out.get(kept, 0) + 1
                    yield item
                if refresh:
                    self._top_up(buffer, label)
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

    def _stale(self, label: Any, seen: int) -> bool:
        """Whether ``label``'s count has grown by a tenth since the ratios were computed (a rare
        class, whose ratio moves most with its own count), no sooner than one read per class
        after the last refresh (a refresh costs a plan over every class)."""
        at, counts = self.refreshed
        return seen * 10 >= counts.get(label, 0) * 11 and self.read - at >= len(self.seen)

    def _top_up(self, buffer: CopyBuffer, skip: Any) -> None:
        """After the ratios change, give every other class the copies it now owes (``r_c * s_c``
        less those planned) on one of its held samples: a class's copies would otherwise
        catch up only when its next sample is read, so between two samples of a rare class
        its share of the output lags its target (the cut at ``epoch_length`` would show it)."""
        for key, seen in self.seen.items():
            owed = self.ratios.get(key, 1.0) * seen - self.planned.get(key, 0)
            if key != skip and owed >= 1 and buffer.add(key, int(owed)):
                self.planned[key] = self.planned.get(key, 0) + int(owed)

    def stats(self) -> dict[str, Any]:
        """What this pass has read and emitted so far (see ``BalancedIterableDataset.stats``)."""
        emitted = sum(self.out.values())
        counts = dict(self.priors)
        for key, n in self.seen.items():
            counts[key] = counts.get(key, 0) + n
        # the target mix of all the counts read (local: the pass's own ratios stay as they are)
        ratios = (
            _ratios(counts, self.owner.strategy, self.owner.sampling_strategy, self.epoch)
            if self.seen
            else {}
        )
        targets = {k: ratios.get(k, 1.0) * n for k, n in self.seen.items()}
        target_total = sum(targets.values()) or 1.0
        keys = sorted(targets, key=repr)
        target_mix = {k: targets[k] / target_total for k in keys}
        realised = {k: self.out.get(k, 0) / max(emitted, 1) for k in keys}
        return {
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
