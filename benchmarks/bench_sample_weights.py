"""The cost of per-sample weights inside a class plan, against the plain epoch and torch's sampler.

Labels: N labels over 100 long-tailed classes (ratio 100), shuffled; weights: uniform in
[0, 1) with one sample in ten set to 0 (drawn once from a fixed seed). Every row is one epoch of
N indices, the sampler built and every index handed out (as a training loop would), best of
``--repeats``, all in this one run:

- ``BalancedSampler(labels, "class")``: the plain epoch (the walk);
- the same with ``sample_weights=w``: systematic sampling within each class (the default);
- the same with ``replacement=True``: i.i.d. draws within each class;
- ``torch.utils.data.WeightedRandomSampler`` with weights ``w_j / W_c`` (class-balanced,
  then ``w`` within the class: the distribution of the i.i.d. row, with random class counts).

Then the draw alone (no building, no Python ints): ``draw_epoch`` against
``draw_within_class``.

Run: ``python benchmarks/bench_sample_weights.py`` (about a minute on 2 cores at N = 1e7).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe, drain, long_tailed_labels

from torch_balance import BalancedSampler
from torch_balance.draws import draw_epoch, draw_within_class, group_sample_weights


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, default=1e7)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = int(args.n)
    labels = long_tailed_labels(n)
    rng = np.random.default_rng(1)
    w = rng.random(n)
    w[rng.random(n) < 0.1] = 0.0
    counts = np.bincount(labels)
    class_totals = np.bincount(labels, weights=w)
    torch_weights = torch.from_numpy(w / class_totals[labels])

    print(f"N = {n:,}, 100 long-tailed classes (ratio 100); {describe()}")
    print("command: python benchmarks/bench_sample_weights.py " + " ".join(sys.argv[1:]))
    rows: list[tuple[str, float]] = []

    def epoch(**kw: object) -> Callable[[], object]:
        return lambda: drain(BalancedSampler(labels, "class", seed=0, **kw))

    rows.append(('BalancedSampler(y, "class"), no weights', best(epoch(), args.repeats)))
    rows.append(("  sample_weights=w (systematic)", best(epoch(sample_weights=w), args.repeats)))
    rows.append(
        (
            "  sample_weights=w, replacement=True",
            best(epoch(sample_weights=w, replacement=True), args.repeats),
        )
    )
    gen = torch.Generator().manual_seed(0)
    wrs = WeightedRandomSampler(torch_weights, n, replacement=True, generator=gen)
    rows.append(("WeightedRandomSampler (w_j / W_c)", best(lambda: drain(wrs), args.repeats)))

    base = rows[0][1]
    reference = rows[3][1]
    print()
    print(
        "| one epoch, built and handed out | seconds | / no weights | WeightedRandomSampler / it |"
    )
    print("|---|---:|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / base:.2f}x | {reference / seconds:.2f}x |")

    sampler = BalancedSampler(labels, "class", seed=0)
    plan = sampler.plan
    plan.index.order  # noqa: B018 (grouped once, outside the timing)
    grouped = group_sample_weights(plan.index, plan, w)
    assert grouped is not None
    kernels = [
        ("draw_epoch (walk)", best(lambda: draw_epoch(plan, 0, 1), args.repeats)),
        (
            "draw_within_class (systematic)",
            best(lambda: draw_within_class(plan, grouped, 0, 1), args.repeats),
        ),
        (
            "draw_within_class (i.i.d.)",
            best(lambda: draw_within_class(plan, grouped, 0, 1, replacement=True), args.repeats),
        ),
    ]
    print()
    print("| the draw alone | seconds | / draw_epoch |")
    print("|---|---:|---:|")
    for name, seconds in kernels:
        print(f"| {name} | {seconds:.3f} | {seconds / kernels[0][1]:.2f}x |")
    print(f"\nclasses: {counts.max():,} to {counts.min():,} samples")


if __name__ == "__main__":
    main()
