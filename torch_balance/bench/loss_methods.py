"""The benchmark's loss methods: the long-tail losses of :mod:`torch_balance.losses`, alone
or beside a sampler, as entries of the methods registry (``bench.methods`` adds
:data:`LOSS_METHODS` to ``METHODS``).

Every backbone method here trains the same SmallCNN, for the same step budget, as the
sampling methods; only the loss (and, for LDAM, the cosine head it assumes) changes. The
deferred schedules switch at the epoch of the learning-rate decay, as ``deferred`` does.

====================  =========================================================================
method                what trains the model
====================  =========================================================================
``la-loss``           plain shuffle, ``LogitAdjustedLoss(y, tau=1)`` (Menon et al., 2021)
``balanced-softmax``  plain shuffle, ``BalancedSoftmaxLoss(y)`` (Ren et al., 2020)
``focal``             plain shuffle, ``FocalLoss(gamma=2)`` (Lin et al., 2017)
``cb-focal``          plain shuffle, ``ClassBalancedLoss(y, 0.9999, loss="focal", gamma=1)``
                      (Cui et al., 2019); ``reweight`` is its softmax form
``drw``               plain shuffle, cross-entropy re-weighted by ``DeferredReweighting`` from
                      the decay epoch (Cao et al., 2019)
``ldam-drw``          plain shuffle, ``LDAMLoss`` on a ``NormedLinear`` head (s = 30) with
                      ``DeferredReweighting`` (LDAM-DRW, Cao et al., 2019)
``ldam-drs``          ``BalancedSampler(y, Deferred(E))`` (as ``deferred``) with ``LDAMLoss``
                      on a ``NormedLinear`` head (LDAM-DRS, Cao et al., 2019)
``tau-norm``          ``erm``'s head weights tau-normalised, tau chosen on validation (Kang
                      et al., 2020)
====================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from torch_balance._rng import Stream, generator
from torch_balance.bench.recipes import TAUS, CannotRun, Job, Method, Recipe, erm_of, pick_tau
from torch_balance.bench.train import Feed, Trained, predict, sampler_feed
from torch_balance.losses import (
    BalancedSoftmaxLoss,
    ClassBalancedLoss,
    DeferredReweighting,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    NormedLinear,
    tau_normalize,
)
from torch_balance.samplers import BalancedSampler
from torch_balance.strategies import Deferred

__all__ = ["BETA", "LOSS_METHODS", "MAX_MARGIN", "SCALE"]

BETA = 0.9999  # Cui et al.'s and Cao et al.'s beta for CIFAR-LT
MAX_MARGIN, SCALE = 0.5, 30.0  # LDAM's largest margin and scale (Cao et al.)


def _counts(job: Job, method: str) -> dict[int, int]:
    """The training counts of every class, or :class:`CannotRun` where a class has none (a
    loss built on counts takes their log or divides by them)."""
    counts = np.bincount(job.labels, minlength=job.num_classes)
    empty = [job.class_name(int(c)) for c in np.flatnonzero(counts == 0)]
    if empty:
        raise CannotRun(
            method,
            f"class {empty[0]} has no training image, and the loss is built on the log (or a "
            "power) of each class's count; leave the method out of --methods",
        )
    return {c: int(n) for c, n in enumerate(counts)}


def _feed(job: Job, strategy: Any = "instance") -> Feed:
    sampler = BalancedSampler(job.labels, strategy, seed=job.seed)
    return sampler_feed(job.train_set, sampler, job.budget.batch_size)


def _with_loss(loss: Callable[[Job, str], nn.Module], name: str) -> Callable[[Job], Recipe]:
    """A method that trains on a plain shuffle with the loss ``loss(job, name)``."""

    def build(job: Job) -> Recipe:
        module = loss(job, name)
        return Recipe(_feed(job), loss=module, extra={"loss": repr(module)})

    return build


def _reweighted(feed: Feed, loss: nn.Module, drw: DeferredReweighting, job: Job) -> Feed:
    """``feed``, setting ``loss.weight`` to the schedule's weights at the start of each epoch."""

    def each_epoch(epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        loss.weight = drw.weight(epoch).to(job.device)
        return feed(epoch)

    return each_epoch


def _normed_head(embedding: int, classes: int, seed: int) -> nn.Module:
    return NormedLinear(embedding, classes, generator=generator(seed, Stream.BENCH_HEAD))


def _drw(job: Job) -> Recipe:
    start = job.budget.decay_epoch(len(job.labels))
    drw = DeferredReweighting(_counts(job, "drw"), start, beta=BETA)
    loss = nn.CrossEntropyLoss()
    feed = _reweighted(_feed(job), loss, drw, job)
    return Recipe(feed, loss=loss, extra={"start_epoch": start, "beta": BETA})


def _ldam(strategy: str) -> Callable[[Job], Recipe]:
    """LDAM on a cosine head, re-weighted (``"drw"``) or re-sampled (``"drs"``) from the
    decay epoch."""

    def build(job: Job) -> Recipe:
        name = f"ldam-{strategy}"
        counts = _counts(job, name)
        start = job.budget.decay_epoch(len(job.labels))
        loss = LDAMLoss(counts, MAX_MARGIN, SCALE)
        if strategy == "drw":
            feed = _reweighted(_feed(job), loss, DeferredReweighting(counts, start, beta=BETA), job)
        else:
            feed = _feed(job, Deferred(start, before="instance", after="class"))
        extra = {"start_epoch": start, "max_margin": MAX_MARGIN, "scale": SCALE}
        return Recipe(feed, loss=loss, head=_normed_head, extra=extra)

    return build


def _tau_norm(job: Job) -> Trained:
    """``erm``'s head with its class weight vectors divided by ``norm ** tau`` (bias kept),
    tau picked on validation."""
    _, model = erm_of(job)
    head = model.head
    encoder = model.features.to(job.device).eval()
    val = predict(encoder, job.data.x_val, job.device)
    test = predict(encoder, job.data.x_test, job.device)

    def logits(embeddings: torch.Tensor, tau: float) -> torch.Tensor:
        normed = tau_normalize(head.cpu(), tau) if isinstance(head, nn.Linear) else head
        return predict(normed, embeddings, torch.device("cpu"))

    best = pick_tau(job, lambda tau: logits(val, tau))
    return Trained(
        val_logits=logits(val, best),
        test_logits=logits(test, best),
        seconds=0.0,
        extra={"tau": best, "tau_grid": list(TAUS)},
    )


LOSS_METHODS: dict[str, Method] = {
    "la-loss": Method(
        "logit-adjusted loss, tau = 1",
        "backbone",
        _with_loss(lambda job, name: LogitAdjustedLoss(_counts(job, name), 1.0), "la-loss"),
    ),
    "balanced-softmax": Method(
        "Balanced Softmax loss",
        "backbone",
        _with_loss(lambda job, name: BalancedSoftmaxLoss(_counts(job, name)), "balanced-softmax"),
    ),
    "focal": Method(
        "focal loss, gamma = 2", "backbone", _with_loss(lambda job, name: FocalLoss(2.0), "focal")
    ),
    "cb-focal": Method(
        "class-balanced focal loss, beta = 0.9999, gamma = 1",
        "backbone",
        _with_loss(
            lambda job, name: ClassBalancedLoss(_counts(job, name), BETA, loss="focal", gamma=1.0),
            "cb-focal",
        ),
    ),
    "drw": Method("cross-entropy, class-balanced weights from the decay (DRW)", "backbone", _drw),
    "ldam-drw": Method("LDAM on a cosine head, DRW from the decay", "backbone", _ldam("drw")),
    "ldam-drs": Method(
        "LDAM on a cosine head, class-balanced sampling from the decay (DRS)",
        "backbone",
        _ldam("drs"),
    ),
    "tau-norm": Method("erm's head tau-normalised, tau on validation", "post-hoc", _tau_norm),
}
