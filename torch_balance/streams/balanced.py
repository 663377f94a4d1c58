"""BalancedIterableDataset: over- and undersampling for streams, exact or online.

**Mode 1, labels known up front** (``manifest=``): the plan is ``BalancedSampler``'s (the
same strategies over the manifest's class counts), and each sample's copies follow from it
exactly: class c with ``n_c`` samples and target ``t_c`` gives each sample ``t_c // n_c``
copies and one more to ``t_c % n_c`` of them, those that a keyed permutation of the class
(seed, epoch, class) puts first. Each reader computes this for its own samples only
(:func:`~torch_balance.streams.copies.reader_copies`: per-class counts of the shards before
its own give each sample its index within its class), so its cost follows its shards, not
the collection; over all readers each class gets exactly its target and each sample floor or
ceil of its class's share. The epochs are not ``BalancedSampler``'s (which samples take the
extra copies differs); with ``replacement=True`` they are, drawn over the whole collection.
Each reader reads only its shards and emits every sample its planned number of times through
a :class:`~torch_balance.streams.buffer.CopyBuffer`.

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
with ``drop_last``) for a plan of ``K``, as ``DistributedSampler`` pads, shared equally by its
workers (:func:`~torch_balance.streams.readers.worker_quota`: worker ``w`` emits as many on
every rank, so one rank's reader state is every rank's). A reader whose share is below what
its samples plan drops some of its planned copies (the cut), one above it repeats some (the
pad), chosen at random within each class, with each class's part of the cut or pad in
proportion to its planned count in the epoch, so that all readers together change each class
in proportion to the plan (within one copy per reader). With one reader nothing is cut or
padded and the epoch's per-class counts equal :meth:`~BalancedIterableDataset.target_counts`
exactly. In mode 2 the length is ``epoch_length`` per rank, split evenly among workers; a
reader that reaches the end of its shards starts them again.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from torch_balance._apportion import describe
from torch_balance._epoch import check_epoch
from torch_balance._rng import Stream, SubStream, generator
from torch_balance._validation import Text, check_bool, check_int, fail
from torch_balance.labels.index import CountIndex
from torch_balance.sharding import current_ranks, shard_length
from torch_balance.strategies import Plan, Strategy, make_plan
from torch_balance.streams._shell import StreamShell, refuse_feedback
from torch_balance.streams.buffer import CopyBuffer
from torch_balance.streams.copies import epoch_copies, fit_copies, reader_copies
from torch_balance.streams.manifest import Manifest
from torch_balance.streams.online import Online, check_priors, class_ratios, class_targets
from torch_balance.streams.readers import (
    ReaderPlan,
    shard_order,
    warn_shared_shards,
    worker_quota,
)
from torch_balance.streams.sources import (
    Shards,
    Slot,
    as_source,
    label_reader,
    read_slot,
    reader_parts,
)

__all__ = ["BalancedIterableDataset"]


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
        self._online: Online | None = None  # mode 2's pass under way or last, for stats()
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
            # the plan reads class counts only: a CountIndex, never a label vector (a draw with
            # replacement walks the classes, so it needs them grouped: the whole index)
            self.plan: Plan | None = make_plan(
                self.manifest.index if self.replacement else CountIndex(self.manifest.counts()),
                strategy,
                sampling_strategy=sampling_strategy,
                num_samples=num_samples,
            )
            self.priors: dict[Any, int] | None = None
            self.epoch_length: int | None = None
            self._copies: tuple[int, np.ndarray] | None = None
            self._reader: tuple[tuple[int, Slot], ReaderPlan] | None = None
        else:
            if num_samples is not None or replacement:
                fail(
                    "num_samples" if num_samples is not None else "replacement",
                    "their defaults without a manifest (mode 2 follows the stream)",
                    num_samples if num_samples is not None else replacement,
                    "Use epoch_length for the length of a mode 2 epoch",
                )
            self.epoch_length = check_int("epoch_length", epoch_length, minimum=1, allow_none=True)
            self.priors = check_priors(priors)
            self.plan = None
            # a strategy or sampling_strategy that cannot work fails here, not in a worker
            if self.priors is not None or isinstance(sampling_strategy, str):
                class_ratios(self.priors or {0: 2, 1: 1}, strategy, sampling_strategy, 0)

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
        return class_targets(self.priors, self.strategy, self.sampling_strategy, epoch)

    def epoch_copies(self, epoch: int | None = None) -> np.ndarray:
        """Mode 1: copies of each sample (manifest order) in the global epoch, before cut or
        pad (of the whole collection: for inspection; a reader computes its own part only)."""
        if self.plan is None or self.manifest is None:
            fail("epoch_copies", "a mode 1 stream (with a manifest)", Text("mode 2"))
        epoch = self.epoch if epoch is None else check_epoch(epoch)
        if self._copies is None or self._copies[0] != epoch:
            if self.replacement:
                copies = epoch_copies(self.plan, self.seed, epoch, replacement=True)
            else:
                parts = [(s, 0, 1) for s in range(self.manifest.num_shards)]
                targets = self.plan.targets(epoch)
                found = reader_copies(self.manifest, parts, targets, self.seed, epoch)
                copies = np.concatenate([c for _, c in found])
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
            return self._emit_planned(self.manifest, epoch, slot)
        if self.epoch_length is None and slot.num_replicas > 1:
            fail(
                "epoch_length",
                "a fixed number of samples per rank when num_replicas > 1",
                None,
                "Without one, ranks would emit different numbers of samples and DDP would hang",
            )
        return self._emit_online(epoch, slot)

    # ---- mode 1 ---------------------------------------------------------------------------

    def reader_plan(self, epoch: int, slot: Slot) -> ReaderPlan:
        """Mode 1: what reader ``slot`` reads and emits in ``epoch`` (computed from its own
        shards alone; the last one asked is kept)."""
        if self.manifest is None or self.plan is None:
            fail("reader_plan", "a mode 1 stream (with a manifest)", Text("mode 2"))
        if self._reader is not None and self._reader[0] == (epoch, slot):
            return self._reader[1]
        manifest, plan = self.manifest, self.plan
        order = shard_order(manifest.num_shards, self.seed, epoch, shuffle=self.shuffle_shards)
        parts = reader_parts(order, slot)
        warn_shared_shards(manifest.num_shards, slot)
        if self.replacement:  # the sampler's draw, over the whole collection
            every = self.epoch_copies(epoch)
            found = []
            for shard, start, step in parts:
                at = slice(manifest.offsets[shard] + start, manifest.offsets[shard + 1], step)
                found.append((manifest.shard_codes(shard)[start::step], every[at]))
        else:
            found = reader_copies(manifest, parts, plan.targets(epoch), self.seed, epoch)
        codes = np.concatenate([c for c, _ in found]) if found else np.zeros(0, np.int64)
        wanted = np.concatenate([w for _, w in found]) if found else np.zeros(0, np.int64)
        quota = worker_quota(shard_length(plan.length, slot.num_replicas, self.drop_last), slot)
        if codes.shape[0] == 0 and quota > 0:
            fail(
                "manifest",
                "samples in the shards of every reader",
                Text(f"none for rank {slot.rank}, worker {slot.worker}"),
                "Write at least as many shards as readers (ranks x DataLoader workers), or "
                "use fewer",
            )
        if quota != int(wanted.sum()):  # the cut or the pad, in proportion to each class
            g = generator(
                self.seed, Stream.STREAM_BUFFER, epoch, slot.rank, slot.worker, SubStream.FIT
            )
            weights = plan.targets(epoch).astype(np.float64)
            wanted = fit_copies(wanted, codes, quota, weights, g)
        result = ReaderPlan(order, parts, codes, wanted, quota)
        self._reader = ((epoch, slot), result)
        return result

    def _online_quota(self, slot: Slot) -> int | None:
        """Mode 2: ``slot``'s share of ``epoch_length`` (None without one)."""
        if self.epoch_length is None:
            return None
        return worker_quota(self.epoch_length, slot)

    def _pass_length(self, epoch: int, slot: Slot) -> int | None:
        if self.manifest is not None and self.plan is not None:
            return self.reader_plan(epoch, slot).quota
        return self._online_quota(slot)

    def _emit_planned(self, manifest: Manifest, epoch: int, slot: Slot) -> Iterator[Any]:
        reader = self.reader_plan(epoch, slot)
        per_class = np.bincount(
            reader.codes, weights=reader.copies, minlength=len(manifest.classes)
        )
        totals = {c: int(n) for c, n in enumerate(per_class.tolist()) if n}
        stream = self._planned_stream(manifest, epoch, slot, reader, totals)
        return itertools.islice(stream, reader.quota)

    def _planned_stream(
        self,
        manifest: Manifest,
        epoch: int,
        slot: Slot,
        reader: ReaderPlan,
        totals: dict[int, int],
    ) -> Iterator[Any]:
        classes = manifest.classes
        check = self._label_fn is not None
        buffer = CopyBuffer(
            self.buffer_size,
            generator(self.seed, Stream.STREAM_BUFFER, epoch, slot.rank, slot.worker),
            totals,  # the reader's whole pass, known: every prefix follows its mix
        )
        # where each part's samples begin in the reader's arrays
        begins = {}
        at = 0
        for shard, start, step in reader.parts:
            begins[shard] = (at, start, step)
            at += len(range(start, int(manifest.sizes[shard]), step))
        codes, copies = reader.codes.tolist(), reader.copies.tolist()
        read = emitted = 0
        stats = self._stats = {"read": 0, "emitted": 0}
        self._online = None
        for shard, position, sample in read_slot(self.source, reader.order, slot, manifest.sizes):
            base, start, step = begins[shard]
            i = base + (position - start) // step
            read += 1
            if check and self._read_label(sample) != classes[codes[i]]:
                fail(
                    "manifest",
                    f"label {classes[codes[i]]!r} for sample {position} of "
                    f"{manifest.names[shard]!r}",
                    self._read_label(sample),
                    "The manifest and the source disagree: rebuild the manifest",
                )
            for item in buffer.put(sample, copies[i], codes[i]):
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
        online = self._online = Online(self, epoch, slot)
        stream = online.run()
        return stream if quota is None else itertools.islice(stream, quota)


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
