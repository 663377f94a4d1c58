"""Focal loss (Lin et al., ICCV 2017) and the class-balanced loss by the effective number of
samples (Cui et al., CVPR 2019), in its softmax and focal forms.

The class-balanced weight of class ``j`` is ``(1 - beta) / (1 - beta ** n_j)``, the inverse
of the "effective number" of its ``n_j`` samples, normalised so the ``C`` weights sum to
``C`` (:func:`~torch_balance.weights.class_weights` with ``kind="effective"``). ``beta = 0``
weighs every class 1 (plain cross-entropy, or plain focal loss); ``beta -> 1`` tends to
inverse-frequency weights. Equal class counts give equal weights: the plain loss again.

A weighted loss averages as ``torch.nn.CrossEntropyLoss`` does: ``reduction="mean"`` divides
the weighted sum by the sum of the targets' weights.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from torch_balance._validation import check_choice, check_real, fail
from torch_balance.losses._core import (
    CountedLoss,
    check_logits,
    class_dim,
    index_target,
    positive_counts,
    soft_or_index,
)
from torch_balance.losses._fused import fusable, fused_softmax_loss
from torch_balance.weights import class_weights

__all__ = ["ClassBalancedLoss", "FocalLoss", "focal_loss"]

_TINY = torch.finfo(torch.float32).tiny


def _check_gamma(gamma: Any) -> float:
    return check_real(
        "gamma",
        gamma,
        low=0.0,
        fix="The focusing parameter is >= 0: 0 is cross-entropy, Lin et al. use 2",
    )


def _check_beta(beta: Any) -> float:
    return check_real(
        "beta",
        beta,
        low=0.0,
        high=1.0,
        open_high=True,
        fix="Cui et al. use 0.9, 0.99, 0.999 or 0.9999; 0 weighs every class alike",
    )


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """The softmax focal loss ``-w_y (1 - p_y) ** gamma * log p_y`` of float32 logits.

    ``reduction="mean"`` divides by the sum of the targets' weights (their number when
    unweighted), as ``F.cross_entropy`` does; an ignored target adds 0. ``gamma = 0`` is
    ``F.cross_entropy``.

    Args:
        logits: ``(N, C)`` or ``(N, C, d1, ...)`` float32 logits (the caller widens them).
        target: Class indices, ``(N,)`` or ``(N, d1, ...)``.
        gamma: The focusing parameter, ``>= 0``.
        weight: Per-class weights ``(C,)`` on the logits' device, or None.
        ignore_index: A target value that adds nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        The loss, reduced as asked.

    Example:
        >>> logits, target = torch.tensor([[0.0, 0.0]]), torch.tensor([0])
        >>> round(float(focal_loss(logits, target, gamma=2.0)), 4)  # 0.5 ** 2 * log 2
        0.1733
    """
    if fusable(logits, target):
        return fused_softmax_loss(
            logits,
            target,
            weight=weight,
            gamma=gamma,
            ignore_index=ignore_index,
            reduction=reduction,
        )
    dim = class_dim(logits)
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target)).unsqueeze(dim)
    log_p = F.log_softmax(logits, dim).gather(dim, safe).squeeze(dim)
    loss = -log_p
    if gamma:
        # 1 - p as -expm1(log p): exact where p is close to 1; kept above 0, where the
        # gradient of x ** gamma (gamma < 1) would be infinite
        loss = loss * (-torch.expm1(log_p)).clamp_min(_TINY).pow(gamma)
    scale = valid.to(loss.dtype)
    if weight is not None:
        scale = scale * weight[safe.squeeze(dim)]
    loss = loss * scale
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / scale.sum()


class FocalLoss(CountedLoss):
    """Focal loss (Lin et al., ICCV 2017) on the softmax: ``-alpha_y (1 - p_y) ** gamma log p_y``.

    The factor ``(1 - p_y) ** gamma`` shrinks the loss of samples already classified well,
    which, in a long-tailed set, are mostly those of the large classes. ``weight`` (the
    paper's ``alpha``, per class) is optional; ``gamma = 0`` is ``torch.nn.CrossEntropyLoss``.
    Logits ``(N, C)`` or ``(N, C, d1, ...)``, class-index targets; the loss is computed in
    float32 whatever the logits' dtype.

    Args:
        gamma: The focusing parameter, ``>= 0`` (Lin et al. use 2).
        weight: A per-class weight ``(C,)``, as in ``CrossEntropyLoss``.
        num_classes: C, needed only to check the logits (default: ``len(weight)``, or any C).
        ignore_index: A target value that adds nothing to the loss.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Raises:
        ValueError: ``gamma`` negative or not finite, a bad option.
        TypeError: Targets that are not class indices.

    Example:
        >>> loss = FocalLoss(gamma=0.0)
        >>> logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
        >>> target = torch.tensor([0, 1, 2, 1])
        >>> bool(torch.isclose(loss(logits, target), F.cross_entropy(logits, target)))
        True
    """

    def __init__(
        self,
        gamma: float = 2.0,
        *,
        weight: Any = None,
        num_classes: int | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        if num_classes is None and weight is not None:
            num_classes = len(weight)
        super().__init__(
            0 if num_classes is None else num_classes,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
        )
        self.gamma = _check_gamma(gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of ``logits`` (any float dtype; half precision in float32) for ``target``."""
        classes = self.num_classes
        if not classes and isinstance(logits, torch.Tensor) and logits.dim():
            classes = logits.shape[class_dim(logits)]  # any C when none was given
        z = check_logits(logits, classes)
        return focal_loss(
            z,
            index_target(target, "FocalLoss"),
            gamma=self.gamma,
            weight=self.class_weight(z),
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        """``gamma`` and the options that differ from ``CrossEntropyLoss``'s defaults."""
        return ", ".join(part for part in (f"gamma={self.gamma:g}", super().extra_repr()) if part)


class ClassBalancedLoss(CountedLoss):
    """The class-balanced loss (Cui et al., CVPR 2019): cross-entropy (``loss="softmax"``) or
    focal loss (``loss="focal"``) weighted per class by ``(1 - beta) / (1 - beta ** n_j)``,
    normalised to sum to C.

    ``torch.nn.CrossEntropyLoss``'s conventions hold (the softmax form takes class
    probabilities and ``label_smoothing`` too; the focal form takes class indices).

    Args:
        labels: The training labels (a vector, a :class:`~torch_balance.labels.LabelIndex` or a
            dataset, read as the samplers read it), or ``{class: count}``; every class needs
            a sample.
        beta: In [0, 1): 0 weighs every class 1; Cui et al. use 0.9999 on CIFAR-LT.
        loss: ``"softmax"`` (weighted cross-entropy) or ``"focal"``.
        gamma: The focal form's focusing parameter, ``>= 0``.
        num_classes: The model's number of outputs, if more than ``max(label) + 1``.
        ignore_index: A target value that adds nothing to the loss.
        reduction: ``"mean"`` (weighted mean, as ``CrossEntropyLoss``), ``"sum"`` or ``"none"``.
        label_smoothing: In [0, 1], the softmax form only.

    Raises:
        ValueError: A class without samples, ``beta`` outside [0, 1), ``gamma < 0``,
            ``label_smoothing`` with the focal form, a bad option.

    Example:
        >>> loss = ClassBalancedLoss({0: 1000, 1: 10}, beta=0.999)
        >>> [round(w, 3) for w in loss.weight.tolist()]
        [0.031, 1.969]
    """

    counts: torch.Tensor

    def __init__(
        self,
        labels: Any,
        beta: float = 0.9999,
        *,
        loss: str = "softmax",
        gamma: float = 1.0,
        num_classes: int | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        beta = _check_beta(beta)
        self.loss = check_choice("loss", loss, ("softmax", "focal"))
        counts = positive_counts(labels, num_classes, "its weight divides by 1 - beta ** count")
        weight = class_weights(
            {i: int(n) for i, n in enumerate(counts.tolist())}, "effective", beta=beta
        )
        if self.loss == "focal" and label_smoothing:
            fail(
                "label_smoothing",
                "0 with loss='focal'",
                label_smoothing,
                "Smooth the softmax form only",
            )
        super().__init__(
            counts.numel(),
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )
        self.beta = beta
        self.gamma = _check_gamma(gamma)
        self.register_buffer("counts", counts.float(), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of ``logits`` (any float dtype; half precision in float32) for ``target``."""
        z = check_logits(logits, self.num_classes)
        if self.loss == "focal":
            return focal_loss(
                z,
                index_target(target, "ClassBalancedLoss(loss='focal')"),
                gamma=self.gamma,
                weight=self.class_weight(z),
                ignore_index=self.ignore_index,
                reduction=self.reduction,
            )
        if fusable(z, target, self.label_smoothing):
            return fused_softmax_loss(
                z,
                target,
                weight=self.class_weight(z),
                ignore_index=self.ignore_index,
                reduction=self.reduction,
            )
        return F.cross_entropy(
            z,
            soft_or_index(target, z),
            weight=self.class_weight(z),
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )

    def extra_repr(self) -> str:
        """``beta``, the form and the options that differ from ``CrossEntropyLoss``'s defaults."""
        form = f"loss='focal', gamma={self.gamma:g}" if self.loss == "focal" else "loss='softmax'"
        return f"beta={self.beta:g}, {form}, {super().extra_repr()}"
