"""Mixtures of sources: each source's share of an epoch, and the epoch put together.

A source's share is given (``proportions``) or follows its size with a temperature,
``p_s ∝ n_s ** (1 / T)``, the rule of multilingual training (Conneau et al., ACL 2020, use
``α = 1 / T``): ``T = 1`` is proportional to size, larger ``T`` flattens the mix towards
uniform, ``T -> inf`` is uniform. A map-style epoch gives each source its exact count
(:func:`~torch_balance._apportion.apportion` of the shares), draws each source's part by its
own plan (:func:`~torch_balance.draws.fast.draw_epoch`), and shuffles the whole;
:func:`source_choices` is the i.i.d. choice of a source per sample that streams use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from torch_balance.strategies import _power_weights

__all__ = ["join_sources", "source_choices", "temperature_shares"]


def temperature_shares(sizes: Sequence[int] | np.ndarray, temperature: float) -> np.ndarray:
    """``p_s ∝ n_s ** (1 / T)``: each source's share from its size and a temperature.

    These are the weights of ``Power(1 / T)`` over the sources' sizes (one computation, the
    plan's: by logarithms where a power would overflow); ``temperature=math.inf`` is uniform.

    Args:
        sizes: Samples per source, each ``>= 1``.
        temperature: ``T > 0`` (``math.inf`` allowed).

    Returns:
        ``float64`` shares summing to 1.

    Example:
        >>> temperature_shares([900, 100], 1.0).tolist()
        [0.9, 0.1]
        >>> temperature_shares([900, 100], 2.0).round(3).tolist()
        [0.75, 0.25]
        >>> temperature_shares([900, 100], math.inf).tolist()
        [0.5, 0.5]
    """
    q = 0.0 if math.isinf(temperature) else 1.0 / temperature
    counts = np.asarray(sizes, dtype=np.int64)
    if math.isinf(q):  # T so small that 1 / T overflows: the limit, all on the largest sources
        top = (counts == counts.max()).astype(np.float64)
        return top / top.sum()
    weights = _power_weights(counts, q)
    return weights / weights.sum()


def join_sources(
    parts: Sequence[torch.Tensor | None], offsets: Sequence[int], dtype: torch.dtype
) -> torch.Tensor:
    """One tensor of indices into the concatenation: source ``s``'s part (its own indices)
    shifted by ``offsets[s]``, the sources one after the other (None: a source without
    samples this epoch).

    Example:
        >>> join_sources([torch.tensor([0, 1]), None, torch.tensor([2])], [0, 5, 7], torch.int64)
        tensor([0, 1, 9])
    """
    length = sum(int(p.shape[0]) for p in parts if p is not None)
    out = torch.empty(length, dtype=dtype)
    at = 0
    for part, offset in zip(parts, offsets, strict=True):
        if part is None or part.shape[0] == 0:
            continue
        n = int(part.shape[0])
        torch.add(part.to(dtype), offset, out=out[at : at + n])
        at += n
    return out


def source_choices(shares: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` i.i.d. source codes, source ``s`` with probability ``shares[s]`` (sources of
    share 0 never come; the shares need not sum to 1).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> source_choices(torch.tensor([0.0, 1.0], dtype=torch.float64), 3, g).tolist()
        [1, 1, 1]
    """
    return torch.multinomial(shares, count, replacement=True, generator=generator)
