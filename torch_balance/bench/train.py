"""Training: one small CNN, one step budget, the loop every method shares.

The model and every random draw come from ``_rng.generator(seed, Stream.BENCH_...)``, so a run
is a pure function of its seed and its thread count (up to the floating-point non-determinism
of the device); ``bench.workers`` trains every run on the same number of threads, so the
results do not depend on how many runs train at once. Batches are gathered from the in-memory
tensors in one indexing call (:func:`take`) and the model computes in ``channels_last`` layout,
which is faster on CPUs (``benchmarks/bench_train_step.py`` measures both).
:class:`Budget` is the one place the schedule is derived from: the learning-rate decay step,
the epochs a run spans (``Progressive``'s length) and the epoch of the decay (``Deferred``'s
switch); ``bench.methods`` and ``bench.report`` both read them from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import BatchSampler, TensorDataset, default_collate

from torch_balance._rng import Stream, generator
from torch_balance._validation import fail

__all__ = [
    "Budget",
    "Feed",
    "SmallCNN",
    "Trained",
    "init_weights",
    "predict",
    "sampler_feed",
    "shuffle_feed",
    "take",
    "train",
]


@dataclass(frozen=True)
class Budget:
    """The optimisation settings every method shares.

    Attributes:
        steps: Optimizer steps of the backbone run (the same for every method).
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
        """The step at which the learning rate is multiplied by 0.1."""
        return max(1, round(self.decay_at * self.steps))

    def epochs_spanned(self, n_train: int) -> int:
        """Epochs of ``n_train`` images that ``steps`` batches start (``Progressive``'s T).

        Example:
            >>> Budget(steps=400, batch_size=64).epochs_spanned(1000)
            25
        """
        return max(1, math.ceil(self.steps / self.steps_per_epoch(n_train)))

    def decay_epoch(self, n_train: int) -> int:
        """The epoch in which the learning rate decays (``Deferred``'s switch), at least 1.

        Example:
            >>> Budget(steps=400, batch_size=64).decay_epoch(1000)
            20
        """
        return max(1, self.decay_step // self.steps_per_epoch(n_train))

    def steps_per_epoch(self, n_train: int) -> int:
        """Batches in one epoch of ``n_train`` images (the last one may be short)."""
        return math.ceil(n_train / self.batch_size)


class _Scale(nn.Module):
    """uint8 pixels (or floats on the same 0..255 scale) to roughly [-1, 1], channels last."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().mul(2.0 / 255.0).sub(1.0)
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class SmallCNN(nn.Module):
    """Three 3x3 conv-BN-ReLU blocks (16, 32, 64 channels), global average pooling, a linear head.

    Images of 24 pixels or more are downsampled by stride 2 in every block, smaller ones
    from the second block on. ``features(x)`` is the 64-d embedding the head reads. The
    weights and activations are in ``channels_last`` layout (the input is converted), about
    1.2x faster per step on a CPU than the default layout, with slightly different rounding.

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
        self.head: nn.Module = head  # a method may replace it (LDAM: a cosine head)
        self.embedding_size = channels
        self.to_empty(device="cpu")
        init_weights(self, generator(seed, Stream.BENCH_INIT))
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, classes]`` for images ``[N, C, H, W]`` of 0..255 pixels (scaled in here)."""
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


def take(dataset: Any, rows: Sequence[int]) -> tuple[torch.Tensor, ...]:
    """Items ``rows`` of ``dataset`` as one batch, gathered in one indexing call when possible.

    A ``TensorDataset`` (or a :class:`~torch_balance.ResampledDataset` over one) is indexed
    with all of ``rows`` at once; any other dataset is read item by item and collated as a
    ``DataLoader`` would. The values are the same either way.

    Example:
        >>> data = TensorDataset(torch.arange(10) * 10, torch.arange(10))
        >>> take(data, [3, 1])
        (tensor([30, 10]), tensor([3, 1]))
    """
    from torch_balance.datasets import ResampledDataset

    if isinstance(dataset, TensorDataset):
        index = torch.as_tensor(rows, dtype=torch.long)
        return tuple(tensor[index] for tensor in dataset.tensors)
    if isinstance(dataset, ResampledDataset):
        inner = dataset.epoch_indices()[torch.as_tensor(rows, dtype=torch.long)]
        return take(dataset.dataset, inner.tolist())
    return tuple(default_collate([dataset[i] for i in rows]))


def _pairs(
    dataset: Any, batches: Iterable[list[int]]
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for rows in batches:
        x, y = take(dataset, rows)
        yield x, y


def sampler_feed(dataset: Any, sampler: Any, batch_size: int) -> Feed:
    """Batches of ``dataset`` in the order of a torch_balance sampler (the last one may be short).

    Example:
        >>> from torch_balance import BalancedSampler
        >>> data = TensorDataset(torch.zeros(5, 1, 2, 2), torch.tensor([0, 0, 0, 1, 1]))
        >>> feed = sampler_feed(data, BalancedSampler([0, 0, 0, 1, 1], "class", seed=0), 4)
        >>> [len(y) for _, y in feed(0)]
        [4, 1]
    """
    batches = BatchSampler(sampler, batch_size, drop_last=False)

    def feed(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        sampler.set_epoch(epoch)
        return _pairs(dataset, batches)

    return feed


def shuffle_feed(dataset: Any, batch_size: int, seed: int, *keys: int) -> Feed:
    """Batches of ``dataset`` in a plain shuffle, epoch ``e``'s drawn from (seed, keys, e).

    Example:
        >>> data = TensorDataset(torch.arange(5), torch.arange(5))
        >>> feed = shuffle_feed(data, 2, 0, 7)
        >>> sorted(torch.cat([y for _, y in feed(0)]).tolist())
        [0, 1, 2, 3, 4]
    """

    def feed(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # A ResampledDataset here is never set_epoch'd: one fixed subset, reshuffled.
        order = torch.randperm(len(dataset), generator=generator(seed, *keys, epoch)).tolist()
        return _pairs(
            dataset, (order[i : i + batch_size] for i in range(0, len(order), batch_size))
        )

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
    loss: nn.Module | None = None,
) -> int:
    """Run ``steps`` SGD steps over the batches of ``feed``; return the epochs started.

    The learning rate drops by 10x at ``decay_at * steps`` (``budget``'s rule, applied to
    ``steps``, which is the head's step count when training a head). The loss is ``loss``
    (a module of ``torch_balance.losses``, say) or else cross-entropy weighted by ``weight``.

    Example:
        >>> x, y = torch.zeros(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
        >>> model = SmallCNN(1, 3, 8, seed=0)
        >>> train(model, lambda epoch: [(x[:4], y[:4]), (x[4:], y[4:])], steps=3,
        ...       budget=Budget(steps=3, batch_size=4), device=torch.device("cpu"))
        2
    """
    module.to(device).train()
    params = list(module.parameters() if parameters is None else parameters)
    optimizer = torch.optim.SGD(params, lr=budget.lr, momentum=0.9, weight_decay=5e-4)
    decay = max(1, round(budget.decay_at * steps))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[decay], gamma=0.1)
    if loss is not None and weight is not None:
        fail("weight", "None when a loss is given", "a weight", "Give the loss its own weight")
    loss_fn = (
        loss.to(device)
        if loss is not None
        else nn.CrossEntropyLoss(weight=None if weight is None else weight.to(device))
    )
    step, epoch = 0, 0
    while step < steps:
        for xb, yb in feed(epoch):
            optimizer.zero_grad(set_to_none=True)
            value = loss_fn(module(xb.to(device)), yb.to(device))
            value.backward()
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
    """Logits of ``module`` on ``x`` (eval mode, CPU float tensor), ``batch`` rows at a time.

    Example:
        >>> predict(SmallCNN(1, 3, 8, seed=0), torch.zeros(5, 1, 8, 8), torch.device("cpu")).shape
        torch.Size([5, 3])
    """
    module.to(device).eval()
    parts = [module(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)]
    return torch.cat(parts) if parts else torch.empty(0)


@dataclass
class Trained:
    """What one method produced: logits on validation and test, and notes."""

    val_logits: torch.Tensor
    test_logits: torch.Tensor
    seconds: float
    epochs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    model: SmallCNN | None = None
