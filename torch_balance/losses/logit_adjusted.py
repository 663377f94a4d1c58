"""Cross-entropy on logits shifted by the log of the class prior: the logit-adjusted loss
(Menon et al., ICLR 2021) and Balanced Softmax (Ren et al., NeurIPS 2020).

Both train on ``logits + tau * log(prior)`` and predict with the plain logits, so the model
learns the balanced posterior: a tail class's logit must rise further to win the softmax
during training, and keeps the advantage at test time. Balanced Softmax is the case
``tau = 1`` (Ren et al. write it as ``n_j * exp(z_j)`` in the softmax; ``log n_j`` and
``log prior_j`` differ by a constant, which the softmax ignores). With equal class counts the
shift is the same for every class and both are plain cross-entropy.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from torch_balance._validation import check_real
from torch_balance.losses._core import (
    CountedLoss,
    along_classes,
    check_logits,
    positive_counts,
    soft_or_index,
)
from torch_balance.losses._fused import fusable, fused_softmax_loss

__all__ = ["BalancedSoftmaxLoss", "LogitAdjustedLoss"]


class LogitAdjustedLoss(CountedLoss):
    """Logit-adjusted cross-entropy (Menon et al., ICLR 2021): cross-entropy on
    ``logits + tau * log(prior)``, the prior being each class's share of the training labels.

    ``torch.nn.CrossEntropyLoss``'s conventions hold: logits ``(N, C)`` or ``(N, C, d1, ...)``,
    targets as class indices or class probabilities, ``weight``, ``ignore_index``,
    ``reduction`` and ``label_smoothing`` with their meaning there. Predict with the model's
    plain logits: the adjustment is part of the loss only.

    Args:
        labels: The training labels (a vector, a :class:`~torch_balance.labels.LabelIndex` or a
            dataset, read as the samplers read it), or ``{class: count}``. Integer labels are
            the logits' columns; every class needs at least one sample (the log of its count
            is taken).
        tau: The strength of the adjustment, ``>= 0``; 1 (the paper's choice) gives the
            balanced error's Bayes-optimal classifier, 0 is plain cross-entropy.
        num_classes: The model's number of outputs, if more than ``max(label) + 1``.
        weight: A per-class weight, as in ``CrossEntropyLoss``.
        ignore_index: A target value that adds nothing to the loss or its gradient.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        label_smoothing: In [0, 1], as in ``CrossEntropyLoss``.

    Raises:
        ValueError: A class without samples, ``tau`` negative or not finite, a bad option.
        TypeError: An option of the wrong type.

    Example:
        >>> labels = [0] * 90 + [1] * 10
        >>> loss = LogitAdjustedLoss(labels, tau=1.0)
        >>> logits, target = torch.zeros(2, 2), torch.tensor([0, 1])
        >>> round(float(loss(logits, target)), 4)  # -(log 0.9 + log 0.1) / 2
        1.204
    """

    counts: torch.Tensor
    log_prior: torch.Tensor

    def __init__(
        self,
        labels: Any,
        tau: float = 1.0,
        *,
        num_classes: int | None = None,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        counts = positive_counts(labels, num_classes, "the adjustment takes log(count)")
        super().__init__(
            counts.numel(),
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )
        self.tau = self._check_tau(tau)
        self.register_buffer("counts", counts.float(), persistent=False)
        self.register_buffer("log_prior", (counts / counts.sum()).log().float(), persistent=False)

    @staticmethod
    def _check_tau(tau: Any) -> float:
        return check_real(
            "tau",
            tau,
            low=0.0,
            fix="Menon et al. use tau = 1; 0 is plain cross-entropy, and a negative tau would "
            "favour the large classes further",
        )

    def offsets(self) -> torch.Tensor:
        """What is added to the logits of each class: ``tau * log(prior)``."""
        return self.log_prior if self.tau == 1.0 else self.tau * self.log_prior

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of ``logits`` (any float dtype; half precision in float32) for ``target``."""
        z = check_logits(logits, self.num_classes)
        offsets = self.offsets().to(z.device, z.dtype)
        if fusable(z, target, self.label_smoothing):
            return fused_softmax_loss(
                z,
                target,
                offset=offsets,
                weight=self.class_weight(z),
                ignore_index=self.ignore_index,
                reduction=self.reduction,
            )
        z = z + along_classes(offsets, z)
        return F.cross_entropy(
            z,
            soft_or_index(target, z),
            weight=self.class_weight(z),
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )

    def extra_repr(self) -> str:
        """``tau`` and the options that differ from ``CrossEntropyLoss``'s defaults."""
        return f"tau={self.tau:g}, {super().extra_repr()}"


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced Softmax (Ren et al., NeurIPS 2020): cross-entropy on ``logits + log(n_j)``,
    where ``n_j`` counts class ``j``'s training samples.

    The softmax ``n_j exp(z_j) / sum_i n_i exp(z_i)`` is the logit-adjusted loss with
    ``tau = 1`` (:class:`LogitAdjustedLoss`), whose arguments it takes, ``tau`` aside.

    Args:
        labels: The training labels, a dataset or ``{class: count}`` (see
            :class:`LogitAdjustedLoss`).
        num_classes: The model's number of outputs, if more than ``max(label) + 1``.
        weight: A per-class weight, as in ``CrossEntropyLoss``.
        ignore_index: A target value that adds nothing to the loss.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        label_smoothing: In [0, 1], as in ``CrossEntropyLoss``.

    Raises:
        ValueError: A class without samples, or a bad option.

    Example:
        >>> loss = BalancedSoftmaxLoss({0: 300, 1: 100})
        >>> loss.offsets().exp().tolist()  # proportional to the counts
        [0.75, 0.25]
    """

    def __init__(
        self,
        labels: Any,
        *,
        num_classes: int | None = None,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            labels,
            1.0,
            num_classes=num_classes,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )

    def extra_repr(self) -> str:
        """The options that differ from ``CrossEntropyLoss``'s defaults."""
        return CountedLoss.extra_repr(self)
