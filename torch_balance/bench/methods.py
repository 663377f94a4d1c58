"""The benchmark's methods: a registry from name to how that method trains.

Every method is built from torch_balance's public API; this module adds no sampling logic.
A method is one :class:`Method` entry in :data:`METHODS`, with one of three stages:

- ``"backbone"``: trains a fresh :class:`~torch_balance.bench.train.SmallCNN` for the full
  step budget; its builder returns a :class:`Recipe` (the batches, and loss weights if any).
- ``"head"``: freezes ``erm``'s features and trains a fresh linear head for
  ``budget.head_steps``; its builder returns a :class:`HeadRecipe`.
- ``"post-hoc"``: derives its logits from ``erm``'s without training; its builder returns
  the :class:`~torch_balance.bench.train.Trained` result itself.

Adding a method is one entry, e.g. ``"mixup": Method("...", "backbone", _mixup)``.

==================  ===========================================================================
method              what trains the model
==================  ===========================================================================
``erm``             ``BalancedSampler(y, "instance")``: every image once per epoch, shuffled
``over``            ``RandomOverSampler(y)``, redrawn each epoch
``under``           ``RandomUnderSampler(y)``, redrawn each epoch (walks through the majority)
``under-static``    one ``ResampledDataset(train, "under")`` never redrawn, plain shuffle
``sqrt``            ``BalancedSampler(y, "sqrt")`` (Kang et al., 2020)
``class``           ``BalancedSampler(y, "class")``
``progressive``     ``BalancedSampler(y, Progressive(T))``, T = the epochs the budget spans
``deferred``        ``BalancedSampler(y, Deferred(E))``: instance- then class-balanced from the
                    epoch E of the learning-rate decay (DRS, Cao et al., 2019)
``feedback``        ``BalancedSampler(y, Feedback("sqrt", tau=1, mix=0.5))``, fed each epoch the
                    per-class recall on the validation split (Sinha et al., 2020)
``reweight``        plain shuffle, loss weighted by ``class_weights(y, "effective")``
``crt``             ``erm``'s features frozen, head retrained with ``BalancedSampler(.., "class")``
``smote-embedding`` ``erm``'s features frozen, head retrained on ``SMOTE`` of the embeddings
``pixel-smote``     imbalanced-learn's ``SMOTE`` on flattened pixels, then a plain shuffle
``logit-adjust``    ``erm``'s logits minus ``tau * log(prior)``, tau chosen on validation
==================  ===========================================================================

The long-tail losses (``la-loss``, ``balanced-softmax``, ``focal``, ``cb-focal``, ``drw``,
``ldam-drw``, ``ldam-drs``, ``tau-norm``) are entries of ``bench.loss_methods``, added at the
end of :data:`METHODS`; the dataclasses a method is made of are in ``bench.recipes``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from torch_balance._rng import Stream, generator
from torch_balance._validation import fail
from torch_balance.bench.loss_methods import LOSS_METHODS
from torch_balance.bench.recipes import (
    TAUS,
    CannotRun,
    HeadRecipe,
    Job,
    Method,
    Recipe,
    Stage,
    erm_of,
    head_steps,
    pick_tau,
)
from torch_balance.bench.train import (
    SmallCNN,
    Trained,
    init_weights,
    predict,
    sampler_feed,
    shuffle_feed,
    train,
)
from torch_balance.samplers import BalancedSampler, RandomOverSampler, RandomUnderSampler
from torch_balance.strategies import Deferred, Progressive
from torch_balance.weights import class_weights

__all__ = [
    "METHODS",
    "TAUS",
    "CannotRun",
    "HeadRecipe",
    "Job",
    "Method",
    "Recipe",
    "Stage",
    "check_methods",
    "run_method",
]


def check_methods(text: str | Iterable[str]) -> list[str]:
    """Parse ``"a,b,..."`` (or a list) into known method names, in the order given.

    Example:
        >>> check_methods("erm,over")
        ['erm', 'over']
        >>> check_methods("erm,smote")
        Traceback (most recent call last):
        ...
        ValueError: --methods: expected names from erm, over, under, ..., got 'smote'...
    """
    names = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    if not names:
        fail("--methods", "at least one name from " + ", ".join(METHODS), text)
    for name in names:
        if name not in METHODS:
            fail(
                "--methods",
                "names from " + ", ".join(METHODS),
                name,
                "Separate names with commas, e.g. --methods erm,over,deferred",
            )
    return list(dict.fromkeys(names))


def run_method(name: str, job: Job) -> Trained:
    """Train (or derive, for the head and post-hoc stages) one method and return its logits.

    Args:
        name: A key of :data:`METHODS`.
        job: The data, seed, budget and device (and ``erm``'s result where the stage needs it).

    Returns:
        The logits on validation and test, the time taken and the method's notes.

    Raises:
        CannotRun: For a method this data cannot support (a class with fewer than 2
            training images for the SMOTE methods), before any training.
        ValueError: For an unknown name, or a head or post-hoc method without ``erm``.

    Example:
        >>> from torch_balance.bench.sources import load_source
        >>> from torch_balance.bench.split import make_split, materialize
        >>> from torch_balance.bench.train import Budget
        >>> source = load_source("digits")
        >>> data = materialize(source, make_split(source, ratio=10, seed=0))
        >>> job = Job(data, 10, seed=0, budget=Budget(steps=2, batch_size=32),
        ...           device=torch.device("cpu"))
        >>> run_method("over", job).test_logits.shape
        torch.Size([500, 10])
    """
    if name not in METHODS:
        fail("method", "one of " + ", ".join(METHODS), name)
    method = METHODS[name]
    start = time.perf_counter()
    if method.uses_erm:
        erm_of(job)  # fail early, before any work
    if method.stage == "backbone":
        return _train_backbone(job, method.build(job), start, keep_model=name == "erm")
    if method.stage == "head":
        return _train_head(job, method.build, start)
    result: Trained = method.build(job)
    result.seconds = time.perf_counter() - start
    return result


def _train_backbone(job: Job, recipe: Recipe, start: float, *, keep_model: bool) -> Trained:
    """A fresh SmallCNN trained for the step budget on ``recipe``'s batches."""
    _, channels, size, _ = job.data.x_train.shape
    model = SmallCNN(channels, job.num_classes, size, seed=job.seed)
    if recipe.head is not None:
        model.head = recipe.head(model.embedding_size, job.num_classes, job.seed)
    if recipe.watch is not None:
        recipe.watch(model)
    epochs = train(
        model,
        recipe.feed,
        steps=job.budget.steps,
        budget=job.budget,
        device=job.device,
        weight=recipe.weight,
        tick=job.tick,
        loss=recipe.loss,
    )
    return Trained(
        val_logits=predict(model, job.data.x_val, job.device),
        test_logits=predict(model, job.data.x_test, job.device),
        seconds=time.perf_counter() - start,
        epochs=epochs,
        extra=recipe.extra,
        model=model if keep_model else None,
    )


def _train_head(job: Job, build: Callable[[Job, nn.Module], HeadRecipe], start: float) -> Trained:
    """A fresh linear head on ``erm``'s frozen features (cRT, Kang et al., 2020)."""
    _, model = erm_of(job)
    encoder = model.features.to(job.device).eval()
    recipe = build(job, encoder)
    with torch.device("meta"):
        head = nn.Linear(model.embedding_size, job.num_classes)
    head.to_empty(device="cpu")
    init_weights(head, generator(job.seed, Stream.BENCH_HEAD))
    steps = head_steps(job.budget)
    train(
        head,
        sampler_feed(recipe.dataset, recipe.sampler, job.budget.batch_size),
        steps=steps,
        budget=job.budget,
        device=job.device,
        tick=job.tick,
    )
    extra = {**recipe.extra, "head_steps": steps}

    def logits(x: torch.Tensor) -> torch.Tensor:
        return predict(head, predict(encoder, x, job.device), job.device)

    return Trained(
        val_logits=logits(job.data.x_val),
        test_logits=logits(job.data.x_test),
        seconds=time.perf_counter() - start,
        extra=extra,
    )


def _smallest_k(job: Job, method: str, labels: np.ndarray, wanted: int = 5) -> tuple[int, int]:
    """SMOTE's ``k_neighbors``: ``wanted``, or fewer when the smallest class is smaller."""
    counts = np.bincount(labels, minlength=job.num_classes).astype(np.int64)
    present = np.flatnonzero(counts)
    single = [job.class_name(int(c)) for c in present if counts[c] == 1]
    if single:
        which = (
            f"class {single[0]} has" if len(single) == 1 else f"classes {', '.join(single)} have"
        )
        raise CannotRun(
            method,
            f"{which} 1 training image; SMOTE interpolates between two images of a class. Add "
            f"images to {'that class' if len(single) == 1 else 'those classes'}, or leave the "
            "method out of --methods",
        )
    smallest = int(counts[present].min())
    return min(wanted, smallest - 1), smallest


# Backbone builders: Job -> Recipe.


def _sampled(strategy: Any) -> Callable[[Job], Recipe]:
    """A method that trains on ``BalancedSampler(y, strategy)``'s epochs."""

    def build(job: Job) -> Recipe:
        sampler = BalancedSampler(job.labels, strategy, seed=job.seed)
        return Recipe(sampler_feed(job.train_set, sampler, job.budget.batch_size))

    return build


def _over(job: Job) -> Recipe:
    sampler = RandomOverSampler(job.labels, seed=job.seed)
    return Recipe(sampler_feed(job.train_set, sampler, job.budget.batch_size))


def _under(job: Job) -> Recipe:
    sampler = RandomUnderSampler(job.labels, seed=job.seed)
    return Recipe(sampler_feed(job.train_set, sampler, job.budget.batch_size))


def _under_static(job: Job) -> Recipe:
    from torch_balance.datasets import ResampledDataset

    subset = ResampledDataset(job.train_set, "under", seed=job.seed, labels=job.labels)
    feed = shuffle_feed(subset, job.budget.batch_size, job.seed, Stream.BENCH_SHUFFLE)
    return Recipe(feed, extra={"subset_size": len(subset)})


def _progressive(job: Job) -> Recipe:
    epochs = job.budget.epochs_spanned(len(job.labels))
    recipe = _sampled(Progressive(epochs))(job)
    recipe.extra["num_epochs"] = epochs
    return recipe


def _deferred(job: Job) -> Recipe:
    start_epoch = job.budget.decay_epoch(len(job.labels))
    recipe = _sampled(Deferred(start_epoch, before="instance", after="class"))(job)
    recipe.extra["start_epoch"] = start_epoch
    return recipe


def _feedback(job: Job) -> Recipe:
    """Square-root sampling blended with (1 - validation recall) per class, fed each epoch."""
    from torch_balance.feedback import Feedback, per_class_recall

    strategy = Feedback("sqrt", tau=1.0, mix=0.5)
    sampler = BalancedSampler(job.labels, strategy, seed=job.seed)
    feed = sampler_feed(job.train_set, sampler, job.budget.batch_size)
    classes = torch.as_tensor(sampler.index.classes.astype(np.int64))
    watched: list[nn.Module] = []
    fed: list[list[float]] = []

    def measured(epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        if epoch > 0 and watched:
            model = watched[0]
            logits = predict(model, job.data.x_val, job.device)
            model.train()  # predict() leaves it in eval mode
            recall = per_class_recall(logits, job.data.y_val, job.num_classes)[classes]
            # a class without validation images has no recall: count it as average
            recall = torch.nan_to_num(recall, nan=float(recall.nanmean().nan_to_num(0.5)))
            strategy.update(recall, kind="recall")
            fed.append([round(float(r), 4) for r in recall])
        return feed(epoch)

    extra: dict[str, Any] = {"tau": 1.0, "mix": 0.5, "base": "sqrt", "recall_fed": fed}
    return Recipe(measured, extra=extra, watch=watched.append)


def _reweight(job: Job) -> Recipe:
    weight = class_weights(job.labels, "effective", beta=0.9999, num_classes=job.num_classes)
    recipe = _sampled("instance")(job)
    recipe.weight = weight
    recipe.extra["weights"] = [round(float(w), 4) for w in weight]
    return recipe


def _pixel_smote(job: Job) -> Recipe:
    from imblearn.over_sampling import SMOTE as PixelSMOTE

    seed, y_np = job.seed, job.labels
    k, smallest = _smallest_k(job, "pixel-smote", y_np)
    if k < 5:
        job.say(f"pixel-smote: k_neighbors clamped to {k} (smallest class has {smallest})")
    shape = job.data.x_train.shape[1:]
    flat = job.data.x_train.reshape(len(y_np), -1).numpy().astype(np.float32)
    x_res, y_res = PixelSMOTE(k_neighbors=k, random_state=seed).fit_resample(flat, y_np)
    images = torch.as_tensor(np.asarray(x_res, dtype=np.float32)).reshape(-1, *shape)
    labels = np.asarray(y_res, dtype=np.int64)
    resampled = TensorDataset(images, torch.as_tensor(labels))
    sampler = BalancedSampler(labels, "instance", seed=seed)
    feed = sampler_feed(resampled, sampler, job.budget.batch_size)
    return Recipe(feed, extra={"k_neighbors": k, "resampled_size": len(labels)})


# Head builders: (Job, frozen encoder) -> HeadRecipe.


def _crt(job: Job, encoder: nn.Module) -> HeadRecipe:
    with torch.no_grad():
        emb = predict(encoder, job.data.x_train, job.device)
    sampler = BalancedSampler(job.labels, "class", seed=job.seed)
    return HeadRecipe(TensorDataset(emb, job.data.y_train), sampler)


def _smote_embedding(job: Job, encoder: nn.Module) -> HeadRecipe:
    from torch_balance.smote import SMOTE, embed

    seed, device = job.seed, job.device
    k, smallest = _smallest_k(job, "smote-embedding", job.labels)  # before the encoder pass
    emb, labels = embed(job.train_set, encoder, device=device, progress=False)
    if k < 5:
        job.say(f"smote-embedding: k_neighbors clamped to {k} (smallest class has {smallest})")
    x_res, y_res = SMOTE(k_neighbors=k, random_state=seed, device=device).fit_resample(emb, labels)
    x_res = torch.as_tensor(x_res, dtype=torch.float32).cpu()
    y_arr = np.asarray(y_res.cpu() if isinstance(y_res, torch.Tensor) else y_res)
    y_arr = y_arr.astype(np.int64)
    dataset = TensorDataset(x_res, torch.as_tensor(y_arr))
    sampler = BalancedSampler(y_arr, "instance", seed=seed)
    return HeadRecipe(dataset, sampler, {"k_neighbors": k, "resampled_size": len(y_arr)})


# Post-hoc builders: Job -> Trained.


def _logit_adjust(job: Job) -> Trained:
    """Post-hoc logit adjustment (Menon et al., ICLR 2021): tau picked on validation."""
    erm, _ = erm_of(job)
    counts = np.bincount(job.labels, minlength=job.num_classes).astype(np.float64)
    log_prior = torch.as_tensor(np.log(np.maximum(counts, 1.0) / counts.sum()), dtype=torch.float32)
    best_tau = pick_tau(job, lambda tau: erm.val_logits - tau * log_prior)
    return Trained(
        val_logits=erm.val_logits - best_tau * log_prior,
        test_logits=erm.test_logits - best_tau * log_prior,
        seconds=0.0,
        extra={"tau": best_tau, "tau_grid": list(TAUS)},
    )


METHODS: dict[str, Method] = {
    "erm": Method("plain shuffle (empirical risk minimisation)", "backbone", _sampled("instance")),
    "over": Method("random oversampling, redrawn each epoch", "backbone", _over),
    "under": Method("random undersampling, redrawn each epoch", "backbone", _under),
    "under-static": Method(
        "one fixed undersampled subset (as imbalanced-learn)", "backbone", _under_static
    ),
    "sqrt": Method("square-root sampling", "backbone", _sampled("sqrt")),
    "class": Method("class-balanced sampling", "backbone", _sampled("class")),
    "progressive": Method("instance- to class-balanced over the run", "backbone", _progressive),
    "deferred": Method(
        "instance-balanced, class-balanced in the last stage (DRS)", "backbone", _deferred
    ),
    "feedback": Method(
        "sqrt sampling blended with validation difficulty, fed each epoch", "backbone", _feedback
    ),
    "reweight": Method("effective-number class weights in the loss", "backbone", _reweight),
    "crt": Method("erm features, head retrained class-balanced", "head", _crt),
    "smote-embedding": Method(
        "erm features, head retrained on SMOTE'd embeddings", "head", _smote_embedding
    ),
    "pixel-smote": Method("imbalanced-learn SMOTE on flattened pixels", "backbone", _pixel_smote),
    "logit-adjust": Method(
        "erm logits minus tau*log(prior), tau on validation", "post-hoc", _logit_adjust
    ),
    **LOSS_METHODS,  # bench.loss_methods: the long-tail losses
}
