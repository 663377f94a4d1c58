"""One epoch of a MixtureSampler over three sources against the shuffle floor, and what the
epoch holds against its targets.

Sources (``--n`` samples in all, default 1e7): three label vectors over 100 long-tailed
classes each (``n_i ∝ 100 ** (-i / 99)``), of 60%, 30% and 10% of ``--n``; shares by
temperature ``T = 2`` (``p_s ∝ n_s ** (1 / 2)``); source 0 balanced with ``"sqrt"``,
source 1 with ``"class"``, source 2 taken as it is (its labels are not read); the epoch holds
``--n`` samples.

Timed in the same run, interleaved, best of ``--repeats``:

- the shuffle floor, ``torch.randperm(N).tolist()`` iterated;
- a first epoch: the sampler built from the three label vectors (the labels grouped by
  class) and every index iterated;
- a later epoch of the same sampler (the grouping done), every index iterated;
- for reference, ``BalancedSampler(labels, "class")`` over the three label vectors joined
  (one source, the same N), built and iterated.

Then, from ``mixture_report``: each source's realised share against ``p_s``, and each
balanced source's class mix against its plan (the largest difference in class share, and the
realised and planned counts of its largest and smallest classes).

Run: ``python benchmarks/bench_mixtures.py`` (about a minute on 2 cores at 1e7).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, describe, drain, long_tailed_labels

from torch_balance import BalancedSampler, MixtureSampler

STRATEGIES = ["sqrt", "class", None]
PARTS = (0.6, 0.3, 0.1)
TEMPERATURE = 2.0


def floor(length: int) -> int:
    return drain(torch.randperm(length).tolist())


def make_sources(n: int) -> list[np.ndarray]:
    sizes = [int(n * p) for p in PARTS]
    sizes[0] += n - sum(sizes)
    return [long_tailed_labels(size, seed=s) for s, size in enumerate(sizes)]


def build(sources: list[np.ndarray]) -> MixtureSampler:
    return MixtureSampler(sources, temperature=TEMPERATURE, strategy=STRATEGIES, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=float, default=1e7)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = int(args.n)
    print(describe())
    sources = make_sources(n)
    print(f"N = {n:,}; sources of {[len(s) for s in sources]} samples; T = {TEMPERATURE}")

    floors: list[float] = []
    firsts: list[float] = []
    laters: list[float] = []
    singles: list[float] = []
    joined = np.concatenate(sources)
    later = build(sources)
    drain(later)  # the grouping and the first epoch, once
    for _ in range(args.repeats):
        firsts.append(best_time(lambda: drain(build(sources)), 1)[0])
        floors.append(best_time(lambda: floor(n), 1)[0])
        laters.append(best_time(lambda: drain(later), 1)[0])
        floors.append(best_time(lambda: floor(n), 1)[0])
        singles.append(best_time(lambda: drain(BalancedSampler(joined, "class")), 1)[0])
        floors.append(best_time(lambda: floor(n), 1)[0])
    best_floor = min(floors)
    print()
    print(f"## One epoch of {n:,} indices, best of {args.repeats} (interleaved)")
    print()
    print("| run | seconds | x shuffle floor |")
    print("|---|---:|---:|")
    print(f"| shuffle floor: torch.randperm(N).tolist() | {best_floor:.3f} | 1.00x |")
    for name, times in (
        ("MixtureSampler, first epoch (built + iterated)", firsts),
        ("MixtureSampler, a later epoch", laters),
        ('BalancedSampler(joined labels, "class"), built + iterated', singles),
    ):
        print(f"| {name} | {min(times):.3f} | {min(times) / best_floor:.2f}x |")

    report = later.mixture_report()
    print()
    print(f"## What epoch {later.epoch} holds (global, {report['length']:,} indices)")
    print()
    print("| source | size | strategy | target share | realised share | target | drawn |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for s, row in enumerate(report["sources"]):
        print(
            f"| {s} | {row['size']:,} | {STRATEGIES[s]} | {row['target_share']:.4f} "
            f"| {row['share']:.4f} | {row['target']:,} | {row['drawn']:,} |"
        )
    print(f"\ntotal variation between realised and target shares: {report['total_variation']:.2e}")
    print()
    print(
        "| source | classes | max abs. difference in class share | largest class: target, drawn"
        " | smallest class: target, drawn |"
    )
    print("|---:|---:|---:|---|---|")
    for s, row in enumerate(report["sources"]):
        classes = row["classes"]
        if classes is None:
            print(f"| {s} | (as it is) | | | |")
            continue
        wanted = np.array([t for t, _ in classes.values()], dtype=np.float64)
        got = np.array([d for _, d in classes.values()], dtype=np.float64)
        gap = float(np.abs(wanted / wanted.sum() - got / got.sum()).max())
        keys = list(classes)
        sizes = np.bincount(sources[s], minlength=len(keys))
        big, small = keys[int(sizes.argmax())], keys[int(sizes.argmin())]
        print(
            f"| {s} | {len(keys)} | {gap:.2e} | {classes[big][0]:,}, {classes[big][1]:,} "
            f"| {classes[small][0]:,}, {classes[small][1]:,} |"
        )


if __name__ == "__main__":
    main()
