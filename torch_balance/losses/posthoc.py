"""Adjustments of a trained classifier, without training: post-hoc logit adjustment (Menon et
al., ICLR 2021) and tau-normalisation of the classifier's weights (Kang et al., ICLR 2020).

Both correct a model trained on the long-tailed data as it is (plain cross-entropy): its
logits favour the large classes by about their log prior, and the norms of its class weight
vectors grow with the class size. Choose ``tau`` on a balanced validation split.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

import torch
from torch import nn

from torch_balance._validation import Text, check_real, fail
from torch_balance.losses._core import along_classes, check_logits, positive_counts

__all__ = ["logit_adjust", "tau_normalize"]

Classifier = TypeVar("Classifier", torch.Tensor, nn.Linear)


def logit_adjust(
    logits: torch.Tensor, labels: Any, tau: float = 1.0, *, num_classes: int | None = None
) -> torch.Tensor:
    """Post-hoc logit adjustment: ``logits - tau * log(prior)``, the prior being each class's
    share of the training labels (Menon et al., ICLR 2021).

    ``tau = 1`` turns a model trained with plain cross-entropy towards the classifier of the
    balanced error; the argmax of the result is the prediction. With equal class counts the
    logits only move by a constant (the argmax and the softmax are unchanged).

    Args:
        logits: ``(N, C)`` or ``(N, C, d1, ...)``, any float dtype.
        labels: The training labels (a vector, a :class:`~torch_balance.labels.LabelIndex` or a
            dataset), or ``{class: count}``; every class needs a sample.
        tau: ``>= 0``; 0 returns the logits unchanged.
        num_classes: The model's number of outputs, if more than ``max(label) + 1``.

    Returns:
        The adjusted logits, float32 (float64 for float64 logits).

    Raises:
        ValueError: A class without samples, ``tau`` negative or not finite, logits with
            another number of classes.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0]])  # class 0 has 100x the training images
        >>> logit_adjust(logits, {0: 100, 1: 1}).argmax(1).tolist()
        [1]
    """
    tau = check_real("tau", tau, low=0.0, fix="Menon et al. use tau = 1; 0 changes nothing")
    counts = positive_counts(labels, num_classes, "the adjustment takes log(count)")
    z = check_logits(logits, counts.numel())
    log_prior = (counts / counts.sum()).log().to(z.device, z.dtype)
    return z - tau * along_classes(log_prior, z)


def tau_normalize(classifier: Classifier, tau: float = 1.0) -> Classifier:
    """Tau-normalisation (Kang et al., ICLR 2020): each class's weight vector divided by its
    L2 norm to the power ``tau``, ``w_j / ||w_j|| ** tau``.

    ``tau = 1`` gives every class a weight vector of norm 1; ``tau = 0`` changes nothing; Kang
    et al. pick ``tau`` in [0, 1] on validation. A zero vector stays zero.

    Args:
        classifier: The weight ``(C, D)`` (``nn.Linear``'s layout, one row per class), or an
            ``nn.Linear``, whose copy is returned with its weight normalised and its bias
            kept (Kang et al.'s classifier has none; drop it yourself to follow them).
        tau: ``>= 0``.

    Returns:
        A new tensor (or a new ``nn.Linear``); the argument is not changed.

    Raises:
        ValueError: ``tau`` negative or not finite, a weight that is not 2-d.
        TypeError: Something other than a tensor or an ``nn.Linear``.

    Example:
        >>> w = torch.tensor([[3.0, 4.0], [0.6, 0.8]])
        >>> tau_normalize(w, 1.0).tolist()
        [[0.6000000238418579, 0.800000011920929], [0.6000000238418579, 0.800000011920929]]
        >>> head = tau_normalize(torch.nn.Linear(2, 2), 0.5)
        >>> type(head).__name__
        'Linear'
    """
    tau = check_real("tau", tau, low=0.0, fix="Kang et al. choose tau in [0, 1] on validation")
    if isinstance(classifier, nn.Linear):
        out = copy.deepcopy(classifier)
        with torch.no_grad():
            out.weight.copy_(tau_normalize(classifier.weight.detach(), tau))
        return out
    if not isinstance(classifier, torch.Tensor) or not classifier.is_floating_point():
        got = Text(type(classifier).__name__)
        fail("classifier", "a float weight tensor (C, D) or an nn.Linear", got, kind=TypeError)
    if classifier.dim() != 2:
        fail(
            "classifier",
            "a weight of shape (C, D), one row per class",
            Text(f"shape {tuple(classifier.shape)}"),
            "Pass the last layer's weight (model.fc.weight)",
        )
    wide = classifier if classifier.dtype == torch.float64 else classifier.float()
    scale = wide.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny).pow(-tau)
    return (wide * scale).to(classifier.dtype)
