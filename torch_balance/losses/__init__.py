"""Long-tail losses and post-hoc adjustments: the other way to balance, beside the samplers.

Each loss is a ``torch.nn.Module`` with ``torch.nn.CrossEntropyLoss``'s conventions
(``reduction``, ``ignore_index``, ``label_smoothing`` where it has a meaning, logits ``(N, C)``
or ``(N, C, d1, ...)``) whose class counts come from the training labels, a dataset or a
:class:`~torch_balance.labels.LabelIndex`, read as the samplers read them
(:func:`~torch_balance.weights.class_counts`). Every loss computes in float32 (float64 for
float64 logits), whatever the logits' dtype.

- :mod:`~torch_balance.losses.logit_adjusted`: :class:`LogitAdjustedLoss` (Menon et al.,
  ICLR 2021) and :class:`BalancedSoftmaxLoss` (Ren et al., NeurIPS 2020);
- :mod:`~torch_balance.losses.ldam`: :class:`LDAMLoss` (Cao et al., NeurIPS 2019), the
  deferred re-weighting schedule :class:`DeferredReweighting` and the cosine classifier
  :class:`NormedLinear`;
- :mod:`~torch_balance.losses.class_balanced`: :class:`ClassBalancedLoss` (Cui et al., CVPR
  2019), softmax and focal forms, and :class:`FocalLoss` (Lin et al., ICCV 2017);
- :mod:`~torch_balance.losses.posthoc`: :func:`logit_adjust` and :func:`tau_normalize`
  (Kang et al., ICLR 2020), for a model already trained.
"""

from __future__ import annotations

from torch_balance.losses.class_balanced import ClassBalancedLoss, FocalLoss, focal_loss
from torch_balance.losses.ldam import DeferredReweighting, LDAMLoss, NormedLinear
from torch_balance.losses.logit_adjusted import BalancedSoftmaxLoss, LogitAdjustedLoss
from torch_balance.losses.posthoc import logit_adjust, tau_normalize
from torch_balance.weights import class_counts

__all__ = [
    "BalancedSoftmaxLoss",
    "ClassBalancedLoss",
    "DeferredReweighting",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "NormedLinear",
    "class_counts",
    "focal_loss",
    "logit_adjust",
    "tau_normalize",
]
