"""Mode 2 of BalancedIterableDataset: labels seen as the stream flows, running counts turned
into a ratio per class, and each sample's copies rounded so that the error never accumulates
(see :mod:`torch_balance.streams.balanced`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch

from torch_balance._rng import Stream, generator
from torch_balance._validation import Text, check_int, fail
from torch_balance.labels.index import CountIndex
from torch_balance.labels.kinds import SINGLE, LabelProblem
from torch_balance.strategies import make_plan
from torch_balance.streams.buffer import RANDOM_BLOCK, CopyBuffer
from torch_balance.streams.readers import shard_order
from torch_balance.streams.sources import Slot, read_slot

if TYPE_CHECKING:
    from torch_balance.streams.balanced import BalancedIterableDataset

__all__ = ["Online", "check_priors", "class_ratios", "class_targets"]


class Online:
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
        self.ratios = class_ratios(
            counts, self.owner.strategy, self.owner.sampling_strategy, self.epoch
        )
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
                        RANDOM_BLOCK, generator=g_round, dtype=torch.float64
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
            class_ratios(counts, self.owner.strategy, self.owner.sampling_strategy, self.epoch)
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


def class_targets(
    counts: Mapping[Any, int], strategy: Any, sampling_strategy: Any, epoch: int
) -> dict[Any, int]:
    # the counts alone: a label vector of the counts read so far could be billions long
    plan = make_plan(CountIndex(counts), strategy, sampling_strategy=sampling_strategy)
    return plan.as_dict(epoch)


def class_ratios(
    counts: Mapping[Any, int], strategy: Any, sampling_strategy: Any, epoch: int
) -> dict[Any, float]:
    """``{class: target / available}`` for the counts so far (1 while only one class is known)."""
    present = {k: n for k, n in counts.items() if n > 0}
    if len(present) < 2:
        return dict.fromkeys(counts, 1.0)
    targets = class_targets(present, strategy, sampling_strategy, epoch)
    return {k: targets[k] / present[k] for k in present}


def check_priors(priors: Any) -> dict[Any, int] | None:
    if priors is None:
        return None
    if not isinstance(priors, Mapping) or not priors:
        fail("priors", "a dict {class: count} with at least one class", priors, kind=TypeError)
    checked = {}
    for key, value in priors.items():
        checked[key] = check_int(f"priors[{key!r}]", value, minimum=0)
    return checked
