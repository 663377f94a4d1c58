"""Class-aware sampling on COCO-like label sets: one epoch against the shuffle floor, and each
class's exposure against its target.

The label sets (written here, no files): ``--images`` images, ``--classes`` categories with a
long-tailed share (class c drawn with weight ``ratio ** (-c / (C - 1))``, ``--ratio`` 100),
``1 + Poisson(2)`` category draws per image (about 2.8 distinct categories an image, COCO
has 2.9), held as a :class:`~torch_balance.MultiLabelIndex`.

Two measurements, in the same run:

1. **One epoch** of ``ClassAwareSampler`` (``--images`` picks, every index handed out as a
   training loop reads them) against the shuffle floor ``torch.randperm(N).tolist()`` iterated
   the same way. The variants run round-robin, each run followed by a floor run; best of
   ``--repeats`` for each, against the best floor run, in wall-clock seconds and in CPU
   seconds of the process (all threads; less sensitive to other jobs on the cores). "first
   epoch" empties the walk cache before each run (every class draws its permutation, as the
   first epoch after construction or a resume does); "second epoch" is epoch 1 of a fresh
   sampler right after its epoch 0 (not timed); "later epoch" is a new epoch after the one
   before it (repeat ``r`` runs epoch ``r + 1`` after epoch ``r``: the walk cache holds what
   the epoch before left, as in every epoch of a training run after the first).
2. **Exposure** in epoch 0 of the uniform sampler: for the rarest and the most frequent
   classes, images holding the class, the share of picks under a plain shuffle (the class's
   share of images), the target (the share of class choices), the picks made for it, and the
   picks that show it (every category of every drawn image counts, which co-occurrence with
   frequent classes inflates).

Run: ``python benchmarks/bench_class_aware.py`` (about half a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import describe, drain

from torch_balance import ClassAwareSampler, MultiLabelIndex, Power


def coco_like(images: int, classes: int, ratio: float, seed: int = 0) -> MultiLabelIndex:
    rng = np.random.default_rng(seed)
    share = ratio ** (-np.arange(classes) / (classes - 1))
    share /= share.sum()
    draws = 1 + rng.poisson(2.0, size=images)
    flat = rng.choice(classes, size=int(draws.sum()), p=share)
    offsets = np.zeros(images + 1, dtype=np.int64)
    np.cumsum(draws, out=offsets[1:])
    return MultiLabelIndex.from_csr(flat, offsets)


def timed(fn: object) -> tuple[float, float]:
    """Wall-clock and CPU seconds (every thread of this process) of one call."""
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start, time.process_time() - cpu


def epoch_rows(index: MultiLabelIndex, args: argparse.Namespace) -> None:
    n = len(index)
    start = time.perf_counter()
    uniform = ClassAwareSampler(index, seed=0)
    construct = time.perf_counter() - start
    variants = {
        "uniform, first epoch": (ClassAwareSampler(index, seed=0), "first"),
        "uniform, second epoch": (uniform, "second"),
        "uniform, later epoch": (ClassAwareSampler(index, seed=0), "later"),
        "Power(0.5), later epoch": (ClassAwareSampler(index, Power(0.5), seed=0), "later"),
        "uniform, num_sample_class=4, later epoch": (
            ClassAwareSampler(index, num_sample_class=4, seed=0),
            "later",
        ),
    }
    floors: list[tuple[float, float]] = []
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for sampler, _ in variants.values():
        sampler.set_epoch(0)
        drain(sampler)  # epoch 0 done: the walk caches hold what epoch 1 continues
    # round-robin, each run followed by a floor run: every variant sees the same load
    for repeat in range(args.repeats):
        for name, (sampler, when) in variants.items():
            if when == "first":
                sampler._walks.clear()
            if when == "second":  # a fresh sampler's epoch 1 after its epoch 0 (not timed)
                sampler = ClassAwareSampler(index, seed=0)
                drain(sampler)
            sampler.set_epoch(repeat + 1 if when == "later" else 1)
            runs[name].append(timed(lambda s=sampler: drain(s)))
            floors.append(timed(lambda: drain(torch.randperm(n).tolist())))
    print(
        f"\n## One epoch of {n:,} picks ({index.num_categories} classes, "
        f"{index.codes.shape[0] / n:.2f} categories an image), {args.repeats} runs each\n"
    )
    print(
        "best of the runs (wall and CPU seconds), and the mean CPU seconds of the runs against "
        "the mean of the floor runs (a later epoch that starts new cycles costs more than one "
        "that does not; the mean counts both)\n"
    )
    print("| run | wall s | x floor | CPU s (all threads) | x floor | mean CPU x floor |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = {"shuffle floor: torch.randperm(N).tolist()": floors}
    rows.update({f"ClassAwareSampler, {name}": value for name, value in runs.items()})
    floor = (min(f[0] for f in floors), min(f[1] for f in floors))
    floor_mean = float(np.mean([f[1] for f in floors]))
    for name, times in rows.items():
        wall, cpu = min(t[0] for t in times), min(t[1] for t in times)
        mean = float(np.mean([t[1] for t in times])) / floor_mean
        print(
            f"| {name} | {wall:.3f} | {wall / floor[0]:.2f}x | {cpu:.3f} | {cpu / floor[1]:.2f}x "
            f"| {mean:.2f}x |"
        )
    print(f"\nconstruction from the MultiLabelIndex (not in the epochs): {construct:.3f} s")


def exposure_rows(index: MultiLabelIndex, args: argparse.Namespace) -> None:
    report = ClassAwareSampler(index, seed=0).class_exposure(0)
    n = len(index)
    ranked = np.argsort(report.images, kind="stable")
    rows = [*ranked[: args.rows].tolist(), *ranked[-args.rows :].tolist()]
    print(
        f"\n## Exposure in epoch 0, uniform over classes ({args.rows} rarest and {args.rows} "
        f"most frequent classes; shares of the {report.length:,} picks)\n"
    )
    print("| class | images | shuffle | target | chosen | shown | shown / target |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    shown, chosen = report.exposure_share, report.chosen_share
    for c in rows:
        print(
            f"| {report.categories[c]} | {int(report.images[c]):,} | "
            f"{report.images[c] / n:.4f} | {report.target[c]:.4f} | {chosen[c]:.4f} | "
            f"{shown[c]:.4f} | {shown[c] / report.target[c]:.2f}x |"
        )
    inflation = report.exposure_share / report.target
    print(
        f"\nshown / target over all {len(report.categories)} classes: min "
        f"{inflation.min():.2f}x, median {np.median(inflation):.2f}x, max {inflation.max():.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--ratio", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=5)
    args = parser.parse_args()
    print(describe(("torch", "numpy")))
    start = time.perf_counter()
    index = coco_like(args.images, args.classes, args.ratio)
    print(f"label sets written in {time.perf_counter() - start:.1f} s: {index!r}")
    epoch_rows(index, args)
    exposure_rows(index, args)
    print(f"\nload average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
