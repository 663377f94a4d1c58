"""One epoch of each sampler (construct + iterate every index) against the shuffle floor.

Labels: N labels over 100 long-tailed classes (n_i proportional to 100**(-i/99), imbalance
ratio 100), shuffled. Every method is timed in this same run, best of ``--repeats``:

- the shuffle floor ``torch.randperm(L).tolist()`` iterated, at the epoch length L of the
  method it is compared with;
- ``torch.utils.data.WeightedRandomSampler`` with class-balanced weights, N draws;
- torchsampler's ``ImbalancedDatasetSampler`` (class-balanced, N draws), given the labels;
- ours: ``BalancedSampler(labels, "class")`` (N indices, class-balanced, like the two above),
  ``"sqrt"``, ``RandomUnderSampler`` and ``RandomOverSampler`` (imbalanced-learn's epoch
  lengths).

Then, in a fresh subprocess per row, N = 1e8 for ours with the peak RSS growth over the labels
themselves (bytes per label), sampled every 2 ms with psutil.

Run: ``python benchmarks/bench_samplers.py`` (about 10 minutes on 2 cores);
``--sizes 1e6 --big 0`` for a quick look.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakRSS, describe, drain, long_tailed_labels

from torch_balance import BalancedSampler, RandomOverSampler, RandomUnderSampler


def best_time(fn: Callable[[], int], repeats: int) -> tuple[float, int]:
    best, length = float("inf"), 0
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        length = fn()
        best = min(best, time.perf_counter() - start)
    return best, length


def floor(length: int) -> int:
    return drain(torch.randperm(length).tolist())


def weighted_random(labels: np.ndarray) -> int:
    counts = np.bincount(labels)
    weights = torch.from_numpy(1.0 / counts[labels])
    return drain(WeightedRandomSampler(weights, num_samples=labels.shape[0], replacement=True))


def torchsampler_epoch(labels: np.ndarray) -> int:
    from torchsampler import ImbalancedDatasetSampler

    dataset = list(range(labels.shape[0]))
    return drain(ImbalancedDatasetSampler(dataset, labels=labels.tolist()))


OURS: dict[str, Callable[[np.ndarray], object]] = {
    'BalancedSampler("class")': lambda y: BalancedSampler(y, "class"),
    'BalancedSampler("sqrt")': lambda y: BalancedSampler(y, "sqrt"),
    "RandomUnderSampler": lambda y: RandomUnderSampler(y),
    "RandomOverSampler": lambda y: RandomOverSampler(y),
}


def run_size(n: int, repeats: int, with_torchsampler: bool) -> list[dict[str, object]]:
    labels = long_tailed_labels(n)
    rows: list[dict[str, object]] = []
    floors: dict[int, float] = {}

    def floor_at(length: int) -> float:
        if length not in floors:
            floors[length] = best_time(lambda: floor(length), repeats)[0]
        return floors[length]

    wrs, _ = best_time(lambda: weighted_random(labels), repeats)
    rows.append({"N": n, "method": "WeightedRandomSampler", "length": n, "seconds": wrs})
    if with_torchsampler:
        ts, _ = best_time(lambda: torchsampler_epoch(labels), 1)
        rows.append({"N": n, "method": "torchsampler", "length": n, "seconds": ts})
    for name, make in OURS.items():
        seconds, length = best_time(lambda make=make: drain(make(labels)), repeats)  # type: ignore[misc]
        rows.append({"N": n, "method": name, "length": length, "seconds": seconds})
    for row in rows:
        length = int(row["length"])  # type: ignore[call-overload]
        row["floor_seconds"] = floor_at(length)
        row["vs_floor"] = float(row["seconds"]) / floor_at(length)  # type: ignore[arg-type]
        row["wrs_vs_this"] = wrs / float(row["seconds"]) * length / n  # type: ignore[arg-type]
    rows.insert(
        0,
        {
            "N": n,
            "method": "shuffle floor",
            "length": n,
            "seconds": floor_at(n),
            "floor_seconds": floor_at(n),
            "vs_floor": 1.0,
            "wrs_vs_this": wrs / floor_at(n),
        },
    )
    return rows


def big_child(name: str, n: int) -> None:
    """Runs in a subprocess: one epoch at ``n`` labels, printing time and peak RSS growth."""
    labels = long_tailed_labels(n)
    import imblearn.utils  # noqa: F401  (imported before the baseline, as in a real program)

    with PeakRSS() as memory:
        start = time.perf_counter()
        length = floor(n) if name == "shuffle floor" else drain(OURS[name](labels))
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "N": n,
                "method": name,
                "length": length,
                "seconds": seconds,
                "peak_growth_bytes": memory.growth,
            }
        )
    )


def limit_check() -> str:
    """Whether WeightedRandomSampler and ours draw from 2**24 + 1 samples."""
    n = 2**24 + 1
    weights = torch.ones(n, dtype=torch.double)
    try:
        next(iter(WeightedRandomSampler(weights, num_samples=10)))
        theirs = "draws"
    except RuntimeError as error:
        theirs = f"RuntimeError: {error}"
    labels = np.zeros(n, dtype=np.int64)
    labels[: n // 2] = 1
    ours = next(iter(BalancedSampler(labels, "class")))
    return (
        f"N = 2**24 + 1: WeightedRandomSampler -> {theirs}; "
        f"BalancedSampler -> draws (first index {ours})"
    )


def run_big(n: int, names: list[str]) -> list[dict[str, object]]:
    rows = []
    for name in names:
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, "--child-n", str(n)],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,1e7")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big", type=float, default=1e8, help="N for the memory run (0: skip)")
    parser.add_argument("--no-torchsampler", action="store_true")
    parser.add_argument(
        "--limit-check", action="store_true", help="only test the 2**24 limit, then stop"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        big_child(args.child, args.child_n)
        return
    import imblearn.utils  # noqa: F401  (its import is a one-off cost, kept out of the timings)

    if args.limit_check:
        print(limit_check())
        return

    print(f"Machine: {describe(('torch', 'numpy', 'imbalanced-learn', 'torchsampler'))}\n")
    print(
        "| N | method | epoch length | seconds | x shuffle floor at that length "
        "| WeightedRandomSampler time / this, per index |"
    )
    print("|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        n = int(float(size))
        repeats = args.repeats if n <= 1_000_000 else max(1, args.repeats - 1)
        for row in run_size(n, repeats, not args.no_torchsampler):
            print(
                f"| {n:.0e} | {row['method']} | {row['length']:,} | {row['seconds']:.3f} "
                f"| {row['vs_floor']:.2f}x | {row['wrs_vs_this']:.1f}x |",
                flush=True,
            )
    if args.big:
        n = int(args.big)
        print(f"\nN = {n:.0e}, one epoch in a fresh process; peak RSS growth over the labels:\n")
        print("| method | epoch length | seconds | peak RSS growth | bytes per label |")
        print("|---|---|---|---|---|")
        names = [
            "shuffle floor",
            'BalancedSampler("class")',
            'BalancedSampler("sqrt")',
            "RandomUnderSampler",
        ]
        for row in run_big(n, names):
            growth = int(row["peak_growth_bytes"])
            print(
                f"| {row['method']} | {row['length']:,} | {row['seconds']:.1f} "
                f"| {growth / 2**30:.2f} GiB | {growth / n:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
