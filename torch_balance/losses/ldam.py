"""LDAM, the label-distribution-aware margin loss (Cao et al., NeurIPS 2019), the deferred
re-weighting schedule it is trained with (DRW), and the cosine classifier it assumes.

LDAM subtracts a margin ``m_j = K / n_j ** (1/4)`` from the logit of the true class ``j``
before a scaled softmax: ``CE(s * (z - m_y e_y), y)``; ``K`` makes the largest margin (that of
the rarest class) ``max_margin``. Cao et al. train with logits that are cosines (a normalised
linear layer, :class:`NormedLinear`) and ``s = 30``; with a plain linear layer use a smaller
scale. LDAM-DRW trains with LDAM unweighted, then from a later epoch (the learning-rate
decay) weighs each class by the class-balanced weight of Cui et al. (effective number):
:class:`DeferredReweighting` is that switch, and serves ``torch.nn.CrossEntropyLoss`` (DRW
alone) as well.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torch_balance._validation import check_int, check_real
from torch_balance.losses._core import (
    CountedLoss,
    check_logits,
    class_dim,
    index_target,
    positive_counts,
)
from torch_balance.losses._fused import fusable, fused_softmax_loss
from torch_balance.weights import class_weights

__all__ = ["DeferredReweighting", "LDAMLoss", "NormedLinear"]


class LDAMLoss(CountedLoss):
    """The LDAM loss (Cao et al., NeurIPS 2019): ``CE(scale * (logits - m_y e_y), y)`` with
    ``m_j`` proportional to ``n_j ** (-1/4)`` and the largest margin ``max_margin``.

    ``torch.nn.CrossEntropyLoss``'s conventions hold: logits ``(N, C)`` or ``(N, C, d1,
    ...)``, ``weight`` (what :class:`DeferredReweighting` sets), ``ignore_index``,
    ``reduction`` and ``label_smoothing``. Targets are class indices (the margin belongs to
    the true class). With ``max_margin=0`` and ``scale=1`` it is plain cross-entropy.

    Args:
        labels: The training labels (a vector, a :class:`~torch_balance.labels.LabelIndex` or a
            dataset, read as the samplers read it), or ``{class: count}``; every class needs
            a sample.
        max_margin: The margin of the rarest class, ``>= 0`` (Cao et al.: 0.5).
        scale: ``s``, ``> 0``: 30 for cosine logits (:class:`NormedLinear`), as in the paper.
        num_classes: The model's number of outputs, if more than ``max(label) + 1``.
        weight: A per-class weight, as in ``CrossEntropyLoss``.
        ignore_index: A target value that adds nothing to the loss.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        label_smoothing: In [0, 1], as in ``CrossEntropyLoss``.

    Raises:
        ValueError: A class without samples, ``max_margin < 0``, ``scale <= 0``, a bad option.
        TypeError: Targets that are not class indices.

    Example:
        >>> loss = LDAMLoss({0: 625, 1: 1}, max_margin=0.5, scale=1.0)
        >>> loss.margins.tolist()  # 0.5 * (1 / 625) ** (1 / 4)
        [0.10000000149011612, 0.5]
    """

    counts: torch.Tensor
    margins: torch.Tensor

    def __init__(
        self,
        labels: Any,
        max_margin: float = 0.5,
        scale: float = 30.0,
        *,
        num_classes: int | None = None,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        counts = positive_counts(labels, num_classes, "its margin divides by count ** (1/4)")
        super().__init__(
            counts.numel(),
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )
        self.max_margin = check_real(
            "max_margin", max_margin, low=0.0, fix="Cao et al. use 0.5; 0 is no margin"
        )
        self.scale = check_real(
            "scale",
            scale,
            low=0.0,
            open_low=True,
            fix="Cao et al. use 30 with cosine logits; 1 leaves the logits as they are",
        )
        raw = counts.pow(-0.25)
        self.register_buffer("counts", counts.float(), persistent=False)
        self.register_buffer(
            "margins", (raw * (self.max_margin / raw.max())).float(), persistent=False
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of ``logits`` (any float dtype; half precision in float32) for ``target``."""
        z = check_logits(logits, self.num_classes)
        target = index_target(target, "LDAMLoss")
        if fusable(z, target, self.label_smoothing):
            return fused_softmax_loss(
                z,
                target,
                scale=self.scale,
                margins=self.margins.to(z.device, z.dtype),
                weight=self.class_weight(z),
                ignore_index=self.ignore_index,
                reduction=self.reduction,
            )
        dim = class_dim(z)
        valid = target != self.ignore_index
        safe = torch.where(valid, target, torch.zeros_like(target))
        margin = self.margins.to(z.device, z.dtype)[safe] * valid  # an ignored target has no margin
        z = (z * self.scale).scatter_add(
            dim, safe.unsqueeze(dim), margin.unsqueeze(dim) * -self.scale
        )
        return F.cross_entropy(
            z,
            target,
            weight=self.class_weight(z),
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )

    def extra_repr(self) -> str:
        """The margin, the scale and the options that differ from ``CrossEntropyLoss``'s."""
        return f"max_margin={self.max_margin:g}, scale={self.scale:g}, {super().extra_repr()}"


class DeferredReweighting:
    """Deferred re-weighting (DRW, Cao et al., NeurIPS 2019): per-class loss weights that are
    all 1 before ``start_epoch`` and the class-balanced weights ``(1 - beta) / (1 - beta **
    n_j)`` (Cui et al., CVPR 2019; normalised to sum to C) from it on.

    An explicit, epoch-driven switch: ask it for an epoch's weights and hand them to the loss
    (any loss with a ``weight`` buffer: the losses here and ``torch.nn.CrossEntropyLoss``).
    Cao et al. switch at the learning-rate decay (epoch 160 of 200 on CIFAR).

    Args:
        labels: The training labels (a vector, a :class:`~torch_balance.labels.LabelIndex` or a
            dataset), or ``{class: count}``; every class needs a sample.
        start_epoch: The first epoch with class-balanced weights, ``>= 0``.
        beta: In [0, 1) (Cao et al. use 0.9999).
        num_classes: The model's number of outputs, if more than ``max(label) + 1``.

    Raises:
        ValueError: A class without samples, ``start_epoch < 0``, ``beta`` outside [0, 1).

    Example:
        >>> drw = DeferredReweighting({0: 1000, 1: 10}, start_epoch=3, beta=0.999)
        >>> drw.weight(2).tolist(), [round(w, 3) for w in drw.weight(3).tolist()]
        ([1.0, 1.0], [0.031, 1.969])
        >>> criterion = torch.nn.CrossEntropyLoss()
        >>> for epoch in range(4):
        ...     criterion.weight = drw.weight(epoch)  # then train the epoch
    """

    def __init__(
        self,
        labels: Any,
        start_epoch: int,
        *,
        beta: float = 0.9999,
        num_classes: int | None = None,
    ) -> None:
        self.start_epoch = int(
            check_int(
                "start_epoch", start_epoch, minimum=0, fix="The epoch of the learning-rate decay"
            )
        )
        self.beta = check_real(
            "beta", beta, low=0.0, high=1.0, open_high=True, fix="Cao et al. use 0.9999"
        )
        counts = positive_counts(labels, num_classes, "its weight divides by 1 - beta ** count")
        self.counts = counts.float()
        self.balanced = class_weights(
            {i: int(n) for i, n in enumerate(counts.tolist())}, "effective", beta=self.beta
        )

    @property
    def num_classes(self) -> int:
        """C, the length of the weights."""
        return int(self.balanced.numel())

    def weight(self, epoch: int) -> torch.Tensor:
        """The per-class loss weights for ``epoch`` (float32, a new tensor): ones before
        ``start_epoch``, the class-balanced weights from it on."""
        epoch = int(check_int("epoch", epoch, minimum=0))
        if epoch < self.start_epoch:
            return torch.ones(self.num_classes)
        return self.balanced.clone()

    def __repr__(self) -> str:
        return (
            f"DeferredReweighting(num_classes={self.num_classes}, "
            f"start_epoch={self.start_epoch}, beta={self.beta:g})"
        )


class NormedLinear(nn.Module):
    """A cosine classifier: ``logits[i, j] = cos(x_i, w_j)``, in [-1, 1], for LDAM's ``scale``.

    Both the input rows and the class weights are L2-normalised (the normalised linear layer
    of Cao et al.'s LDAM experiments); there is no bias. ``weight`` has ``nn.Linear``'s
    layout, ``(out_features, in_features)``.

    Args:
        in_features: The embedding size.
        out_features: The number of classes.
        generator: Draws the initial weights (PyTorch's default ``nn.Linear`` scheme); the
            global generator when None.

    Example:
        >>> head = NormedLinear(8, 3, generator=torch.Generator().manual_seed(0))
        >>> logits = head(torch.randn(5, 8, generator=torch.Generator().manual_seed(1)))
        >>> logits.shape, bool(logits.abs().max() <= 1)
        (torch.Size([5, 3]), True)
    """

    def __init__(
        self, in_features: int, out_features: int, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.in_features = int(check_int("in_features", in_features, minimum=1))
        self.out_features = int(check_int("out_features", out_features, minimum=1))
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Cosine similarities of the rows of ``x`` with each class's weight vector."""
        return F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        """The sizes, as ``nn.Linear`` shows them."""
        return f"in_features={self.in_features}, out_features={self.out_features}"
