"""Kernels of :class:`~torch_balance.WeightedSampler`: draws from per-sample weights.

* :func:`iid_draws` (and the chunked form the sampler hands out): i.i.d. with replacement,
  by inverting the cumulative weights at sorted uniform points;
* :func:`successive_draws`: without replacement (exponential keys, the Efraimidis-Spirakis
  order);
* :class:`ExactLayout`: each sample ``floor`` or ``ceil`` of its share, a low-discrepancy run
  through a fixed random layout.

Every draw takes its generator from the caller (seeded from seed, epoch and sub-stream).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from torch_balance._rng import Stream, generator
from torch_balance._validation import internal, scaled_weights

__all__ = [
    "ExactLayout",
    "WeightLookup",
    "chunk_size",
    "iid_chunk",
    "iid_draws",
    "index_dtype",
    "successive_draws",
]

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def index_dtype(n: int) -> torch.dtype:
    return torch.int32 if n < 2**31 else torch.int64


def _exponentials(count: int, g: torch.Generator) -> torch.Tensor:
    """``count`` standard exponentials, float64: ``-log(1 - U)``."""
    e = torch.rand(count, generator=g, dtype=torch.float64)
    return e.neg_().log1p_().neg_()


def iid_draws(weights: torch.Tensor, count: int, g: torch.Generator) -> torch.Tensor:
    """``count`` i.i.d. draws with ``P(i) = w_i / sum(w)``, in random order.

    Sorted draws (see the module's notes), then shuffled: a uniformly random order of an
    i.i.d. sample is an i.i.d. sequence. Zero-weight samples are never drawn.

    Args:
        weights: float64 weights, finite, ``>= 0``, not all zero.
        count: How many draws.
        g: The generator.

    Returns:
        A 1-D tensor of sample indices (int32 below 2**31 samples, else int64).

    Example:
        >>> w = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
        >>> picks = iid_draws(w, 10_000, torch.Generator().manual_seed(0))
        >>> torch.bincount(picks, minlength=3)[0].item(), 7_000 < int((picks == 2).sum()) < 8_000
        (0, True)
    """
    return iid_chunk(WeightLookup(weights), count, g)


class WeightLookup:
    """The float64 cumulative sum of the weights and the last positive weight's index."""

    def __init__(self, weights: torch.Tensor) -> None:
        self.cdf = torch.cumsum(scaled_weights(weights), 0)
        # the first place where the cumulative sum reaches the total
        self.last = int(torch.searchsorted(self.cdf, self.cdf[-1:]))
        self.dtype = index_dtype(weights.shape[0])
        self.cdf_array = self.cdf.numpy()
        self.numpy_dtype = np.int32 if self.dtype == torch.int32 else np.int64


def iid_chunk(lookup: WeightLookup, count: int, g: torch.Generator) -> torch.Tensor:
    """``count`` i.i.d. draws in random order: sorted uniforms looked up, then shuffled."""
    cdf = lookup.cdf
    sums = _exponentials(count + 1, g).cumsum_(0)
    queries = sums[:count].mul_(float(cdf[-1]) / float(sums[-1]))
    # numpy's search carries each sorted query's answer to the next (torch's starts every
    # search afresh): the same indices, about 1.4x faster here, and it releases the GIL too
    found = np.searchsorted(lookup.cdf_array, queries.numpy(), side="right")
    del sums, queries
    # a query that rounds up to the total would land past the end: the last positive weight
    np.minimum(found, lookup.last, out=found)
    picks = torch.from_numpy(found.astype(lookup.numpy_dtype, copy=False))
    del found
    order = torch.randperm(count, generator=g, dtype=index_dtype(count))
    return picks.index_select(0, order)


# The i.i.d. epoch is drawn in chunks of its positions, each an independent i.i.d. sample
# with its own generator: shuffling a chunk that stays in cache is faster than shuffling the
# epoch, the chunks are drawn in a helper thread while earlier ones are handed out, and a
# rank resuming mid-epoch draws from the chunk it stopped in.
MIN_CHUNK = 1 << 20
CHUNKS = 8


def chunk_size(count: int) -> int:
    """Positions per i.i.d. chunk for an epoch of ``count``: an eighth, at least 2**20.

    Example:
        >>> chunk_size(10), chunk_size(10**7)
        (1048576, 1250000)
    """
    return max(MIN_CHUNK, -(-count // CHUNKS))


def successive_draws(weights: torch.Tensor, count: int, g: torch.Generator) -> torch.Tensor:
    """``count`` draws without replacement, in draw order, as ``torch.multinomial`` draws them.

    The keys are ``log E_i - log w_i`` (``E_i`` exponential); the ``count`` smallest, in
    increasing order, are a successive-sampling sequence (Efraimidis and Spirakis, 2006).
    Zero weights get the key ``+inf`` and are never drawn.

    Args:
        weights: float64 weights with at least ``count`` of them positive.
        count: How many draws.
        g: The generator.

    Returns:
        A 1-D tensor of distinct sample indices in draw order.

    Example:
        >>> w = torch.tensor([0.0, 1.0, 1.0, 5.0], dtype=torch.float64)
        >>> sorted(successive_draws(w, 3, torch.Generator().manual_seed(0)).tolist())
        [1, 2, 3]
    """
    n = weights.shape[0]
    keys = _exponentials(n, g).log_()
    keys.sub_(torch.log(weights))
    if 4 * count >= n:
        order = torch.sort(keys).indices[:count]
    else:
        order = torch.topk(keys, count, largest=False, sorted=True).indices
    return order.to(index_dtype(n))


class ExactLayout:
    """The exact mode's arrangement of one set of weights: floors, layout, comb.

    Sample ``i`` is due ``s_i = K w_i / sum(w)`` copies per epoch. It gets ``floor(s_i)``
    plus ``x_i(e)`` in ``{0, 1}``: the remainders ``r_i = s_i - floor(s_i)``, which sum to an
    integer ``R``, lie end to end on a circle of length ``R`` in an order drawn once from the
    seed, and epoch ``e`` takes the samples whose segment holds a point of the comb
    ``u_e + j`` (``j = 0 .. R-1``), with ``u_e = u_0 + e * golden ratio`` modulo 1. Exactly
    ``R`` segments are hit, so every epoch has ``K`` indices, and each sample's running count
    tracks ``e * s_i`` with the discrepancy of the golden-ratio sequence (logarithmic in the
    number of epochs). Positions are integers in units of ``2**-bits``, so the epoch's length
    is exact whatever the rounding of the float weights.

    Args:
        weights: float64 weights.
        count: ``K``, the epoch length.
        seed: The sampler's seed (the layout and ``u_0`` come from it).
        at_most_one: Cap every share at one copy (draws without replacement).

    Example:
        >>> layout = ExactLayout(torch.tensor([1.0, 2.0, 0.0, 5.0], dtype=torch.float64), 12, 0)
        >>> layout.shares.tolist()
        [1.5, 3.0, 0.0, 7.5]
        >>> [layout.copies(e).tolist() for e in range(3)]
        [[2, 3, 0, 7], [2, 3, 0, 7], [1, 3, 0, 8]]
        >>> sum(layout.copies(e) for e in range(100)).tolist()   # 100 epochs: 150, 300, 0, 750
        [151, 300, 0, 749]
    """

    def __init__(
        self, weights: torch.Tensor, count: int, seed: int, *, at_most_one: bool = False
    ) -> None:
        n = weights.shape[0]
        weights = scaled_weights(weights)
        shares = weights * (count / float(weights.sum()))
        if at_most_one:
            shares.clamp_(max=1.0)
        self.shares = shares
        floors = torch.floor(shares).to(torch.int64)
        spare = count - int(floors.sum())
        if spare < 0:  # rounding pushed a few shares just past an integer: take them back
            over = torch.nonzero(floors > 0).reshape(-1)[:-spare]
            floors[over] -= 1
            spare = 0
        remainders = (shares - floors).clamp_(0.0, 1.0)
        self.floors = floors
        self.spare = spare
        self.bits = bits = max(8, min(52, 61 - max(spare, 1).bit_length()))
        g = generator(seed, Stream.WEIGHTED_EXACT)
        self.layout = torch.randperm(n, generator=g, dtype=index_dtype(n))
        self.start = int(torch.randint(0, 2**52, (1,), generator=g)) >> (52 - bits)
        self.step = round(GOLDEN * 2**bits) | 1
        scaled = torch.floor(remainders.index_select(0, self.layout) * 2.0**bits)
        units = scaled.to(torch.int64)
        # Make the circle exactly spare * 2**bits long: spread the rounding over the samples
        # with a remainder, a unit or so each (segments stay within [0, 2**bits]).
        missing = (spare << bits) - int(units.sum())
        if missing:
            eligible = torch.nonzero(units > 0).reshape(-1)
            internal(eligible.numel() > 0, "exact mode: no remainder to adjust")
            each, rest = divmod(abs(missing), eligible.numel())
            delta = torch.full((eligible.numel(),), each, dtype=torch.int64)
            delta[:rest] += 1
            units.index_add_(0, eligible, delta if missing > 0 else -delta)
            units.clamp_(0, 2**bits)
            left = (spare << bits) - int(units.sum())
            if left:  # the clamp undid some (remainders all near 1 or 0): fill where room is
                room = torch.zeros_like(units)
                room[eligible] = (2**bits - units if left > 0 else units)[eligible]
                delta = (abs(left) - (torch.cumsum(room, 0) - room)).clamp_(min=0)
                units += torch.minimum(delta, room) * (1 if left > 0 else -1)
        self.ends = torch.cumsum(units, 0)
        internal(
            self.ends.numel() == 0 or int(self.ends[-1]) == spare << bits,
            "exact mode: the remainders do not add up to the spare copies",
        )

    def offset(self, epoch: int) -> int:
        """Where the comb stands in ``epoch``, in units of ``2**-bits``."""
        return (self.start + epoch * self.step) % (1 << self.bits)

    def copies(self, epoch: int) -> torch.Tensor:
        """Copies of every sample in ``epoch`` (int64, summing to ``K``)."""
        u = self.offset(epoch)
        past = torch.bitwise_right_shift(self.ends - u, self.bits)
        before = torch.empty_like(past)
        before[0] = (0 - u) >> self.bits
        before[1:] = past[:-1]
        hits = past - before
        out = self.floors.clone()
        out.index_add_(0, self.layout.to(torch.int64), hits)
        return out
