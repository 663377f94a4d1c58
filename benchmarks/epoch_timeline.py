"""When each stage of one sampler epoch runs, and on which thread (a diagnostic, not a race).

``bench_samplers.py`` times the stages one at a time with no overlap; this script shows how
they overlap in a real epoch: it wraps the epoch's kernels (the permutation, the walks, the
draw) so that each call records its start and end, builds a ``BalancedSampler`` over N
long-tailed labels (as ``bench_samplers.py`` does), takes the first index, iterates the rest,
and then times the shuffle floor ``torch.randperm(N).tolist()`` iterated. Times are ms from
the start of the construct. The first epoch of a process is the coldest; the others show the
spread.

Run: ``python benchmarks/epoch_timeline.py --n 1e7 --strategy class --epochs 3``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe, drain, long_tailed_labels

import torch_balance.draws.fast as fast
import torch_balance.labels.index as index
from torch_balance import BalancedSampler

STAGES = (
    (index, "group_by_class"),
    (fast, "shuffle_order"),
    (fast, "walk_orders"),
    (fast, "draw_epoch"),
)
"""The kernels of a first epoch without sample weights: the grouping by class, the
permutation, the walks, the draw. That epoch calls each through its module's global name
(``LabelIndex.order`` in ``labels.index``, ``shuffled_epoch`` in ``draws.fast``), so wrapping
the name reaches those calls."""

Record = tuple[str, str, float, float]


def record_calls(log: list[Record], origin: list[float]) -> None:
    """Wrap each of ``STAGES`` to append (thread, stage, start, end) in ms from ``origin[0]``
    to ``log``."""
    for module, name in STAGES:
        fn: Callable[..., Any] = getattr(module, name)

        @functools.wraps(fn)
        def timed(*args: Any, _fn: Callable[..., Any] = fn, _name: str = name, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return _fn(*args, **kw)
            finally:
                end = time.perf_counter()
                thread = (
                    "main" if threading.current_thread() is threading.main_thread() else "helper"
                )
                log.append((thread, _name, 1e3 * (start - origin[0]), 1e3 * (end - origin[0])))

        setattr(module, name, timed)


def one_epoch(
    labels: Any, strategy: str, log: list[Record], origin: list[float]
) -> dict[str, float]:
    log.clear()
    gc.collect()
    origin[0] = time.perf_counter()
    sampler = BalancedSampler(labels, strategy)
    built = time.perf_counter()
    indices = iter(sampler)
    next(indices)
    first = time.perf_counter()
    drain(indices)
    end = time.perf_counter()
    return {
        "construct": 1e3 * (built - origin[0]),
        "first index": 1e3 * (first - origin[0]),
        "end": 1e3 * (end - origin[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, default=1e7)
    parser.add_argument("--strategy", default="class")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    n = int(args.n)
    labels = long_tailed_labels(n)
    log: list[Record] = []
    origin = [0.0]
    record_calls(log, origin)
    print(f"Machine: {describe()}")
    print(
        f"BalancedSampler({args.strategy!r}), N = {n:.0e}; times in ms from the construct's start"
    )
    for epoch in range(args.epochs):
        marks = one_epoch(labels, args.strategy, log, origin)
        start = time.perf_counter()
        drain(torch.randperm(n).tolist())
        floor = 1e3 * (time.perf_counter() - start)
        print(
            f"\nepoch {epoch}: construct done {marks['construct']:.1f}, first index "
            f"{marks['first index']:.1f}, last index {marks['end']:.1f}; floor {floor:.1f} "
            f"({marks['end'] / floor:.2f}x)"
        )
        for thread, stage, begin, finish in sorted(log, key=lambda row: row[2]):
            print(
                f"  {thread:<6} {stage:<15} {begin:7.1f} -> {finish:7.1f}  ({finish - begin:.1f})"
            )


if __name__ == "__main__":
    main()
