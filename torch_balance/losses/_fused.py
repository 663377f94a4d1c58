"""One fused softmax loss for ``(N, C)`` logits and class-index targets: the fast path of
every loss of the package, each of which keeps a plain reference beside it (cross-entropy on
the transformed logits, or :func:`~torch_balance.losses.class_balanced.focal_loss`) for the
other shapes and options; the tests hold the two equal.

For one sample with true class ``t``, the loss is ``w_t * phi(log p_t)`` where ``p =
softmax(scale * z + offset - scale * m_t e_t)``: ``phi(l) = -l`` (cross-entropy, LA, Balanced
Softmax, LDAM) or ``-(1 - e^l) ** gamma * l`` (focal). Its gradient in ``z`` is always ``c *
scale * (p - e_t)`` with one coefficient ``c`` per sample, so the backward is one pass over
the saved log-probabilities (``exp``, then a scale), as cheap as ``F.cross_entropy``'s, and
the forward adds one pass (the shift) at most: what keeps each loss near cross-entropy's time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

__all__ = ["fusable", "fused_softmax_loss"]

_TINY = torch.finfo(torch.float32).tiny


class _FusedSoftmaxLoss(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        z: torch.Tensor,
        target: torch.Tensor,
        scale: float,
        offset: torch.Tensor | None,
        margins: torch.Tensor | None,
        weight: torch.Tensor | None,
        gamma: float,
        ignore_index: int,
        reduction: str,
    ) -> torch.Tensor:
        valid = target != ignore_index
        safe = (target * valid).long().unsqueeze(1)  # an ignored target reads class 0
        if offset is not None:
            u = torch.add(offset.unsqueeze(0), z, alpha=scale)
        else:
            u = z * scale if scale != 1.0 else z
        if margins is not None:
            u = u.clone() if u is z else u
            u.scatter_add_(1, safe, (margins[safe.squeeze(1)] * valid * -scale).unsqueeze(1))
        log_p = torch.log_softmax(u, 1)
        log_pt = log_p.gather(1, safe).squeeze(1)
        w = valid.to(z.dtype)
        if weight is not None:
            w = w * weight[safe.squeeze(1)]
        coefficient = w * scale if scale != 1.0 else w  # of (p - e_t) in the gradient
        if gamma:
            away = (-torch.expm1(log_pt)).clamp_min(_TINY)  # 1 - p_t, exact near p_t = 1
            focus = away.pow(gamma)
            per = -focus * log_pt * w
            # d(loss)/d(-log p_t): (1 - p)^g - g (1 - p)^(g - 1) p log p
            coefficient = coefficient * (focus - gamma * focus * log_pt.exp() * log_pt / away)
        else:
            per = -log_pt * w
        denominator = w.sum()
        ctx.save_for_backward(log_p, safe, coefficient, denominator)
        ctx.reduction = reduction
        if reduction == "none":
            return per
        return per.sum() if reduction == "sum" else per.sum() / denominator

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (grad,) = grads
        log_p, safe, coefficient, denominator = ctx.saved_tensors
        if ctx.reduction == "mean":
            coefficient = coefficient * (grad / denominator)
        else:
            coefficient = coefficient * grad
        out = torch.exp(log_p).mul_(coefficient.unsqueeze(1))
        out.scatter_add_(1, safe, -coefficient.unsqueeze(1))
        return out, None, None, None, None, None, None, None, None


def fused_softmax_loss(
    z: torch.Tensor,
    target: torch.Tensor,
    *,
    scale: float = 1.0,
    offset: torch.Tensor | None = None,
    margins: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    gamma: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """The loss of ``(N, C)`` logits ``z`` (float32 or float64) for class indices ``target``
    (``(N,)``): ``w_t * phi(log softmax(scale * z + offset - scale * m_t e_t)_t)``.

    ``reduction="mean"`` divides by the sum of the targets' weights, as ``F.cross_entropy``
    does; an ignored target adds 0 and gets no gradient. ``offset``, ``margins`` and
    ``weight`` are per class, in ``z``'s dtype and on its device.

    Example:
        >>> z = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
        >>> t = torch.tensor([0, 2, 1, 2])
        >>> reference = torch.nn.functional.cross_entropy(z, t)
        >>> bool(torch.isclose(fused_softmax_loss(z, t), reference))
        True
    """
    out: torch.Tensor = _FusedSoftmaxLoss.apply(
        z, target, float(scale), offset, margins, weight, float(gamma), ignore_index, reduction
    )
    return out


def fusable(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> bool:
    """Whether the fused path serves this call: ``(N, C)`` logits, class-index targets of
    shape ``(N,)``, no label smoothing (the reference path serves everything else)."""
    return (
        logits.dim() == 2
        and target.dim() == 1
        and not target.is_floating_point()
        and not label_smoothing
    )
