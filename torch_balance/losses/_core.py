"""What the losses share: counts from labels, ``CrossEntropyLoss``'s options, the check of the
class dimension and the float32 computation.

Every loss reads its logits as float32 (float16 and bfloat16 logits are widened before the
softmax, so the log-sum-exp neither overflows nor loses the small probabilities of the tail;
float64 logits stay float64) and returns a float32 loss (float64 for float64 logits); the
gradient flows back to the logits in their own dtype.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torch_balance._validation import Text, check_choice, check_int, check_real, fail, real_values
from torch_balance.weights import class_counts

__all__ = [
    "REDUCTIONS",
    "CountedLoss",
    "along_classes",
    "check_logits",
    "check_weight",
    "class_dim",
    "index_target",
    "positive_counts",
    "soft_or_index",
]

REDUCTIONS = ("mean", "sum", "none")


def positive_counts(labels: Any, num_classes: int | None, why: str) -> torch.Tensor:
    """Per-class counts (float64, laid out as :func:`~torch_balance.weights.class_counts`),
    every one at least 1: ``why`` says what a zero would break.

    Example:
        >>> positive_counts([0, 1, 1], None, "log").tolist()
        [1.0, 2.0]
        >>> positive_counts([0, 2], None, "the loss takes log(count)")
        Traceback (most recent call last):
        ...
        ValueError: labels: expected at least one sample of every class ...
    """
    counts = class_counts(labels, num_classes=num_classes)
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel():
        fail(
            "labels",
            f"at least one sample of every class ({why})",
            Text(
                f"class {int(empty[0])} with 0 samples"
                + (f" (and {empty.numel() - 1} more)" if empty.numel() > 1 else "")
            ),
            "Pass the training labels of every class the model outputs; where a class truly has "
            "no training sample, give the counts as {class: count} with a count of 1 for it",
        )
    return counts


def class_dim(logits: torch.Tensor) -> int:
    """The class dimension: 1 for ``(N, C, ...)``, 0 for one unbatched ``(C,)`` vector."""
    return 1 if logits.dim() >= 2 else 0


def check_logits(logits: Any, num_classes: int) -> torch.Tensor:
    """``logits`` as float32 (float64 ones as they are), after checking it is a float tensor
    with ``num_classes`` classes along its class dimension.

    Example:
        >>> check_logits(torch.zeros(4, 3, dtype=torch.bfloat16), 3).dtype
        torch.float32
        >>> check_logits(torch.zeros(4, 5), 3)
        Traceback (most recent call last):
        ...
        ValueError: logits: expected 3 classes along dimension 1 ...
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        got = (
            Text(f"a tensor of dtype {logits.dtype}")
            if isinstance(logits, torch.Tensor)
            else logits
        )
        fail("logits", "a floating-point tensor", got, kind=TypeError)
    if logits.dim() == 0 or logits.shape[class_dim(logits)] != num_classes:
        fail(
            "logits",
            f"{num_classes} classes along dimension {class_dim(logits)} "
            f"((N, {num_classes}) or (N, {num_classes}, d1, ...))",
            Text(f"shape {tuple(logits.shape)}"),
            f"The loss counted {num_classes} classes in its labels; give num_classes= the "
            "number of outputs of the model (integer labels 0..C-1), or check its last layer",
        )
    return logits if logits.dtype == torch.float64 else logits.float()


def along_classes(values: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``values`` (one per class) shaped to broadcast along the class dimension of ``logits``."""
    if logits.dim() <= 2:
        return values
    return values.view(-1, *([1] * (logits.dim() - 2)))


def check_weight(weight: Any, num_classes: int) -> torch.Tensor | None:
    """A per-class weight (``CrossEntropyLoss``'s ``weight``) as float32, or None.

    Example:
        >>> check_weight([1, 2], 2).tolist()
        [1.0, 2.0]
    """
    if weight is None:
        return None
    values = real_values("weight", weight)
    if values.dim() != 1 or values.numel() != num_classes:
        fail(
            "weight",
            f"one weight per class ({num_classes})",
            Text(f"shape {tuple(values.shape)}"),
            "Give a 1-d tensor as long as the model has outputs",
        )
    if not bool((torch.isfinite(values) & (values >= 0)).all()):
        fail("weight", "finite weights >= 0", Text(f"{values.tolist()}"[:80]))
    return values.float()


class CountedLoss(nn.Module):
    """The base of the losses: ``CrossEntropyLoss``'s ``weight``, ``ignore_index``,
    ``reduction`` and ``label_smoothing``, checked once.

    ``weight`` is a buffer, as in ``CrossEntropyLoss``: a schedule may replace it between
    epochs (``loss.weight = schedule.weight(epoch)``); it is moved to the logits' device
    when it is not already there.
    """

    weight: torch.Tensor | None

    def __init__(
        self,
        num_classes: int,
        *,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("weight", check_weight(weight, num_classes))
        self.ignore_index = int(check_int("ignore_index", ignore_index))
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.label_smoothing = check_real(
            "label_smoothing",
            label_smoothing,
            low=0.0,
            high=1.0,
            fix="As in torch.nn.CrossEntropyLoss: 0 is no smoothing, 0.1 a common choice",
        )

    def class_weight(self, logits: torch.Tensor) -> torch.Tensor | None:
        """The per-class weight on the device and in the dtype of ``logits`` (or None)."""
        weight = self.weight
        if weight is None:
            return None
        if weight.numel() != self.num_classes:
            fail(
                "weight",
                f"one weight per class ({self.num_classes})",
                Text(f"{weight.numel()} weights"),
            )
        return weight.to(logits.device, logits.dtype)

    def extra_repr(self) -> str:
        """The options that differ from ``CrossEntropyLoss``'s defaults."""
        parts = [f"num_classes={self.num_classes}"] if self.num_classes else []
        if self.ignore_index != -100:
            parts.append(f"ignore_index={self.ignore_index}")
        if self.reduction != "mean":
            parts.append(f"reduction={self.reduction!r}")
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing:g}")
        if self.weight is not None:
            parts.append("weighted")
        return ", ".join(parts)


def soft_or_index(target: Any, logits: torch.Tensor) -> torch.Tensor:
    """``target`` for ``F.cross_entropy``: class indices as they are, probabilities in the
    dtype of ``logits``."""
    if not isinstance(target, torch.Tensor):
        fail(
            "target", "a tensor of class indices or of class probabilities", target, kind=TypeError
        )
    return target.to(logits.dtype) if target.is_floating_point() else target


def index_target(target: Any, loss: str) -> torch.Tensor:
    """``target`` as class indices; ``loss`` names the loss that cannot take probabilities."""
    if not isinstance(target, torch.Tensor) or target.is_floating_point() or target.is_complex():
        got = (
            Text(f"a tensor of dtype {target.dtype}")
            if isinstance(target, torch.Tensor)
            else target
        )
        fail(
            "target",
            "a tensor of class indices (an integer dtype)",
            got,
            f"{loss} needs the true class of each sample; class probabilities (mixup, soft "
            "labels) have no one class to take the margin or the focusing term from",
            kind=TypeError,
        )
    return target
