"""Mixtures of sources, each balanced inside by its own strategy.

Training on several datasets at once: each source gets a share of every epoch, given
(``proportions=``) or from its size with a temperature (``temperature=``,
``p_s ∝ n_s ** (1 / T)``, see :func:`~torch_balance.draws.mixtures.temperature_shares`), and
inside its share each source is drawn by its own plan (any strategy of
:class:`~torch_balance.BalancedSampler`, or None to take it as it is, without reading its
labels).

Data flows one way: sources -> shares -> exact counts per source
(:func:`~torch_balance._apportion.apportion`) -> each source's plan scaled to its count
(:func:`~torch_balance.strategies.make_plan`) -> the draws a ``BalancedSampler`` makes
(:class:`~torch_balance.draws.EpochDraw`) -> joined into indices of the concatenation
(:func:`~torch_balance.draws.mixtures.join_sources`) -> one shuffle -> shard.

Where this differs from torchdata's ``MultiNodeWeightedSampler`` and Hugging Face's
``interleave_datasets``: a map-style epoch holds each source's count exactly (the shares
rounded once, largest remainder), not a random number drawn sample by sample; the sources'
order within the epoch is one uniform shuffle of the whole, so any stretch of it follows the
mix up to sampling noise. For streams, :class:`~torch_balance.streams.BalancedMix` mixes
sources sample by sample, with torchdata's stop rules.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, IterableDataset

from torch_balance._apportion import apportion, describe
from torch_balance._epoch import Pass, SamplerShell, describe_plan
from torch_balance._rng import Stream, generator
from torch_balance._threads import Early, alongside, helper_allowed
from torch_balance._validation import (
    Text,
    check_bool,
    check_epoch_size,
    check_int,
    fail,
    readable_tensor,
    scaled_weights,
    tensor_values,
)
from torch_balance.draws import EpochDraw, NextOrder, shuffle_order
from torch_balance.draws.epoch import ahead_pays
from torch_balance.draws.mixtures import join_sources, temperature_shares
from torch_balance.feedback import Feedback
from torch_balance.labels import LabelIndex, given_dataset, resolve_labels
from torch_balance.labels.index import CountIndex
from torch_balance.strategies import EPOCH_BYTES, Plan, make_plan

__all__ = ["MixtureSampler", "check_temperature", "mixture_shares"]


def check_temperature(temperature: Any) -> float:
    """A mixture temperature: a number ``> 0``; ``math.inf`` is uniform over sources.

    Example:
        >>> check_temperature(2), check_temperature(math.inf)
        (2.0, inf)
    """
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        fail("temperature", "a positive number such as 2.0", temperature, kind=TypeError)
    value = float(temperature)
    if math.isnan(value) or value <= 0:
        fail(
            "temperature",
            "a number > 0 (1: proportional to size; larger: closer to uniform; inf: uniform)",
            temperature,
        )
    return value


def _check_proportions(proportions: Any, count: int) -> np.ndarray:
    if isinstance(proportions, torch.Tensor):
        proportions = tensor_values("proportions", proportions).tolist()
    if isinstance(proportions, np.ndarray):
        proportions = proportions.tolist()
    if not isinstance(proportions, list | tuple):
        fail(
            "proportions",
            f"a list of {count} weights, one per source",
            proportions,
            kind=TypeError,
        )
    if len(proportions) != count:
        fail(
            "proportions",
            f"{count} weights, one per source",
            Text(f"{len(proportions)}: {_short(proportions)}"),
        )
    for s, value in enumerate(proportions):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            fail(f"proportions[{s}]", "a number >= 0", value, kind=TypeError)
        if not math.isfinite(float(value)) or value < 0:
            fail(f"proportions[{s}]", "a finite number >= 0", value)
    # any finite scale: brought near 1 by a power of two first, so the sum neither overflows
    # ([1e308] * 3) nor vanishes (subnormal weights)
    weights = scaled_weights(torch.tensor([float(v) for v in proportions], dtype=torch.float64))
    if not float(weights.sum()) > 0:
        fail("proportions", "at least one weight > 0", Text(_short(proportions)))
    return (weights / weights.sum()).numpy()


def _check_sizes(sizes: Any) -> list[int]:
    """``mixture_shares``' sizes: a non-empty 1-D sequence of integers ``>= 0``, one > 0."""
    if isinstance(sizes, torch.Tensor):
        sizes = tensor_values("sizes", sizes)
    if isinstance(sizes, np.ndarray):
        if sizes.ndim != 1:
            fail("sizes", "a 1-D sequence of sizes, one per source", Text(f"shape {sizes.shape}"))
        sizes = sizes.tolist()
    if not isinstance(sizes, list | tuple | range):
        fail("sizes", "a list of sample counts, one per source", sizes, kind=TypeError)
    if not sizes:
        fail("sizes", "at least one source size", Text("no sizes"))
    found = [
        int(check_int(f"sizes[{s}]", n, minimum=0, fix="Sizes count samples"))
        for s, n in enumerate(sizes)
    ]
    if not any(found):
        fail("sizes", "at least one size > 0", Text(_short(found)))
    return found


def _short(values: Any) -> str:
    text = repr(list(values))
    return text if len(text) <= 60 else text[:57] + "..."


def mixture_shares(
    sizes: Sequence[int], proportions: Any = None, temperature: float | None = None
) -> np.ndarray:
    """Each source's share of an epoch: ``proportions`` normalised, or ``p_s ∝ n_s ** (1/T)``.

    Args:
        sizes: Samples per source (used by ``temperature``).
        proportions: One weight ``>= 0`` per source (any scale), or None.
        temperature: ``T > 0``, or None; with neither, ``T = 1`` (proportional to size).

    Returns:
        ``float64`` shares summing to 1.

    Raises:
        TypeError: For weights, sizes or a temperature that are not numbers.
        ValueError: For both given, negative or non-finite weights, weights summing to 0, the
            wrong number of them, negative sizes or none > 0, or ``T <= 0``.

    Example:
        >>> mixture_shares([300, 100], proportions=[1, 3]).tolist()
        [0.25, 0.75]
        >>> mixture_shares([300, 100], temperature=1).tolist()
        [0.75, 0.25]
    """
    if proportions is not None and temperature is not None:
        fail(
            "proportions",
            "None when temperature is given (one rule for the shares)",
            proportions,
            "Give proportions= or temperature=, not both",
        )
    counts = _check_sizes(sizes)
    if proportions is not None:
        return _check_proportions(proportions, len(counts))
    return temperature_shares(
        counts, 1.0 if temperature is None else check_temperature(temperature)
    )


class _WholeIndex(CountIndex):
    """A source taken as it is: one class holding every sample, without reading labels."""

    def __init__(self, size: int) -> None:
        super().__init__({0: size})

    @property
    def order(self) -> torch.Tensor:
        if self._order is None:
            self._order = torch.arange(len(self), dtype=self.dtype)
        return self._order

    def fingerprint(self) -> str:
        return f"whole:{len(self)}"


class _Scaled:
    """A plan's targets apportioned to ``length`` (for ``"over"``/``"under"`` and user rules,
    whose own totals are not the source's count)."""

    def __init__(self, plan: Plan, length: int) -> None:
        self.plan, self.length = plan, length

    def __call__(self, epoch: int) -> np.ndarray:
        return apportion(self.plan.targets(epoch).astype(np.float64), self.length)


def _source_plan(index: LabelIndex, strategy: Any, sampling_strategy: Any, length: int) -> Plan:
    """The source's plan with exactly ``length`` samples every epoch."""
    own_length = isinstance(strategy, str) and strategy in ("over", "under")
    plan = make_plan(
        index,
        strategy,
        sampling_strategy=sampling_strategy,
        num_samples=None if own_length else length,
    )
    if plan.length == length and not own_length:
        return plan
    scaled = Plan(index, _Scaled(plan, length), constant=plan.constant)
    scaled.description = f"{plan.description}, scaled to {length}"
    return scaled


def _per_source(name: str, value: Any, count: int) -> list[Any]:
    """One value for every source, or a list with one per source."""
    if isinstance(value, list | tuple):
        if len(value) != count:
            fail(name, f"one value for all sources or a list of {count}", Text(_short(value)))
        return list(value)
    return [value] * count


def _as_sources(sources: Any, label_fn: Any) -> tuple[list[Any], Any]:
    """``(sources, dataset)``: the parts and the concatenation indices point into (None when
    the parts are label vectors)."""
    if isinstance(sources, ConcatDataset):
        return list(sources.datasets), sources
    if not isinstance(sources, list | tuple) or not sources:
        fail(
            "sources",
            "a ConcatDataset or a non-empty list of datasets (or label vectors)",
            Text(type(sources).__name__ if not isinstance(sources, list | tuple) else "[]"),
            kind=TypeError if not isinstance(sources, list | tuple) else ValueError,
        )
    parts = list(sources)
    for s, part in enumerate(parts):
        if isinstance(part, IterableDataset) or not hasattr(part, "__len__"):
            fail(
                f"sources[{s}]",
                "a map-style dataset or a label vector",
                Text(type(part).__name__),
                "Mix streams with torch_balance.streams.BalancedMix",
                kind=TypeError,
            )
        if isinstance(part, str | bytes):
            fail(
                f"sources[{s}]",
                "a map-style dataset or a label vector",
                part,
                "A string is not a source: pass a dataset or its labels",
                kind=TypeError,
            )
        if isinstance(part, torch.Tensor):
            readable_tensor(f"sources[{s}]", part)
        if isinstance(part, np.ndarray | torch.Tensor) and part.ndim != 1:
            fail(
                f"sources[{s}]",
                "a 1-D label vector (one label per sample)",
                Text(f"an array of shape {tuple(part.shape)}"),
                "Pass a dataset, or its labels as a 1-D vector",
            )
        if len(part) == 0:
            fail(f"sources[{s}]", "a source with at least one sample", Text("an empty one"))
    plain = all(given_dataset(p, label_fn) is None for p in parts)
    return parts, None if plain else ConcatDataset(parts)


def _source_seed(seed: int, source: int) -> int:
    """The seed of source ``source``'s draws: its walks are its own, whatever the others."""
    g = generator(seed, Stream.MIXTURE_SOURCE, source)
    return int(torch.randint(0, 2**62, (1,), generator=g))


class MixtureSampler(SamplerShell):
    """Sample a mixture of datasets: each source its share of every epoch, each balanced inside
    by its own strategy (or taken as it is), redrawn every epoch.

    Indices point into the concatenation of the sources (a ``ConcatDataset``'s indices), so
    ``DataLoader(ConcatDataset(sources), sampler=MixtureSampler(sources, ...))`` works.
    Source ``s`` gets ``k_s`` samples of each epoch, the shares ``p_s`` apportioned exactly
    over ``num_samples``; those ``k_s`` are drawn by the source's plan as
    :class:`~torch_balance.BalancedSampler` draws them (the walk without replacement, or
    i.i.d. with ``replacement``), with the plan's class proportions scaled to ``k_s``. The
    whole epoch is then shuffled and sharded like every sampler here (``DistributedSampler``'s
    padding and ``drop_last``; the data-parallel group of ``process_group``).

    Args:
        sources: A ``ConcatDataset``, or a list of datasets or of label vectors.
        proportions: One weight ``>= 0`` per source (normalised).
        temperature: ``T > 0``: ``p_s ∝ n_s ** (1 / T)`` (1: by size, ``math.inf``:
            uniform). With neither, ``T = 1``.
        strategy: For every source, or a list with one per source: any strategy of
            ``BalancedSampler`` (``"over"``, ``"sqrt"``, ``"class"``, ``Power(q)``, ...,
            not ``Feedback``), or None to take the source as it is (its labels are not read).
        sampling_strategy: imbalanced-learn's ``sampling_strategy`` for ``"over"`` and
            ``"under"``: one for all, or a list with one per source.
        num_samples: Samples in one global epoch; default the sources' total size.
        replacement: Draw within classes i.i.d. with replacement instead of walking.
        seed: Shared seed; must be the same on every rank.
        num_replicas: Number of ranks; default from ``torch.distributed`` when each epoch
            starts (1 without a process group).
        rank: This rank; default likewise.
        process_group: The data-parallel group (a ``ProcessGroup`` or a 1-D ``DeviceMesh``)
            whose ranks share the epoch; default the default group.
        drop_last: Drop the tail of the epoch so that it divides evenly among ranks, instead
            of padding it.
        label_fn: ``label_fn(source_dataset, i) -> label``, to read labels a cheap way.

    Attributes:
        shares: ``p_s``, each source's target share.
        source_sizes: Samples in each source.
        source_counts: ``k_s``, each source's samples in every epoch.
        plans: Each source's plan (None for a source of share 0); a source taken as it is
            has one class holding all its samples, drawn as ``"instance"``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For invalid values, with the fix in the message.

    Example:
        >>> sources = [[0] * 6 + [1] * 2, [0, 1, 2, 3]]
        >>> sampler = MixtureSampler(sources, proportions=[1, 1], strategy=["class", None])
        >>> sampler.source_counts, sampler.class_targets()
        ([6, 6], [{0: 3, 1: 3}, None])
        >>> sorted(sampler)[:6]  # source 0: three of class 0 (0..5), three of class 1 (6, 7)
        [0, 1, 3, 6, 7, 7]
    """

    def __init__(
        self,
        sources: Any,
        *,
        proportions: Any = None,
        temperature: float | None = None,
        strategy: Any = None,
        sampling_strategy: Any = "auto",
        num_samples: int | None = None,
        replacement: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        process_group: Any = None,
        drop_last: bool = False,
        label_fn: Callable[[Any, int], Any] | None = None,
    ) -> None:
        self._open(seed, num_replicas, rank, drop_last, process_group)
        self.replacement = check_bool("replacement", replacement)
        parts, self._dataset = _as_sources(sources, label_fn)
        count = len(parts)
        strategies = _per_source("strategy", strategy, count)
        sampling = _per_source("sampling_strategy", sampling_strategy, count)
        for s, chosen in enumerate(strategies):
            if isinstance(chosen, Feedback):
                fail(
                    f"strategy[{s}]" if isinstance(strategy, list | tuple) else "strategy",
                    "a strategy whose targets are fixed at construction",
                    Text("a Feedback"),
                    "Use BalancedSampler(..., Feedback(...)) on one dataset",
                )
        self.source_sizes = [len(p) for p in parts]
        self.shares = mixture_shares(self.source_sizes, proportions, temperature)
        total = sum(self.source_sizes)
        length = check_int("num_samples", num_samples, minimum=1, allow_none=True)
        self._global_length = total if length is None else int(length)
        check_epoch_size("num_samples", self._global_length, EPOCH_BYTES, "Use a smaller one")
        self.source_counts: list[int] = apportion(self.shares, self._global_length).tolist()
        self._offsets = np.concatenate([[0], np.cumsum(self.source_sizes)]).astype(np.int64)
        self._dtype = torch.int32 if total < 2**31 else torch.int64
        self.strategies = strategies
        self.sampling_strategies = sampling
        self.indexes: list[LabelIndex] = []
        self.plans: list[Plan | None] = []
        self._draws: list[EpochDraw | None] = []
        for s, (part, chosen) in enumerate(zip(parts, strategies, strict=True)):
            index = _WholeIndex(len(part)) if chosen is None else resolve_labels(part, label_fn)
            if len(index) != len(part):
                fail(f"sources[{s}]", f"{len(part)} labels", len(index))
            k = self.source_counts[s]
            try:
                rule = "instance" if chosen is None else chosen
                plan = _source_plan(index, rule, sampling[s], k) if k else None
            except (TypeError, ValueError) as error:  # say which source's plan failed
                raise type(error)(f"sources[{s}], strategy={describe(chosen)}: {error}") from error
            self.indexes.append(index)
            self.plans.append(plan)
            self._draws.append(None if plan is None else EpochDraw(plan, None, self.replacement))
        self._digest: str | None = None  # on first use: it reads every source's grouping
        self._ahead = NextOrder()  # the next epoch's shuffle, drawn during a pass
        self._passes = 0
        self._ready()

    def _labelled(self, s: int) -> bool:
        return self.strategies[s] is not None

    def class_targets(self, epoch: int | None = None) -> list[dict[Any, int] | None]:
        """Each source's planned class counts in ``epoch`` (None for a source taken as it is).

        Args:
            epoch: Which epoch; default the epoch of the next pass.
        """
        epoch = self._epoch_arg(epoch)
        found: list[dict[Any, int] | None] = []
        for s, plan in enumerate(self.plans):
            if not self._labelled(s):
                found.append(None)
            else:
                keys = self.indexes[s].keys()
                found.append(plan.as_dict(epoch) if plan else dict.fromkeys(keys, 0))
        return found

    def _draw(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, order)``: the sources' draws joined (source by source), and the shuffle
        (drawn ahead during the last pass, where that paid, or now).

        Where a helper thread may run, it draws the shuffle and then takes sources from the
        same queue as this thread, largest first: each source is drawn by one thread, from its
        own seed, so which thread draws it does not change it.
        """
        length, seed = self._global_length, self.seed
        parts: list[torch.Tensor | None] = [None] * len(self._draws)
        queue = iter(sorted(range(len(parts)), key=lambda s: -self.source_counts[s]))

        def take_sources() -> None:
            for s in queue:
                draw = self._draws[s]
                if draw is not None:
                    parts[s] = draw.picks(_source_seed(seed, s), epoch)

        def shuffle_then_sources(ahead: torch.Tensor | None) -> torch.Tensor:
            order = ahead if ahead is not None else shuffle_order(length, seed, epoch)
            take_sources()
            return order

        ahead = self._ahead.take(length, seed, epoch)
        early = Early(shuffle_then_sources, ahead, helper=helper_allowed(length))
        take_sources()
        order = early.result()
        return join_sources(parts, self._offsets[:-1].tolist(), self._dtype), order

    def _source(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._draw(epoch)

    def _chunks(self, current: Pass, world: int, rank: int) -> Iterator[list[Any]]:
        chunks = super()._chunks(current, world, rank)
        self._passes += 1
        if self._passes > 1 and ahead_pays(self._global_length):  # epochs run one by one
            draw = partial(self._draw_ahead, self.seed, current.epoch + 1)
            return alongside(chunks, draw, helper=True)
        return chunks

    def _draw_ahead(self, seed: int, epoch: int) -> None:
        length = self._global_length
        self._ahead.put(length, seed, epoch, shuffle_order(length, seed, epoch))

    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor:
        """The global epoch (before sharding) as one tensor, in iteration order."""
        values, order = self._draw(self._epoch_arg(epoch))
        return values.index_select(0, order)

    def mixture_report(self, epoch: int | None = None) -> dict[str, Any]:
        """What one global epoch holds (before sharding), read back from its indices, beside
        the targets: each source's share, and each balanced source's class counts.

        Args:
            epoch: Which epoch; default the epoch of the next pass.

        Returns:
            ``{"length", "total_variation", "sources"}``; ``sources`` holds, per source,
            ``size``, ``target_share`` (``p_s``), ``share`` (realised), ``target`` (``k_s``),
            ``drawn`` and ``classes`` (``{class: (target, drawn)}``, None for a source taken
            as it is). ``total_variation`` is half the sum of ``|share - target_share|``.

        Example:
            >>> sampler = MixtureSampler([[0, 0, 0, 1], [5] * 4], proportions=[3, 1],
            ...                          strategy=["class", None], num_samples=8)
            >>> report = sampler.mixture_report()
            >>> [(s["target"], s["drawn"], s["classes"]) for s in report["sources"]]
            [(6, 6, {0: (3, 3), 1: (3, 3)}), (2, 2, None)]
        """
        epoch = self._epoch_arg(epoch)
        values = self._draw(epoch)[0].numpy().astype(np.int64)
        owner = np.searchsorted(self._offsets[1:], values, side="right")
        drawn = np.bincount(owner, minlength=len(self.source_sizes))
        targets = self.class_targets(epoch)
        rows = []
        for s, size in enumerate(self.source_sizes):
            classes = None
            wanted = targets[s]
            if wanted is not None:
                index = self.indexes[s]
                codes = np.empty(len(index), dtype=np.int64)
                codes[index.order.numpy()] = np.repeat(np.arange(index.num_classes), index.counts)
                mine = values[owner == s] - int(self._offsets[s])
                got = np.bincount(codes[mine], minlength=index.num_classes).tolist()
                classes = {k: (wanted[k], n) for k, n in zip(index.keys(), got, strict=True)}
            rows.append(
                {
                    "size": size,
                    "target_share": float(self.shares[s]),
                    "share": float(drawn[s]) / max(values.shape[0], 1),
                    "target": self.source_counts[s],
                    "drawn": int(drawn[s]),
                    "classes": classes,
                }
            )
        variation = 0.5 * sum(abs(r["share"] - r["target_share"]) for r in rows)
        return {"length": int(values.shape[0]), "total_variation": variation, "sources": rows}

    def _num_indices(self) -> int:
        return int(self._offsets[-1])

    def _fingerprint(self) -> str:
        if self._digest is None:
            self._digest = _digest(self.indexes)
        return self._digest

    def _own_settings(self, epoch: int) -> dict[str, Any]:
        return {
            "source_counts": list(self.source_counts),
            "replacement": self.replacement,
            "sources": [
                None if plan is None else describe_plan(plan, epoch) for plan in self.plans
            ],
            "sampling_strategies": [describe(s) for s in self.sampling_strategies],
        }

    def extra_repr(self) -> str:
        shares = ", ".join(f"{p:.3g}" for p in self.shares)
        chosen = ", ".join(describe(s) for s in self.strategies)
        return (
            f"sources={len(self.source_sizes)}, shares=[{shares}], strategies=[{chosen}], "
            f"global_length={self._global_length}"
        )


def _digest(indexes: list[LabelIndex]) -> str:
    digest = hashlib.blake2b(digest_size=12)
    for index in indexes:
        digest.update(f"{len(index)}:{index.fingerprint()};".encode())
    return digest.hexdigest()
