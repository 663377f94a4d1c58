"""One epoch of WeightedSampler (construct + iterate every index) against WeightedRandomSampler.

Weights: N per-sample weights drawn log-normally (``exp(Z)``, ``Z ~ N(0, 1)``, fixed seed),
float64. Timed in this same run, best of ``--repeats``:

- the shuffle floor ``torch.randperm(N).tolist()`` iterated (handing out N Python ints);
- ``torch.utils.data.WeightedRandomSampler(w, N, replacement=True)``, iterated: the baseline
  of every ratio;
- ``WeightedRandomSampler(w, N, replacement=False)`` (torch.multinomial without replacement);
- ours: ``WeightedSampler(w)`` (i.i.d., N draws), ``WeightedSampler(w, replacement=False)``
  (successive sampling, N draws: a weighted permutation) and ``WeightedSampler(w,
  exact=True)`` (floor/ceil copies of each share, N indices).

Then, in a fresh subprocess, ``WeightedSampler(w)`` at ``--big`` weights (default 2e8), where
``WeightedRandomSampler`` refuses (more than 2**24 categories): time and peak RSS growth over
the weights themselves (sampled every 2 ms with psutil), per weight.

Run: ``python benchmarks/bench_weighted.py`` (about 3 minutes on 2 cores);
``--n 1e6 --big 0`` for a quick look.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import WeightedRandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakRSS, best_time, describe, drain

from torch_balance import WeightedSampler


def lognormal_weights(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float64).exp_()


METHODS: dict[str, Callable[[torch.Tensor], int]] = {
    "shuffle floor": lambda w: drain(torch.randperm(w.shape[0]).tolist()),
    "WeightedRandomSampler": lambda w: drain(WeightedRandomSampler(w, w.shape[0])),
    "WeightedRandomSampler(replacement=False)": lambda w: drain(
        WeightedRandomSampler(w, w.shape[0], replacement=False)
    ),
    "WeightedSampler": lambda w: drain(WeightedSampler(w)),
    "WeightedSampler(replacement=False)": lambda w: drain(WeightedSampler(w, replacement=False)),
    "WeightedSampler(exact=True)": lambda w: drain(WeightedSampler(w, exact=True)),
}


def big_child(n: int) -> None:
    """Runs in a subprocess: one epoch of WeightedSampler at ``n`` weights, time and memory."""
    weights = lognormal_weights(n)
    with PeakRSS() as memory:
        start = time.perf_counter()
        length = drain(WeightedSampler(weights))
        seconds = time.perf_counter() - start
    print(json.dumps({"N": n, "length": length, "seconds": seconds, "growth": memory.growth}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, default=1e7)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--big", type=float, default=2e8, help="N for the memory run (0: skip)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        big_child(args.child)
        return
    n = int(args.n)
    packages = ("torch", "numpy", "torch_balance")
    print(f"Machine: {describe(packages)}; usable CPUs {len(os.sched_getaffinity(0))}")
    print(f"Command: python benchmarks/bench_weighted.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"\nN = {n:,} log-normal weights, one epoch of N indices, best of {args.repeats}:\n")
    weights = lognormal_weights(n)
    rows = {}
    for name, fn in METHODS.items():
        rows[name] = best_time(lambda fn=fn: fn(weights), args.repeats)  # type: ignore[misc]
    baseline = rows["WeightedRandomSampler"][0]
    print("| method | indices | seconds | WeightedRandomSampler time / this |")
    print("|---|---|---|---|")
    for name, (seconds, length) in rows.items():
        print(f"| {name} | {length:,} | {seconds:.3f} | {baseline / seconds:.1f}x |", flush=True)

    if args.big:
        big = int(args.big)
        try:
            next(iter(WeightedRandomSampler(torch.ones(2**24 + 1, dtype=torch.float64), 1)))
            theirs = "draws"
        except RuntimeError as error:
            theirs = f"RuntimeError: {error}"
        print(f"\nWeightedRandomSampler at 2**24 + 1 weights: {theirs}")
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(big)],
            check=True,
            capture_output=True,
            text=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        growth = int(row["growth"])
        print(f"\nN = {big:.0e} weights, WeightedSampler, one epoch in a fresh process; peak RSS")
        print("growth over the weights given (float64, 8 bytes each):\n")
        print("| method | indices | seconds | peak RSS growth | bytes per weight |")
        print("|---|---|---|---|---|")
        print(
            f"| WeightedSampler | {row['length']:,} | {row['seconds']:.1f} "
            f"| {growth / 2**30:.2f} GiB | {growth / big:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
