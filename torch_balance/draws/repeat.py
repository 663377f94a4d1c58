"""Repeat-factor copies: how many times each image appears in an epoch, and in which order."""

from __future__ import annotations

import torch

__all__ = ["repeat_copies", "repeat_values"]


def repeat_copies(
    whole: torch.Tensor, fraction: torch.Tensor | None, length: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch of repeat-factor sampling: ``(copies per image, positions)``.

    Image ``i`` gets ``whole[i]`` copies, plus one with probability ``fraction[i]`` when
    ``fraction`` is given (stochastic rounding). The copies are shuffled, then cut to
    ``length`` or, when fewer were drawn, extended by repeating the start of the shuffled
    order, so every epoch has the same length. The epoch is
    ``repeat_values(copies)[positions]``.

    Example:
        >>> from torch_balance._rng import generator
        >>> copies, order = repeat_copies(torch.tensor([1, 3]), None, 4, generator(0, 1))
        >>> copies.tolist(), sorted(repeat_values(copies)[order].tolist())
        ([1, 3], [0, 1, 1, 1])
    """
    if fraction is None:
        copies = whole
    else:
        coin = torch.rand(fraction.shape[0], generator=g, dtype=torch.float64)
        copies = whole + (coin < fraction)
    drawn = int(copies.sum())
    dtype = torch.int32 if drawn < 2**31 else torch.int64
    order = torch.randperm(drawn, generator=g, dtype=dtype)
    if drawn > length:
        order = order[:length]
    elif drawn < length:
        order = order.repeat(-(-length // drawn))[:length]
    return copies, order


def repeat_values(copies: torch.Tensor) -> torch.Tensor:
    """Image ``i`` repeated ``copies[i]`` times, in image order."""
    n = copies.shape[0]
    images = torch.arange(n, dtype=torch.int32 if n < 2**31 else torch.int64)
    return torch.repeat_interleave(images, copies)
