"""One epoch of each sampler (construct + iterate every index) against the shuffle floor.

Labels: N labels over 100 long-tailed classes (n_i proportional to 100**(-i/99), imbalance
ratio 100), shuffled. Every method is timed in this same run, best of ``--repeats`` (at least
``2e7 / N`` times: 20 at N = 1e6):

- the shuffle floor ``torch.randperm(L).tolist()`` iterated, at the epoch length L of the
  method it is compared with, run once after each run of that method (interleaved, so both
  are sampled under the same conditions; the floor is the best of all its runs at L);
- ``torch.utils.data.WeightedRandomSampler`` with class-balanced weights, N draws;
- torchsampler's ``ImbalancedDatasetSampler`` (class-balanced, N draws), given the labels;
- ours: ``BalancedSampler(labels, "class")`` (N indices, class-balanced, like the two above),
  ``"sqrt"``, ``RandomUnderSampler`` and ``RandomOverSampler`` (imbalanced-learn's epoch
  lengths).

- ``RandomUnderSampler``, a later epoch: the sampler built and its first epoch drawn, then
  the best of the next epochs of the same cycle (its walk permutations cached).

Then the same epochs timed stage by stage, one thread, no overlap (where the time goes:
building the sampler, grouping the labels by class, drawing the epoch, its permutation, the
gather, handing out Python ints), and the whole table again in a subprocess pinned to one
CPU (``os.sched_setaffinity``, as ``taskset -c 0``), where no helper thread runs.

Last, in a fresh subprocess per row, N = 1e8 for ours with the peak RSS growth over the labels
themselves (bytes per label), sampled every 2 ms with psutil, on every usable core and pinned
to one CPU.

Run: ``python benchmarks/bench_samplers.py`` (about 7 minutes on 2 cores);
``--sizes 1e6 --big 0 --no-baselines`` for a quick look.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakRSS, best_time, describe, drain, long_tailed_labels

from torch_balance import BalancedSampler, RandomOverSampler, RandomUnderSampler
from torch_balance.draws import draw_epoch, shuffle_order
from torch_balance.sharding import LIST_CHUNK


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


LATER = "RandomUnderSampler, a later epoch"


class Interleaved:
    """Times each method's runs one at a time, each followed by one run of the shuffle floor
    at the length the method returned: the method and its floor are sampled side by side
    (the same heap, cache and clock state) instead of minutes apart. A length's floor is the
    best of every floor run at that length."""

    def __init__(self, repeats: int) -> None:
        self.repeats = repeats
        self.floors: dict[int, float] = {}

    def floor_at(self, length: int) -> float:
        if length not in self.floors:
            self.floors[length] = best_time(lambda: floor(length), self.repeats)[0]
        return self.floors[length]

    def time(self, fn: Callable[[], int], repeats: int | None = None) -> tuple[float, int]:
        """The best of ``repeats`` runs of ``fn`` and the length it returned."""
        best, length = float("inf"), 0
        for _ in range(self.repeats if repeats is None else repeats):
            seconds, length = best_time(fn, 1)
            best = min(best, seconds)
            floor_seconds = best_time(lambda size=length: floor(size), 1)[0]  # type: ignore[misc]
            self.floors[length] = min(self.floors.get(length, float("inf")), floor_seconds)
        return best, length


def later_epoch(labels: np.ndarray, clock: Interleaved) -> tuple[float, int]:
    """The best epoch after the first of a built ``RandomUnderSampler`` (each run one more
    epoch of the same sampler)."""
    sampler = RandomUnderSampler(labels)
    drain(sampler)
    epochs = itertools.count(1)

    def next_epoch() -> int:
        sampler.set_epoch(next(epochs))
        return drain(sampler)

    return clock.time(next_epoch)


def run_size(n: int, repeats: int, baselines: bool) -> list[dict[str, object]]:
    """The timings at ``n`` labels, each method's epoch against the floor at its length."""
    labels = long_tailed_labels(n)
    rows: list[dict[str, object]] = []
    clock = Interleaved(repeats)
    if baselines:
        wrs, _ = clock.time(lambda: weighted_random(labels))
        rows.append({"N": n, "method": "WeightedRandomSampler", "length": n, "seconds": wrs})
        ts, _ = clock.time(lambda: torchsampler_epoch(labels), 1)
        rows.append({"N": n, "method": "torchsampler", "length": n, "seconds": ts})
    for name, make in OURS.items():
        seconds, length = clock.time(lambda make=make: drain(make(labels)))  # type: ignore[misc]
        rows.append({"N": n, "method": name, "length": length, "seconds": seconds})
    seconds, length = later_epoch(labels, clock)
    rows.append({"N": n, "method": LATER, "length": length, "seconds": seconds})
    rows.insert(0, {"N": n, "method": "shuffle floor", "length": n, "seconds": clock.floor_at(n)})
    wrs = float(rows[1]["seconds"]) if baselines else float("nan")  # type: ignore[arg-type]
    for row in rows:
        length = int(row["length"])  # type: ignore[call-overload]
        row["floor_seconds"] = clock.floor_at(length)
        row["vs_floor"] = float(row["seconds"]) / clock.floor_at(length)  # type: ignore[arg-type]
        row["wrs_vs_this"] = wrs / float(row["seconds"]) * length / n  # type: ignore[arg-type]
    return rows


STAGES = ("construct", "grouping", "draw", "permutation", "gather", "hand-out")


def handout(values: torch.Tensor) -> int:
    """Hand out ``values`` as Python ints the way the samplers do (lists of LIST_CHUNK)."""
    array = values.numpy()
    lists = (array[i : i + LIST_CHUNK].tolist() for i in range(0, array.shape[0], LIST_CHUNK))
    return drain(itertools.chain.from_iterable(lists))


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    gc.collect()
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def first_epoch_stages(labels: np.ndarray, make: Callable[[np.ndarray], Any]) -> dict[str, Any]:
    """One first epoch, stage by stage: seconds per stage and the epoch's length."""
    sampler, construct = timed(make, labels)
    _, grouping = timed(lambda: sampler.index.order)
    picks, draw = timed(draw_epoch, sampler.plan, sampler.seed, 0)
    order, permutation = timed(shuffle_order, picks.shape[0], 0, 0)
    gathered, gather = timed(picks.index_select, 0, order)
    _, hand_out = timed(handout, gathered)
    return {
        "length": picks.shape[0],
        "construct": construct,
        "grouping": grouping,
        "draw": draw,
        "permutation": permutation,
        "gather": gather,
        "hand-out": hand_out,
    }


def stage_times(n: int, repeats: int) -> list[dict[str, object]]:
    """Each method's first epoch at ``n`` labels, stage by stage, one thread, best of repeats."""
    labels = long_tailed_labels(n)
    rows: list[dict[str, object]] = []
    for name, make in OURS.items():
        runs = [first_epoch_stages(labels, make) for _ in range(repeats)]
        best = {stage: min(run[stage] for run in runs) for stage in STAGES}
        rows.append({"N": n, "method": name, "length": runs[0]["length"], **best})
    return rows


def pin_to_one_cpu() -> None:
    """In a child before it starts: one usable CPU, as ``taskset -c 0`` would leave it."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def one_core_rows(sizes: str, repeats: int) -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, __file__, "--table-json", "--sizes", sizes, "--repeats", str(repeats)],
        check=True,
        capture_output=True,
        text=True,
        preexec_fn=pin_to_one_cpu,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def print_table(rows: list[dict[str, object]], with_wrs: bool) -> None:
    header = "| N | method | epoch length | seconds | x shuffle floor at that length |"
    rule = "|---|---|---|---|---|"
    if with_wrs:
        header += " WeightedRandomSampler time / this, per index |"
        rule += "---|"
    print(header + "\n" + rule)
    for row in rows:
        line = (
            f"| {int(row['N']):.0e} | {row['method']} | {row['length']:,} | {row['seconds']:.3f} "  # type: ignore[call-overload]
            f"| {row['vs_floor']:.2f}x |"
        )
        if with_wrs:
            line += f" {row['wrs_vs_this']:.1f}x |"
        print(line, flush=True)


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


def run_big(n: int, names: list[str], one_cpu: bool) -> list[dict[str, object]]:
    rows = []
    for name in names:
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, "--child-n", str(n)],
            check=True,
            capture_output=True,
            text=True,
            preexec_fn=pin_to_one_cpu if one_cpu else None,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,1e7")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big", type=float, default=1e8, help="N for the memory run (0: skip)")
    parser.add_argument(
        "--no-baselines", action="store_true", help="skip WeightedRandomSampler and torchsampler"
    )
    parser.add_argument("--no-one-core", action="store_true", help="skip the one-CPU run")
    parser.add_argument(
        "--limit-check", action="store_true", help="only test the 2**24 limit, then stop"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--table-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        big_child(args.child, args.child_n)
        return
    import imblearn.utils  # noqa: F401  (its import is a one-off cost, kept out of the timings)

    if args.limit_check:
        print(limit_check())
        return
    sizes = [int(float(size)) for size in args.sizes.split(",")]

    def repeats_at(n: int) -> int:
        # Short epochs are timed more often (20 at 1e6), so that one scheduling hiccup on a
        # shared 2-core machine cannot decide a best-of; torchsampler is timed once at any N.
        return max(args.repeats, round(2e7 / n))

    if args.table_json:  # the one-CPU child: ours and the floor, as JSON lines
        for n in sizes:
            for row in run_size(n, repeats_at(n), baselines=False):
                print(json.dumps(row), flush=True)
        return

    packages = ("torch", "numpy", "imbalanced-learn", "torchsampler")
    print(f"Machine: {describe(packages)}; usable CPUs {len(os.sched_getaffinity(0))}\n")
    rows = [row for n in sizes for row in run_size(n, repeats_at(n), not args.no_baselines)]
    print_table(rows, with_wrs=not args.no_baselines)

    print("\nWhere the time goes: each first epoch stage by stage, one thread, no overlap (ms):\n")
    print("| N | method | " + " | ".join(STAGES) + " | sum | whole epoch, as run |")
    print("|---|---|" + "---|" * (len(STAGES) + 2))
    whole = {(row["N"], row["method"]): float(row["seconds"]) for row in rows}  # type: ignore[arg-type]
    for n in sizes:
        for row in stage_times(n, repeats_at(n)):
            parts = [float(row[stage]) for stage in STAGES]  # type: ignore[arg-type]
            print(
                f"| {n:.0e} | {row['method']} | "
                + " | ".join(f"{1e3 * part:.1f}" for part in parts)
                + f" | {1e3 * sum(parts):.1f} | {1e3 * whole[(n, row['method'])]:.1f} |",
                flush=True,
            )

    if not args.no_one_core:
        print("\nThe same, pinned to one CPU (no helper thread; torch threads 1):\n")
        print_table(one_core_rows(args.sizes, args.repeats), with_wrs=False)

    if args.big:
        n = int(args.big)
        names = [
            "shuffle floor",
            'BalancedSampler("class")',
            'BalancedSampler("sqrt")',
            "RandomUnderSampler",
        ]
        for one_cpu in (False, True):
            where = "pinned to one CPU" if one_cpu else "every usable CPU"
            print(f"\nN = {n:.0e}, one epoch in a fresh process, {where}; peak RSS growth over ")
            print("the labels:\n")
            print("| method | epoch length | seconds | peak RSS growth | bytes per label |")
            print("|---|---|---|---|---|")
            for row in run_big(n, names, one_cpu):
                growth = int(row["peak_growth_bytes"])  # type: ignore[call-overload]
                print(
                    f"| {row['method']} | {row['length']:,} | {row['seconds']:.1f} "
                    f"| {growth / 2**30:.2f} GiB | {growth / n:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
