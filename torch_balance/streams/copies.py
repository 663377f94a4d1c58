"""Copy counts of a manifest epoch: how many times each sample is emitted, and one reader's
cut or pad to its share of the rank's fixed length, taken from each class in proportion to the
plan.

A reader computes the copies of its own samples only (:func:`reader_copies`), in time and
memory of its own shards plus a few rows of per-class counts, never of the whole collection.
Without replacement, a sample's index within its class comes from per-class counts of the
shards before its own (:meth:`~torch_balance.streams.Manifest.class_prefix`), and a keyed
permutation of each class says which samples take the class's extra copies
(:func:`keyed_copies`). With replacement, class c's ``t_c`` copies fall on its ``n_c``
samples as a multinomial, ``Multinomial(t_c, uniform)``, as ``BalancedSampler`` draws them;
the multinomial is split down a fixed binary tree over the shards, a node's copies of each
class going to its left half as ``Binomial(m_c, n_c(left) / n_c(node))``, drawn for every
class at once from a generator keyed by (seed, epoch, node) (:func:`shard_class_copies`), so
a reader visits only the paths to its own shards; inside a shard the same halving spreads
each class's copies over its samples, keyed by (seed, epoch, shard) (:func:`spread_copies`).
:func:`epoch_copies` is the sampler's whole-epoch draw, the reference the streams no longer
run.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch

from torch_balance._apportion import apportion
from torch_balance._rng import Stream, generator, mix_seed
from torch_balance.draws import WalkCache, draw_epoch, permute
from torch_balance.strategies import Plan

if TYPE_CHECKING:
    from torch_balance.streams.manifest import Manifest

__all__ = [
    "binomial_split",
    "epoch_copies",
    "fit_copies",
    "keyed_copies",
    "reader_copies",
    "shard_class_copies",
    "split_in_proportion",
    "spread_copies",
    "within_class_index",
]

#: The largest count ``torch.binomial`` is given at once: float64 holds integers exactly up to
#: ``2 ** 53``; a larger count is drawn as a sum of binomials of at most this many trials.
EXACT_COUNT = 1 << 52

#: A prefix row is carried forward over at most this many shards' codes (else asked of the
#: manifest afresh), so a reader of many neighbouring shards pays each shard's codes once.
PREFIX_CARRY = 8


def epoch_copies(
    plan: Plan, seed: int, epoch: int, *, replacement: bool = False, cache: WalkCache | None = None
) -> np.ndarray:
    """How many times each sample appears in ``BalancedSampler``'s epoch (same plan and seed):
    the whole epoch drawn at once, in time and memory of the whole collection (the reference;
    a stream reader uses :func:`reader_copies`).

    Example:
        >>> from torch_balance import BalancedSampler, make_plan
        >>> labels = [0, 0, 0, 1]
        >>> epoch_copies(make_plan(labels, "over"), 0, 0).tolist()
        [1, 1, 1, 3]
    """
    picks = draw_epoch(plan, seed, epoch, replacement=replacement, cache=cache)
    return np.bincount(picks.numpy(), minlength=len(plan.index)).astype(np.int64)


def split_in_proportion(total: int, weights: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Split ``total`` among classes in proportion to ``weights`` (largest remainder), none
    past its ``room``: a class that is full passes its share on to the others, in proportion.

    Example:
        >>> split_in_proportion(6, np.array([1.0, 1.0, 1.0]), np.array([9, 9, 1])).tolist()
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


def fit_copies(
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
        >>> cut = fit_copies(copies, codes, 4, np.array([4.0, 4.0]), torch.Generator())
        >>> int(cut[:4].sum()), int(cut[4])
        (2, 2)
    """
    planned = int(copies.sum())
    if total == planned:
        return copies
    # a reader that plans nothing at all pads from the samples it reads, each once a round
    base = copies if planned > 0 else np.ones_like(copies)
    per_class = np.bincount(codes, weights=base, minlength=weights.shape[0]).astype(np.int64)
    if total < planned:
        change = -split_in_proportion(planned - total, weights, per_class)
    else:
        room = np.where(per_class > 0, total, 0)
        change = split_in_proportion(total - planned, weights, room)
    fitted = copies.copy()
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(weights.shape[0] + 1))
    for code in np.flatnonzero(change).tolist():
        mine = order[bounds[code] : bounds[code + 1]]
        have, step = int(per_class[code]), int(change[code])
        owner = np.repeat(mine, base[mine])  # one entry per planned copy
        if step < 0:  # the cut: which planned copies go
            picks = torch.randperm(have, generator=g)[:-step]
            fitted -= np.bincount(owner[picks.numpy()], minlength=copies.shape[0])
        else:  # the pad: which planned copies are repeated
            rounds = -(-step // have)
            picks = torch.cat([torch.randperm(have, generator=g) for _ in range(rounds)])
            fitted += np.bincount(owner[picks[:step].numpy()], minlength=copies.shape[0])
    return fitted


def within_class_index(codes: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Each sample's index within its class over the whole collection: ``before[c]`` samples
    of class c come before this shard, plus its rank among the shard's samples of c.

    Example:
        >>> within_class_index(np.array([1, 0, 1, 1]), np.array([5, 2])).tolist()
        [2, 5, 3, 4]
    """
    codes = np.asarray(codes, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    grouped = codes[order]
    rank = np.empty(codes.shape[0], dtype=np.int64)
    rank[order] = np.arange(codes.shape[0]) - np.searchsorted(grouped, grouped, side="left")
    return before[codes] + rank


def keyed_copies(
    codes: np.ndarray,
    index: np.ndarray,
    counts: np.ndarray,
    targets: np.ndarray,
    seed: int,
    epoch: int,
) -> np.ndarray:
    """Copies of samples of class ``codes`` at within-class ``index`` in a manifest epoch:
    class c's ``targets[c]`` copies over its ``counts[c]`` samples are ``q = t // n`` each,
    and one more for the ``r = t % n`` samples whose image under the class's keyed
    permutation (:func:`~torch_balance.draws.permute.permute`, keyed by seed, epoch and
    class) is below ``r``. Over every reader each class gets exactly its target, each sample
    ``floor`` or ``ceil`` of its class's share, whoever computes which part.

    Example:
        >>> codes, index = np.array([0, 0, 0, 1]), np.array([0, 1, 2, 0])
        >>> keyed_copies(codes, index, np.array([3, 1]), np.array([3, 3]), 0, 0).tolist()
        [1, 1, 1, 3]
        >>> int(keyed_copies(codes, index, np.array([3, 1]), np.array([1, 1]), 0, 0)[:3].sum())
        1
    """
    codes = np.asarray(codes, dtype=np.int64)
    n, t = counts[codes], targets[codes]
    copies = t // n
    rest = t % n
    some = np.flatnonzero(rest > 0)
    if some.size:
        present = np.unique(codes[some])
        keys = np.array(
            [mix_seed(seed, Stream.STREAM_COPIES, epoch, c) for c in present.tolist()],
            dtype=np.uint64,
        )
        key = keys[np.searchsorted(present, codes[some])]
        copies[some] += permute(index[some], n[some], key) < rest[some]
    return copies


def binomial_split(copies: np.ndarray, share: np.ndarray, g: torch.Generator) -> np.ndarray:
    """``Binomial(copies[i], share[i])`` for every entry, as ``int64`` in ``[0, copies[i]]``
    (so ``copies - result`` is the other part, and no copy is lost or made).

    ``torch.binomial`` draws in float64 (the BTRS rejection sampler of Hörmann, J. Statist.
    Comput. Simul. 46, 1993, above 10 expected successes; inversion below), exact for counts
    up to :data:`EXACT_COUNT`; a larger count is drawn in pieces of at most that many trials.
    Entries with no copies, or a share of 0 or 1, take no draw: the stream ``g`` consumes
    depends on the entries that need one, the same for every reader that asks the same
    question. (numpy's ``Generator.binomial`` takes int64 counts, but the project draws from
    torch generators only, and float64 holds every count an epoch can plan.)

    Example:
        >>> got = binomial_split(np.array([10, 0, 7]), np.array([0.5, 0.5, 1.0]), torch.Generator())
        >>> 0 <= int(got[0]) <= 10, got[1:].tolist()
        (True, [0, 7])
    """
    copies = np.asarray(copies, dtype=np.int64)
    out = np.where(share >= 1.0, copies, 0).astype(np.int64)
    need = np.flatnonzero((copies > 0) & (share > 0.0) & (share < 1.0))
    rest = copies[need]
    probability = torch.from_numpy(np.ascontiguousarray(share[need], dtype=np.float64))
    while need.size:
        trials = np.minimum(rest, EXACT_COUNT)
        got = torch.binomial(
            torch.from_numpy(trials.astype(np.float64)), probability, generator=g
        ).numpy()
        # a sampler's rare slip past the bounds must not make or lose copies
        out[need] += np.clip(got.astype(np.int64), 0, trials)
        rest = rest - trials
        more = rest > 0
        need, rest, probability = need[more], rest[more], probability[torch.from_numpy(more)]
    return out


class _Prefixes:
    """Per-class counts of the shards before a boundary, for the boundaries one reader needs:
    carried forward from the last one computed over a few shards' codes, else asked of the
    manifest (:meth:`~torch_balance.streams.Manifest.class_prefix`)."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.rows: dict[int, np.ndarray] = {
            0: np.zeros(len(manifest.classes), dtype=np.int64),
            manifest.num_shards: manifest.class_counts(),
        }

    def fill(self, bounds: Iterable[int]) -> None:
        """Compute the rows of ``bounds`` in one sweep from left to right."""
        manifest, rows = self.manifest, self.rows
        known = sorted(rows)
        for b in sorted(set(bounds) - set(rows)):
            last = known[bisect_right(known, b) - 1]
            if b - last <= PREFIX_CARRY:
                codes = manifest.shard_codes(last, b)
                rows[b] = rows[last] + np.bincount(codes, minlength=len(manifest.classes))
            else:
                rows[b] = np.asarray(manifest.class_prefix(b), dtype=np.int64)
            known.insert(bisect_right(known, b), b)


def _nodes(lo: int, hi: int, wanted: list[int]) -> Iterable[tuple[int, int, list[int]]]:
    """The inner nodes ``[lo, hi)`` of the binary tree over the shards on the paths to the
    ``wanted`` shards (sorted), each with the wanted shards below it, parents first."""
    stack = [(lo, hi, wanted)]
    while stack:
        lo, hi, below = stack.pop()
        if hi - lo > 1:
            yield lo, hi, below
            mid = (lo + hi) // 2
            cut = bisect_right(below, mid - 1)
            for a, b, part in ((mid, hi, below[cut:]), (lo, mid, below[:cut])):
                if part:
                    stack.append((a, b, part))


def shard_class_copies(
    manifest: Manifest, shards: Iterable[int], targets: np.ndarray, seed: int, epoch: int
) -> dict[int, np.ndarray]:
    """With replacement: each asked shard's copies of each class (a row per shard, in
    :attr:`~torch_balance.streams.Manifest.classes` order), the epoch's ``Multinomial(t_c,
    uniform)`` over class c's samples summed per shard.

    The root of a binary tree over the shards ``[0, S)`` holds the ``targets``; node ``[lo,
    hi)`` with ``m_c`` copies of class c gives its left half ``[lo, mid)`` a
    ``Binomial(m_c, n_c(lo, mid) / n_c(lo, hi))`` of them (``n_c(a, b)``: class c's samples in
    shards ``a`` to ``b``), all classes at once from one generator keyed by (seed, epoch, lo,
    hi). Only the paths to the asked shards are drawn: ``O(log S)`` nodes each, every node
    drawn the same by whoever passes through it, so over all shards each class's copies are
    its target exactly.

    Raises:
        AssertionError: If a class with copies has no samples below a node (targets for a
            class the manifest lacks).

    Example:
        >>> from torch_balance.streams.manifest import Manifest
        >>> m = Manifest({"a": [0, 0], "b": [0, 1], "c": [1]})
        >>> rows = shard_class_copies(m, range(3), np.array([6, 6]), 0, 0)
        >>> sum(rows.values()).tolist(), rows[0][1].item()
        ([6, 6], 0)
    """
    wanted = sorted(set(int(s) for s in shards))
    size = manifest.num_shards
    targets = np.asarray(targets, dtype=np.int64)
    if not wanted:
        return {}
    asked = set(wanted)
    nodes = list(_nodes(0, size, wanted))
    prefixes = _Prefixes(manifest)
    prefixes.fill(b for lo, hi, _ in nodes for b in (lo, (lo + hi) // 2, hi))
    rows = prefixes.rows
    held: dict[tuple[int, int], np.ndarray] = {(0, size): targets}
    out: dict[int, np.ndarray] = {}
    if size == 1:
        out[0] = targets
    for lo, hi, _ in nodes:
        mid = (lo + hi) // 2
        copies = held.pop((lo, hi))
        samples, left_samples = rows[hi] - rows[lo], rows[mid] - rows[lo]
        if bool(((copies > 0) & (samples == 0)).any()):
            raise AssertionError(
                f"shards {lo} to {hi - 1} hold copies of a class without samples there"
            )
        share = np.divide(left_samples, samples, out=np.zeros(samples.shape[0]), where=samples > 0)
        left = binomial_split(copies, share, generator(seed, Stream.STREAM_SPLIT, epoch, lo, hi))
        for a, b, part in ((lo, mid, left), (mid, hi, copies - left)):
            if b - a == 1:
                if a in asked:
                    out[a] = part
            else:
                held[a, b] = part
    return {s: out[s] for s in wanted}


def spread_copies(codes: np.ndarray, per_class: np.ndarray, g: torch.Generator) -> np.ndarray:
    """Each sample's copies when ``per_class[c]`` copies fall on the samples of class c in
    ``codes`` as ``Multinomial(per_class[c], uniform)``: each class's samples are halved
    again and again, the left half taking a ``Binomial(m, left / size)`` of a part's ``m``
    copies, every part of every class at once (one draw per level: ``ceil(log2)`` of the
    largest class's samples), in time of the samples, however many the copies.

    Raises:
        AssertionError: If a class with copies has no samples in ``codes``.

    Example:
        >>> got = spread_copies(np.array([0, 1, 0, 0]), np.array([5, 2]), torch.Generator())
        >>> int(got[[0, 2, 3]].sum()), int(got[1])
        (5, 2)
    """
    codes = np.asarray(codes, dtype=np.int64)
    per_class = np.asarray(per_class, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(per_class.shape[0] + 1))
    present = np.flatnonzero(per_class > 0)
    start, stop = bounds[present], bounds[present + 1]
    if bool((stop == start).any()):
        raise AssertionError(
            f"copies of class {int(present[stop == start][0])} but none of its samples here"
        )
    size, copies = stop - start, per_class[present]
    grouped = np.zeros(codes.shape[0], dtype=np.int64)
    while start.size:
        done = size == 1
        grouped[start[done]] = copies[done]
        start, size, copies = start[~done], size[~done], copies[~done]
        half = size // 2
        left = binomial_split(copies, half / np.maximum(size, 1), g)
        start = np.concatenate([start, start + half])
        size = np.concatenate([half, size - half])
        copies = np.concatenate([left, copies - left])
        some = copies > 0
        start, size, copies = start[some], size[some], copies[some]
    out = np.empty_like(grouped)
    out[order] = grouped
    return out


def reader_copies(
    manifest: Manifest,
    parts: list[tuple[int, int, int]],
    targets: np.ndarray,
    seed: int,
    epoch: int,
    *,
    replacement: bool = False,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each part ``(shard, start, step)`` a reader reads: the class codes and the copies
    of its samples (positions ``start::step`` of the shard), in time and memory of those
    shards plus a few rows of per-class counts each, never of the whole collection.

    Without replacement each sample gets floor or ceil of its class's share
    (:func:`keyed_copies`); with ``replacement`` the copies are a multinomial
    (:func:`shard_class_copies`, then :func:`spread_copies`, whose draw for a shard is the
    same for every reader that shares it). Either way, over all readers each class's copies
    are its target exactly.

    Example:
        >>> from torch_balance.streams.manifest import Manifest
        >>> m = Manifest({"a": [0, 0], "b": [0, 1]})
        >>> [c.tolist() for _, c in reader_copies(m, [(1, 0, 1)], np.array([3, 3]), 0, 0)]
        [[1, 3]]
        >>> found = reader_copies(m, [(1, 1, 1)], np.array([3, 3]), 0, 0, replacement=True)
        >>> [c.tolist() for _, c in found]
        [[3]]
    """
    out = []
    if replacement:
        rows = shard_class_copies(manifest, [s for s, _, _ in parts], targets, seed, epoch)
        for shard, start, step in parts:
            codes = manifest.shard_codes(shard)
            g = generator(seed, Stream.STREAM_SPREAD, epoch, shard)
            copies = spread_copies(codes, rows[shard], g)
            out.append((codes[start::step], copies[start::step]))
        return out
    counts = manifest.class_counts()
    for shard, start, step in parts:
        codes = manifest.shard_codes(shard)
        index = within_class_index(codes, manifest.class_prefix(shard))[start::step]
        mine = codes[start::step]
        out.append((mine, keyed_copies(mine, index, counts, targets, seed, epoch)))
    return out
