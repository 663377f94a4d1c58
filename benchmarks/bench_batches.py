"""Batch samplers and repeat-factor sampling: one epoch (construct + iterate) vs the shuffle floor.

Rows, each in a fresh subprocess, best of ``--repeats`` epochs (default 3), with the peak RSS
growth of the first epoch over the input labels (sampled every 2 ms with psutil):

- ``RepeatFactorSampler(sets, 0.001)`` over ``--images`` images (default 1M) with 1,000
  long-tailed categories (category c drawn with probability proportional to (c + 1)**-1.5),
  1 to 10 draws per image (repeats merged). Built once from the object array of tuples that
  ``get_labelsets`` returns (converted to compressed rows inside), and once from the
  compressed rows directly (``MultiLabelIndex.from_csr``).
- ``ClassBalancedBatchSampler(labels, 8, 4, num_batches=N // 32)`` at ``--labels`` labels
  (default 1e7) over 100 long-tailed classes (share proportional to 100**(-i/99)), so the
  epoch holds N indices; and ``StratifiedBatchSampler(labels, 32, "class")`` (N indices).
- The shuffle floor ``torch.randperm(L).tolist()`` iterated, at each row's epoch length L, and
  for batch samplers also the batched floor ``torch.randperm(L).view(-1, 32).tolist()``
  iterated (what ``BatchSampler`` over a shuffled list costs at best).

Run: ``python benchmarks/bench_batches.py`` (about 3 minutes on 2 cores);
``--images 1e5 --labels 1e6`` for a quick look.
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
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakRSS, describe, drain, long_tailed_labels

from torch_balance.batch_samplers import ClassBalancedBatchSampler, StratifiedBatchSampler
from torch_balance.labels import MultiLabelIndex
from torch_balance.samplers import RepeatFactorSampler

CATEGORIES = 1000
BATCH = 32


def label_sets_csr(images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Flat category draws and row offsets: 1 to 10 long-tailed draws per image."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 11, images)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    weights = (np.arange(CATEGORIES) + 1.0) ** -1.5
    values = rng.choice(CATEGORIES, size=int(offsets[-1]), p=weights / weights.sum())
    return values.astype(np.int64), offsets


def _floor(length: int) -> int:
    return drain(torch.randperm(length).tolist())


def _floor_batched(length: int) -> int:
    usable = length - length % BATCH
    return drain(torch.randperm(length)[:usable].view(-1, BATCH).tolist())


def _rfs_objects(sets: Any, size: int, length: int) -> int:
    return drain(RepeatFactorSampler(sets, 0.001))


def _rfs_csr(csr: Any, size: int, length: int) -> int:
    return drain(RepeatFactorSampler(MultiLabelIndex.from_csr(*csr), 0.001))


def _class_balanced(labels: Any, size: int, length: int) -> int:
    sampler = ClassBalancedBatchSampler(labels, 8, BATCH // 8, num_batches=size // BATCH)
    return BATCH * drain(sampler)


def _stratified(labels: Any, size: int, length: int) -> int:
    return BATCH * drain(StratifiedBatchSampler(labels, BATCH, "class"))


RUNS: dict[str, Callable[[Any, int, int], int]] = {
    "rfs-objects": _rfs_objects,
    "rfs-csr": _rfs_csr,
    "class-balanced": _class_balanced,
    "stratified": _stratified,
    "floor": lambda _, size, length: _floor(length),
    "floor-batched": lambda _, size, length: _floor_batched(length),
}


def child(case: str, size: int, length: int, repeats: int) -> None:
    """Runs in a subprocess: prepare the input, then time one epoch and watch the RSS."""
    prepared: Any = None
    if case.startswith("rfs"):
        values, offsets = label_sets_csr(size)
        if case == "rfs-objects":
            prepared = MultiLabelIndex.from_csr(values, offsets).labelsets()
            del values, offsets
        else:
            prepared = (values, offsets)
    elif case in ("class-balanced", "stratified"):
        prepared = long_tailed_labels(size)
    if case not in RUNS:
        raise SystemExit(f"unknown case {case}")
    run = RUNS[case]
    with PeakRSS() as memory:
        start = time.perf_counter()
        produced = run(prepared, size, length)
        seconds = time.perf_counter() - start
    for _ in range(repeats - 1):  # best of `repeats`; the memory is that of the first run
        gc.collect()
        start = time.perf_counter()
        run(prepared, size, length)
        seconds = min(seconds, time.perf_counter() - start)
    print(json.dumps({"seconds": seconds, "length": produced, "growth": memory.growth}))


def measure(case: str, size: int, length: int = 0, repeats: int = 3) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", case, str(size), str(length)]
    command += ["--repeats", str(repeats)]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{case} failed:\n{out.stderr}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=float, default=1e6)
    parser.add_argument("--labels", type=float, default=1e7)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many epochs")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "SIZE", "LENGTH"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]), args.repeats)
        return
    repeats = args.repeats
    images, labels = int(args.images), int(args.labels)
    print(f"Machine: {describe()}\n")
    rows: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []

    for case, what in (
        ("rfs-objects", "RepeatFactorSampler(sets, 0.001), sets = object array of tuples"),
        ("rfs-csr", "RepeatFactorSampler(MultiLabelIndex.from_csr(values, offsets), 0.001)"),
    ):
        result = measure(case, images, repeats=repeats)
        floor = measure("floor", 0, result["length"], repeats)
        rows.append((f"{what}", f"{images:.0e} images", result, floor))
        print(f"done: {case}", file=sys.stderr)
    for case, what in (
        ("class-balanced", "ClassBalancedBatchSampler(labels, 8, 4, num_batches=N // 32)"),
        ("stratified", 'StratifiedBatchSampler(labels, 32, "class")'),
    ):
        result = measure(case, labels, repeats=repeats)
        floor = measure("floor", 0, result["length"], repeats)
        batched = measure("floor-batched", 0, result["length"], repeats)
        rows.append((what, f"{labels:.0e} labels", result, floor))
        rows.append(("  (same, vs the batched floor)", "", result, batched))
        print(f"done: {case}", file=sys.stderr)

    print(f"One epoch (construct + iterate), best of {repeats}, one fresh process per row;")
    print("floor = randperm(L).tolist() iterated at the same epoch length L, in this run.\n")
    print("| method | N | epoch length L | seconds | floor seconds | vs floor | peak RSS growth |")
    print("|---|---|---|---|---|---|---|")
    for what, n, result, floor in rows:
        ratio = result["seconds"] / floor["seconds"]
        growth = result["growth"] / 2**20
        per = result["growth"] / max(result["length"], 1)
        print(
            f"| {what} | {n} | {result['length']:,} | {result['seconds']:.2f} | "
            f"{floor['seconds']:.2f} | {ratio:.2f}x | {growth:.0f} MiB ({per:.1f} B/index) |"
        )


if __name__ == "__main__":
    main()
