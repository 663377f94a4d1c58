"""What a benchmark method is made of: the :class:`Job` its builder reads, the
:class:`Recipe` (or :class:`HeadRecipe`) it returns, the :class:`Method` entry that names it
in the registry (``bench.methods``), and :class:`CannotRun` for data it cannot support.

The registry's builders live in ``bench.methods`` (sampling, re-weighting, cRT, SMOTE,
logit adjustment) and ``bench.loss_methods`` (the long-tail losses); both build on this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from torch_balance._validation import fail
from torch_balance.bench.split import Tensors
from torch_balance.bench.train import Budget, Feed, SmallCNN, Trained

__all__ = [
    "TAUS",
    "CannotRun",
    "HeadRecipe",
    "Job",
    "Method",
    "Recipe",
    "Stage",
    "erm_of",
    "head_steps",
    "pick_tau",
]

TAUS = tuple(np.round(np.arange(0.0, 2.01, 0.25), 2).tolist())  # the post-hoc methods' grid

Stage = Literal["backbone", "head", "post-hoc"]


class CannotRun(ValueError):
    """A method that cannot run on this data (a class too small for SMOTE): the benchmark
    skips it, says why, and keeps the methods that ran.

    Example:
        >>> str(CannotRun("pixel-smote", "class 'cat' has 1 training image"))
        "pixel-smote: skipped: class 'cat' has 1 training image"
    """

    def __init__(self, method: str, reason: str) -> None:
        super().__init__(f"{method}: skipped: {reason}")
        self.method, self.reason = method, reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # travels back from a worker
        return CannotRun, (self.method, self.reason)


@dataclass(frozen=True)
class Job:
    """What a method's builder reads: one seed's data, the budget and where to train.

    Attributes:
        data: The split's tensors.
        num_classes: C.
        seed: The run's seed.
        budget: Steps, batch size and learning rate.
        device: Where to train.
        erm: The ``erm`` result (with its model), needed by the head and post-hoc stages.
        tick: Called with the number of steps done, for a progress bar.
        say: Where notes go (e.g. ``tqdm.write``).
        classes: The class names, for messages (default the class numbers).
    """

    data: Tensors
    num_classes: int
    seed: int
    budget: Budget
    device: torch.device
    erm: Trained | None = None
    tick: Callable[[int], None] | None = None
    say: Callable[[str], None] = print
    classes: tuple[str, ...] = ()

    def class_name(self, c: int) -> str:
        """The name of class ``c`` (its number when no names were given)."""
        return repr(self.classes[c]) if c < len(self.classes) else str(c)

    @property
    def labels(self) -> np.ndarray:
        """The training labels as a NumPy vector."""
        return self.data.y_train.numpy()

    @property
    def train_set(self) -> TensorDataset:
        """The training images and labels as a dataset."""
        return TensorDataset(self.data.x_train, self.data.y_train)


@dataclass
class Recipe:
    """How a backbone method trains: its batches, its loss (or loss weights), and notes for
    the JSON; ``head`` replaces the model's linear head (``(embedding size, C, seed) ->
    module``), e.g. with the cosine classifier LDAM assumes."""

    feed: Feed
    weight: torch.Tensor | None = None
    loss: nn.Module | None = None
    head: Callable[[int, int, int], nn.Module] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # called with the fresh model before training, for a feed that measures it (feedback)
    watch: Callable[[nn.Module], None] | None = None


@dataclass
class HeadRecipe:
    """How a head method trains: a dataset of embeddings, its sampler, and notes."""

    dataset: TensorDataset
    sampler: Any
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """One registry entry: a one-line summary, the stage, and the builder.

    Attributes:
        summary: One line for ``--help`` and reports.
        stage: ``"backbone"``, ``"head"`` or ``"post-hoc"`` (see the module docstring).
        build: ``Job -> Recipe`` (backbone), ``(Job, encoder) -> HeadRecipe`` (head) or
            ``Job -> Trained`` (post-hoc).
    """

    summary: str
    stage: Stage
    build: Callable[..., Any]

    @property
    def uses_erm(self) -> bool:
        """Whether the method starts from ``erm``'s trained model."""
        return self.stage != "backbone"

    def steps(self, budget: Budget) -> int:
        """Optimizer steps the method runs under ``budget`` (for a progress bar).

        Example:
            >>> head = Method("a head", "head", print)
            >>> head.steps(Budget(steps=400, batch_size=64, head_steps=100))
            100
        """
        return {"backbone": budget.steps, "head": head_steps(budget), "post-hoc": 0}[self.stage]


def head_steps(budget: Budget) -> int:
    """Steps of a head stage: ``budget.head_steps``, or a quarter of the backbone's (>= 50)."""
    return budget.head_steps or max(50, budget.steps // 4)


def erm_of(job: Job) -> tuple[Trained, SmallCNN]:
    """``erm``'s result and model, which the head and post-hoc stages start from."""
    if job.erm is None or job.erm.model is None:
        fail("erm", "the erm model, trained first", None)
    return job.erm, job.erm.model


def pick_tau(job: Job, val_logits: Callable[[float], torch.Tensor]) -> float:
    """The tau of :data:`TAUS` whose validation logits score the best balanced accuracy
    (the smallest tau on a tie); ``val_logits(tau)`` gives them.

    Example:
        >>> from torch_balance.bench.sources import load_source
        >>> from torch_balance.bench.split import make_split, materialize
        >>> source = load_source("digits")
        >>> data = materialize(source, make_split(source, ratio=10, seed=0))
        >>> job = Job(data, 10, seed=0, budget=Budget(steps=1, batch_size=8),
        ...           device=torch.device("cpu"))
        >>> pick_tau(job, lambda tau: torch.zeros(len(data.y_val), 10))  # a tie everywhere
        0.0
    """
    from torch_balance.bench.metrics import scores

    counts = np.bincount(job.labels, minlength=job.num_classes)
    y_val = job.data.y_val.numpy()
    best_tau, best = 0.0, -1.0
    for tau in TAUS:
        predicted = val_logits(tau).argmax(1).numpy()
        value = scores(y_val, predicted, counts)["balanced_accuracy"]
        if value > best + 1e-12:
            best_tau, best = tau, value
    return best_tau
