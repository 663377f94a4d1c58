"""One training step of ``torch-balance bench``: the loop as it was against the loop as it is.

On one seed's split of Fashion-MNIST (long-tailed, ratio 100, batches of 128; digits with
``--data digits``), each variant trains a fresh ``SmallCNN`` (seed 0) for ``--steps`` SGD
steps with ``bench.train.train`` on one thread, the way every benchmark run trains:

- ``DataLoader, NCHW``: the loop before issue 11: batches read item by item through a
  ``DataLoader`` and collated, the model in the default (NCHW) layout;
- ``batched, NCHW``: each batch gathered from the in-memory tensors in one indexing call
  (``bench.train.take``), same layout; the same numbers as the first row;
- ``batched, channels_last``: what ships: gathered batches and the model in channels-last
  layout; faster, and the rounding differs, so its numbers differ slightly.

Reported: milliseconds per step (best of ``--repeats`` interleaved rounds), the speed-up over
the first row, and whether the trained model's test logits are bit-identical to the first
row's. Run: ``python benchmarks/bench_train_step.py`` (about 1 minute on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe

from torch_balance import BalancedSampler
from torch_balance.bench.runner import defaults_for
from torch_balance.bench.sources import load_source
from torch_balance.bench.split import Tensors, make_split, materialize
from torch_balance.bench.train import Budget, Feed, SmallCNN, predict, sampler_feed, train
from torch_balance.bench.workers import limit_threads


class ScaleNCHW(nn.Module):
    """The model's input scaling as it was: no change of layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mul(2.0 / 255.0).sub(1.0)


def nchw_model(channels: int, size: int) -> SmallCNN:
    model = SmallCNN(channels, 10, size, seed=0)
    model.to(memory_format=torch.contiguous_format)
    model.features[0] = ScaleNCHW()
    return model


def loader_feed(data: TensorDataset, sampler: Any, batch_size: int) -> Feed:
    """The feed as it was: a DataLoader reading and collating one item at a time."""
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler, generator=torch.Generator())

    def feed(epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        sampler.set_epoch(epoch)
        return loader

    return feed


Variant = tuple[str, Callable[[TensorDataset, Any, int], Feed], Callable[[int, int], SmallCNN]]
VARIANTS: list[Variant] = [
    ("DataLoader, NCHW", loader_feed, nchw_model),
    ("batched, NCHW", sampler_feed, nchw_model),
    ("batched, channels_last", sampler_feed, lambda c, s: SmallCNN(c, 10, s, seed=0)),
]


def one_run(variant: Variant, data: Tensors, steps: int, batch_size: int) -> tuple[float, Any]:
    _, make_feed, make_model = variant
    _, channels, size, _ = data.x_train.shape
    sampler = BalancedSampler(data.y_train.numpy(), "instance", seed=0)
    feed = make_feed(TensorDataset(data.x_train, data.y_train), sampler, batch_size)
    model = make_model(channels, size)
    budget = Budget(steps=steps, batch_size=batch_size)
    start = time.perf_counter()
    train(model, feed, steps=steps, budget=budget, device=torch.device("cpu"))
    seconds = time.perf_counter() - start
    return seconds / steps, predict(model, data.x_test, torch.device("cpu"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist", help="a DATA of torch-balance bench")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()

    source = load_source(args.data, progress=False)
    defaults = defaults_for(source)
    split = make_split(source, ratio=defaults["ratio"], seed=0)
    data = materialize(source, split)
    batch_size = defaults["batch_size"]
    best = {name: float("inf") for name, _, _ in VARIANTS}
    logits: dict[str, Any] = {}
    with limit_threads(1):
        one_run(VARIANTS[-1], data, 5, batch_size)  # warm-up: imports, allocator, kernels
        for _ in range(args.repeats):
            for variant in VARIANTS:
                per_step, logits[variant[0]] = one_run(variant, data, args.steps, batch_size)
                best[variant[0]] = min(best[variant[0]], per_step)
        machine = describe()
    first = VARIANTS[0][0]
    lines = [
        f"## One training step of torch-balance bench ({source.name}, {len(data.y_train)}"
        f" training images, batches of {batch_size}, {args.steps} steps, one thread)",
        "",
        f"- machine: {machine}",
        f"- best of {args.repeats} interleaved rounds per variant",
        "",
        "| variant | ms per step | speed-up | same logits as the first row |",
        "|---|---:|---:|---|",
    ]
    for name, _, _ in VARIANTS:
        same = "yes" if torch.equal(logits[name], logits[first]) else "no"
        lines.append(
            f"| {name} | {1000 * best[name]:.2f} | {best[first] / best[name]:.2f}x | {same} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
