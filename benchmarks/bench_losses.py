"""Each long-tail loss's forward and backward against ``F.cross_entropy``'s, in one run.

Logits of shape (256, 1000) (``--rows``, ``--classes``), standard normal, random
class-index targets, long-tailed class counts (ratio 100); one call is the loss's forward
and the backward to the logits. LDAM gets cosine logits (uniform in [-1, 1], what its scale
of 30 assumes: Cao et al. use a normalised classifier, ``NormedLinear``), and its ratio is
to ``F.cross_entropy`` on those same logits. (LDAM's scale on raw logits puts values near
-100 into ``exp``, whose results are then subnormal floats, many times slower on x86 CPUs;
the same holds for ``F.cross_entropy(30 * logits)``.)

The losses are timed in many short interleaved rounds (each round times every one of them,
``--calls`` calls each, starting from a different one each round) and the best round of
``--rounds`` is kept, so a slow moment on a shared machine does not land on one loss only.
Reported: microseconds per call and the ratio to
``F.cross_entropy`` measured in the same run (the goal: within 1.5x), for float32 logits
and, with ``--half``, bfloat16 ones (the losses widen them to float32, ``F.cross_entropy``
computes in bfloat16: that ratio is not like for like, and the row
``F.cross_entropy(logits.float())`` is the baseline that widens too).

Run: ``python benchmarks/bench_losses.py`` (about 30 s on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe

from torch_balance.losses import (
    BalancedSoftmaxLoss,
    ClassBalancedLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
)

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def losses(counts: dict[int, int], weight: torch.Tensor) -> dict[str, tuple[Loss, str]]:
    """Each loss and the logits it is timed on (``"normal"`` or ``"cosine"``)."""
    return {
        "F.cross_entropy": (F.cross_entropy, "normal"),
        "F.cross_entropy(logits.float())": (lambda z, t: F.cross_entropy(z.float(), t), "normal"),
        "LogitAdjustedLoss": (LogitAdjustedLoss(counts, tau=1.0), "normal"),
        "BalancedSoftmaxLoss": (BalancedSoftmaxLoss(counts), "normal"),
        "ClassBalancedLoss softmax": (ClassBalancedLoss(counts), "normal"),
        "ClassBalancedLoss focal": (ClassBalancedLoss(counts, loss="focal", gamma=1.0), "normal"),
        "FocalLoss": (FocalLoss(gamma=2.0), "normal"),
        "F.cross_entropy (cosine logits)": (F.cross_entropy, "cosine"),
        "LDAMLoss (cosine logits)": (LDAMLoss(counts), "cosine"),
        "LDAMLoss + DRW weight (cosine logits)": (LDAMLoss(counts, weight=weight), "cosine"),
    }


def one_call(loss: Loss, logits: torch.Tensor, target: torch.Tensor) -> None:
    z = logits.detach().requires_grad_()
    loss(z, target).backward()


def time_round(loss: Loss, logits: torch.Tensor, target: torch.Tensor, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        one_call(loss, logits, target)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--half", action="store_true", help="also bfloat16 logits")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    counts = {
        c: max(1, round(5000 * 0.01 ** (c / (args.classes - 1)))) for c in range(args.classes)
    }
    print(f"# bench_losses: forward + backward of ({args.rows}, {args.classes}) logits")
    print(f"# {describe(('torch',))}")
    print(f"# load average before: {' '.join(f'{v:.1f}' for v in os.getloadavg())} (1, 5, 15 min)")
    print(
        f"# `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`".rstrip("` ") + "`"
    )
    dtypes = [torch.float32] + ([torch.bfloat16] if args.half else [])
    weight = torch.rand(args.classes, generator=gen) + 0.5  # as DeferredReweighting sets
    for dtype in dtypes:
        logits = {
            "normal": torch.randn(args.rows, args.classes, generator=gen).to(dtype),
            "cosine": (torch.rand(args.rows, args.classes, generator=gen) * 2 - 1).to(dtype),
        }
        target = torch.randint(args.classes, (args.rows,), generator=gen)
        table = losses(counts, weight)
        for loss, kind in table.values():  # warm up
            for _ in range(5):
                one_call(loss, logits[kind], target)
        best = {name: float("inf") for name in table}
        names = list(table)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order
                loss, kind = table[name]
                seconds = time_round(loss, logits[kind], target, args.calls)
                best[name] = min(best[name], seconds)
        base = {
            "normal": best["F.cross_entropy"],
            "cosine": best["F.cross_entropy (cosine logits)"],
        }
        print(f"\n{dtype} logits; best of {args.rounds} rounds of {args.calls} calls\n")
        print("| loss | us per call | vs F.cross_entropy |")
        print("|---|---:|---:|")
        for name, seconds in best.items():
            ratio = seconds / base[table[name][1]]
            print(f"| {name} | {1e6 * seconds:.0f} | {ratio:.2f}x |")
    print(f"\n# load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
