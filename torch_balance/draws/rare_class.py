"""Rare-class sampling's kernel: pick a class from its probabilities, then an image that
holds enough of it (DAFormer's rare class sampling, Hoyer et al., CVPR 2022, §3.3).

The images of each class are kept as one CSR layout (``offsets``, ``members``); an epoch is
``length`` i.i.d. ``(image, class)`` picks from one generator.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["class_members", "rare_class_draws"]


def class_members(eligible: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(offsets, members)``: the images of class ``c`` are
    ``members[offsets[c]:offsets[c + 1]]``, in increasing order.

    Args:
        eligible: ``(images, classes)`` bool array, True where an image holds enough of a class.

    Example:
        >>> offsets, members = class_members(np.array([[True, False], [True, True]]))
        >>> offsets.tolist(), members.tolist()
        ([0, 2, 3], [0, 1, 1])
    """
    per_class = eligible.sum(axis=0).astype(np.int64)
    offsets = np.zeros(eligible.shape[1] + 1, dtype=np.int64)
    np.cumsum(per_class, out=offsets[1:])
    # column-major nonzero: class by class, images in increasing order within each
    members = np.nonzero(eligible.T)[1].astype(np.int64)
    return torch.from_numpy(offsets), torch.from_numpy(members)


def rare_class_draws(
    probabilities: torch.Tensor,
    offsets: torch.Tensor,
    members: torch.Tensor,
    length: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, classes)`` of ``length`` i.i.d. picks: class ``c`` with probability
    ``probabilities[c]``, then one of its images uniformly.

    Every class with a positive probability must have at least one image in ``members``.

    Example:
        >>> from torch_balance._rng import Stream, generator
        >>> offsets, members = class_members(np.array([[True, False], [True, True]]))
        >>> p = torch.tensor([0.0, 1.0], dtype=torch.float64)
        >>> g = generator(0, Stream.RARE_CLASS)
        >>> images, classes = rare_class_draws(p, offsets, members, 3, g)
        >>> images.tolist(), classes.tolist()
        ([1, 1, 1], [1, 1, 1])
    """
    if length == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty.clone()
    classes = torch.multinomial(probabilities, length, replacement=True, generator=generator)
    start = offsets.index_select(0, classes)
    sizes = offsets.index_select(0, classes + 1) - start
    uniform = torch.rand(length, dtype=torch.float64, generator=generator)
    within = torch.minimum((uniform * sizes).long(), sizes - 1)
    return members.index_select(0, start + within), classes
