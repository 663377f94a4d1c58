"""The training protocol: one small CNN, one step budget, thirteen strategies.

Every strategy is built from torch_balance's public API; this module adds no sampling logic.
The model, the order of batches and every random draw come from
``_rng.generator(seed, ...)``, so a run is a pure function of its seed (up to the
floating-point non-determinism of the device).

==================  ===========================================================================
strategy            what trains the model
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
``reweight``        plain shuffle, loss weighted by ``class_weights(y, "effective")``
``crt``             ``erm``'s features frozen, head retrained with ``BalancedSampler(.., "class")``
``smote-embedding`` ``erm``'s features frozen, head retrained on ``SMOTE`` of the embeddings
``pixel-smote``     imbalanced-learn's ``SMOTE`` on flattened pixels, then a plain shuffle
``logit-adjust``    ``erm``'s logits minus ``tau * log(prior)``, tau chosen on validation
==================  ===========================================================================
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torch_balance._rng import Stream, generator
from torch_balance._validation import fail
from torch_balance.bench.data import Tensors
from torch_balance.samplers import BalancedSampler, RandomOverSampler, RandomUnderSampler
from torch_balance.strategies import Deferred, Progressive, class_weights

__all__ = [
    "HEAD_STRATEGIES",
    "STRATEGIES",
    "Budget",
    "SmallCNN",
    "Trained",
    "check_strategies",
    "predict",
    "run_strategy",
]

STRATEGIES: dict[str, str] = {
    "erm": "plain shuffle (empirical risk minimisation)",
    "over": "random oversampling, redrawn each epoch",
    "under": "random undersampling, redrawn each epoch",
    "under-static": "one fixed undersampled subset (as imbalanced-learn)",
    "sqrt": "square-root sampling",
    "class": "class-balanced sampling",
    "progressive": "instance- to class-balanced over the run",
    "deferred": "instance-balanced, class-balanced in the last stage (DRS)",
    "reweight": "effective-number class weights in the loss",
    "crt": "erm features, head retrained class-balanced",
    "smote-embedding": "erm features, head retrained on SMOTE'd embeddings",
    "pixel-smote": "imbalanced-learn SMOTE on flattened pixels",
    "logit-adjust": "erm logits minus tau*log(prior), tau on validation",
}
HEAD_STRATEGIES = ("crt", "smote-embedding", "logit-adjust")  # built on the erm model
TAUS = tuple(np.round(np.arange(0.0, 2.01, 0.25), 2).tolist())


def check_strategies(text: str | Iterable[str]) -> list[str]:
    """Parse ``"a,b,..."`` (or a list) into known strategy names, in the order given.

    Example:
        >>> check_strategies("erm,over")
        ['erm', 'over']
        >>> check_strategies("erm,smote")
        Traceback (most recent call last):
        ...
        ValueError: --strategies: expected names from erm, over, under, ..., got 'smote'...
    """
    names = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    if not names:
        fail("--strategies", "at least one name from " + ", ".join(STRATEGIES), text)
    for name in names:
        if name not in STRATEGIES:
            fail(
                "--strategies",
                "names from " + ", ".join(STRATEGIES),
                name,
                "Separate names with commas, e.g. --strategies erm,over,deferred",
            )
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Budget:
    """The optimisation settings every strategy shares.

    Attributes:
        steps: Optimizer steps of the backbone run (the same for every strategy).
        batch_size: Images per step.
        lr: SGD learning rate (momentum 0.9, weight decay 5e-4); multiplied by 0.1 at
            ``decay_at * steps`` (the start of the last stage).
        head_steps: Steps of the head-only stage of ``crt`` and ``smote-embedding``.
    """

    steps: int
    batch_size: int
    lr: float = 0.05
    decay_at: float = 0.8
    head_steps: int = 0

    @property
    def decay_step(self) -> int:
        return max(1, round(self.decay_at * self.steps))


class _Scale(nn.Module):
    """uint8 pixels (or floats on the same 0..255 scale) to roughly [-1, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mul(2.0 / 255.0).sub(1.0)


class SmallCNN(nn.Module):
    """Three 3x3 conv-BN-ReLU blocks (16, 32, 64 channels), global average pooling, a linear head.

    Images of 24 pixels or more are downsampled by stride 2 in every block, smaller ones
    from the second block on. ``features(x)`` is the 64-d embedding the head reads.

    Example:
        >>> model = SmallCNN(1, 10, 8, seed=0)
        >>> model(torch.zeros(2, 1, 8, 8, dtype=torch.uint8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        *,
        seed: int,
        widths: tuple[int, ...] = (16, 32, 64),
    ) -> None:
        super().__init__()
        strides = [2] * len(widths) if image_size >= 24 else [1] + [2] * (len(widths) - 1)
        layers: list[nn.Module] = [_Scale()]
        channels = in_channels
        with torch.device("meta"):
            for width, stride in zip(widths, strides, strict=True):
                layers += [
                    nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                channels = width
            head = nn.Linear(channels, num_classes)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = head
        self.embedding_size = channels
        self.to_empty(device="cpu")
        init_weights(self, generator(seed, Stream.BENCH_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def init_weights(module: nn.Module, gen: torch.Generator) -> None:
    """PyTorch's default initialisation, drawn from ``gen`` instead of the global RNG."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
            if m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=gen)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()


# One epoch's batches; called with the epoch number, it calls set_epoch first.
Feed = Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def sampler_feed(dataset: Any, sampler: Any, batch_size: int) -> Feed:
    """Batches of ``dataset`` in the order of a torch_balance sampler."""
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler)

    def feed(epoch: int) -> DataLoader:
        sampler.set_epoch(epoch)
        return loader

    return feed


def shuffle_feed(dataset: Any, batch_size: int, seed: int, *keys: int) -> Feed:
    """Batches of ``dataset`` under a plain PyTorch shuffle seeded from (seed, keys)."""
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=generator(seed, *keys)
    )

    def feed(epoch: int) -> DataLoader:
        return loader  # a ResampledDataset here is never set_epoch'd: one fixed subset

    return feed


def train(
    module: nn.Module,
    feed: Feed,
    *,
    steps: int,
    budget: Budget,
    device: torch.device,
    weight: torch.Tensor | None = None,
    tick: Callable[[int], None] | None = None,
    parameters: Iterable[nn.Parameter] | None = None,
) -> int:
    """Run ``steps`` SGD steps over the batches of ``feed``; return the epochs started."""
    module.to(device).train()
    params = list(module.parameters() if parameters is None else parameters)
    optimizer = torch.optim.SGD(params, lr=budget.lr, momentum=0.9, weight_decay=5e-4)
    decay = max(1, round(budget.decay_at * steps))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[decay], gamma=0.1)
    loss_fn = nn.CrossEntropyLoss(weight=None if weight is None else weight.to(device))
    step, epoch = 0, 0
    while step < steps:
        for xb, yb in feed(epoch):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(module(xb.to(device)), yb.to(device))
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if tick is not None:
                tick(1)
            if step == steps:
                break
        epoch += 1
    return epoch


@torch.no_grad()
def predict(module: nn.Module, x: torch.Tensor, device: torch.device, batch: int = 1024) -> Any:
    """Logits of ``module`` on ``x`` (eval mode, CPU float tensor)."""
    module.to(device).eval()
    parts = [module(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)]
    return torch.cat(parts) if parts else torch.empty(0)


@dataclass
class Trained:
    """What one strategy produced: logits on validation and test, and notes."""

    val_logits: torch.Tensor
    test_logits: torch.Tensor
    seconds: float
    epochs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    model: SmallCNN | None = None


def _smallest_k(labels: np.ndarray, wanted: int = 5) -> tuple[int, int]:
    smallest = int(np.bincount(labels).astype(np.int64)[np.unique(labels)].min())
    if smallest < 2:
        fail("SMOTE", "at least 2 training images in every class", smallest)
    return min(wanted, smallest - 1), smallest


def _new_model(data: Tensors, num_classes: int, seed: int) -> SmallCNN:
    _, channels, size, _ = data.x_train.shape
    return SmallCNN(channels, num_classes, size, seed=seed)


def run_strategy(
    name: str,
    data: Tensors,
    num_classes: int,
    *,
    seed: int,
    budget: Budget,
    device: torch.device,
    erm: Trained | None = None,
    tick: Callable[[int], None] | None = None,
    say: Callable[[str], None] = print,
) -> Trained:
    """Train (or derive, for the head strategies) one strategy and return its logits.

    Args:
        name: A key of :data:`STRATEGIES`.
        data: The split's tensors.
        num_classes: C.
        seed: The run's seed.
        budget: Steps, batch size and learning rate.
        device: Where to train.
        erm: The ``erm`` result (with its model), needed by the head strategies.
        tick: Called with the number of steps done, for a progress bar.
        say: Where notes go (e.g. ``tqdm.write``).

    Returns:
        The logits on validation and test.
    """
    start = time.perf_counter()
    y_np = data.y_train.numpy()
    train_set = TensorDataset(data.x_train, data.y_train)
    B = budget.batch_size
    extra: dict[str, Any] = {}
    if name in HEAD_STRATEGIES:
        if erm is None or erm.model is None:
            fail("erm", "the erm model, trained first", None)
        if name == "logit-adjust":
            return _logit_adjust(data, num_classes, erm, start)
        return _retrain_head(name, data, num_classes, seed, budget, device, erm, tick, say, start)

    weight = None
    if name == "erm":
        feed = sampler_feed(train_set, BalancedSampler(y_np, "instance", seed=seed), B)
    elif name == "over":
        feed = sampler_feed(train_set, RandomOverSampler(y_np, seed=seed), B)
    elif name == "under":
        feed = sampler_feed(train_set, RandomUnderSampler(y_np, seed=seed), B)
    elif name == "under-static":
        from torch_balance.datasets import ResampledDataset

        subset = ResampledDataset(train_set, "under", seed=seed, labels=y_np)
        feed = shuffle_feed(subset, B, seed, Stream.BENCH_SHUFFLE)
        extra["subset_size"] = len(subset)
    elif name in ("sqrt", "class"):
        feed = sampler_feed(train_set, BalancedSampler(y_np, name, seed=seed), B)
    elif name in ("progressive", "deferred"):
        per_epoch = math.ceil(len(y_np) / B)
        if name == "progressive":
            epochs = max(1, math.ceil(budget.steps / per_epoch))
            strategy: Any = Progressive(epochs)
            extra["num_epochs"] = epochs
        else:
            start_epoch = max(1, budget.decay_step // per_epoch)
            strategy = Deferred(start_epoch, before="instance", after="class")
            extra["start_epoch"] = start_epoch
        feed = sampler_feed(train_set, BalancedSampler(y_np, strategy, seed=seed), B)
    elif name == "reweight":
        weight = class_weights(y_np, "effective", beta=0.9999, num_classes=num_classes)
        feed = sampler_feed(train_set, BalancedSampler(y_np, "instance", seed=seed), B)
        extra["weights"] = [round(float(w), 4) for w in weight]
    elif name == "pixel-smote":
        from imblearn.over_sampling import SMOTE as PixelSMOTE

        k, smallest = _smallest_k(y_np)
        if k < 5:
            say(f"pixel-smote: k_neighbors clamped to {k} (smallest class has {smallest})")
        shape = data.x_train.shape[1:]
        flat = data.x_train.reshape(len(y_np), -1).numpy().astype(np.float32)
        x_res, y_res = PixelSMOTE(k_neighbors=k, random_state=seed).fit_resample(flat, y_np)
        images = torch.as_tensor(np.asarray(x_res, dtype=np.float32)).reshape(-1, *shape)
        labels = np.asarray(y_res, dtype=np.int64)
        resampled = TensorDataset(images, torch.as_tensor(labels))
        feed = sampler_feed(resampled, BalancedSampler(labels, "instance", seed=seed), B)
        extra.update(k_neighbors=k, resampled_size=len(labels))
    else:
        fail("strategy", "one of " + ", ".join(STRATEGIES), name)

    model = _new_model(data, num_classes, seed)
    epochs = train(
        model, feed, steps=budget.steps, budget=budget, device=device, weight=weight, tick=tick
    )
    return Trained(
        val_logits=predict(model, data.x_val, device),
        test_logits=predict(model, data.x_test, device),
        seconds=time.perf_counter() - start,
        epochs=epochs,
        extra=extra,
        model=model if name == "erm" else None,
    )


def _logit_adjust(data: Tensors, num_classes: int, erm: Trained, start: float) -> Trained:
    """Post-hoc logit adjustment (Menon et al., ICLR 2021): tau picked on validation."""
    from torch_balance.bench.metrics import scores

    counts = np.bincount(data.y_train.numpy(), minlength=num_classes).astype(np.float64)
    log_prior = torch.as_tensor(np.log(np.maximum(counts, 1.0) / counts.sum()), dtype=torch.float32)
    y_val = data.y_val.numpy()
    best_tau, best = 0.0, -1.0
    for tau in TAUS:
        predicted = (erm.val_logits - tau * log_prior).argmax(1).numpy()
        value = scores(y_val, predicted, counts)["balanced_accuracy"]
        if value > best + 1e-12:
            best_tau, best = tau, value
    return Trained(
        val_logits=erm.val_logits - best_tau * log_prior,
        test_logits=erm.test_logits - best_tau * log_prior,
        seconds=time.perf_counter() - start,
        extra={"tau": best_tau, "tau_grid": list(TAUS)},
    )


def _retrain_head(
    name: str,
    data: Tensors,
    num_classes: int,
    seed: int,
    budget: Budget,
    device: torch.device,
    erm: Trained,
    tick: Callable[[int], None] | None,
    say: Callable[[str], None],
    start: float,
) -> Trained:
    """cRT (Kang et al., 2020) or SMOTE on embeddings: a fresh head on frozen erm features."""
    assert erm.model is not None  # checked by the caller
    encoder = erm.model.features.to(device).eval()
    y_np = data.y_train.numpy()
    extra: dict[str, Any] = {}
    if name == "crt":
        with torch.no_grad():
            emb = predict(encoder, data.x_train, device)
        dataset = TensorDataset(emb, data.y_train)
        sampler: Any = BalancedSampler(y_np, "class", seed=seed)
    else:
        from torch_balance.smote import SMOTE, embed

        emb, labels = embed(
            TensorDataset(data.x_train, data.y_train), encoder, device=device, progress=False
        )
        k, smallest = _smallest_k(np.asarray(labels, dtype=np.int64))
        if k < 5:
            say(f"smote-embedding: k_neighbors clamped to {k} (smallest class has {smallest})")
        smote = SMOTE(k_neighbors=k, random_state=seed, device=device)
        x_res, y_res = smote.fit_resample(emb, labels)
        x_res = torch.as_tensor(x_res, dtype=torch.float32).cpu()
        y_arr = np.asarray(y_res.cpu() if isinstance(y_res, torch.Tensor) else y_res)
        y_arr = y_arr.astype(np.int64)
        dataset = TensorDataset(x_res, torch.as_tensor(y_arr))
        sampler = BalancedSampler(y_arr, "instance", seed=seed)
        extra.update(k_neighbors=k, resampled_size=len(y_arr))
    with torch.device("meta"):
        head = nn.Linear(erm.model.embedding_size, num_classes)
    head.to_empty(device="cpu")
    init_weights(head, generator(seed, Stream.BENCH_HEAD))
    steps = budget.head_steps or max(50, budget.steps // 4)
    train(
        head,
        sampler_feed(dataset, sampler, budget.batch_size),
        steps=steps,
        budget=budget,
        device=device,
        tick=tick,
    )
    extra["head_steps"] = steps

    def logits(x: torch.Tensor) -> torch.Tensor:
        return predict(head, predict(encoder, x, device), device)

    return Trained(
        val_logits=logits(data.x_val),
        test_logits=logits(data.x_test),
        seconds=time.perf_counter() - start,
        extra=extra,
    )
