"""Minority-class recall of every strategy: digits (ratio 10) and Fashion-MNIST (ratio 100).

Runs ``torch-balance bench`` twice with its defaults (every method, 3 seeds, the same step
budget for every strategy) and writes each run's table, JSON and plot under
``benchmarks/results/<data>/``. README and docs/guide/choosing.md quote the tables it printed.

Usage:
    python benchmarks/bench_recall.py                 # both (14 methods: 3.5 min on 2 idle cores;
                                                      # the 22 of now train about 1.6x as long)
    python benchmarks/bench_recall.py --only digits   # about 30 s (14 methods), 50 s (22)

The runs train ``--jobs`` at a time (default: the CLI's, one per usable core); the numbers
are the same for every ``--jobs``.

Fashion-MNIST is read from /usr/share/datasets/fashion-mnist (Debian/Ubuntu:
``apt-get install dataset-fashion-mnist``) or ``--fashion-dir DIR``; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from torch_balance.cli import main

HERE = Path(__file__).resolve().parent


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


def run(argv: list[str]) -> int:
    print("\n$ torch-balance " + " ".join(argv), flush=True)
    print(f"load average before: {_load()}", flush=True)
    start = time.perf_counter()
    status = main(argv)
    print(f"wall time {time.perf_counter() - start:.0f} s; load average after: {_load()}")
    return status


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("digits", "fashion-mnist"), default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fashion-dir", default=None, help="directory of the four idx files")
    parser.add_argument("--fashion-steps", type=int, default=None, help="default: the CLI's")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--jobs", type=int, default=None, help="default: the CLI's")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )
    common = ["--seeds", str(args.seeds)] + (["--no-progress"] if args.no_progress else [])
    common += ["--jobs", str(args.jobs)] if args.jobs is not None else []
    status = 0
    if args.only in (None, "digits"):
        out = os.path.join(args.out, "digits")
        status |= run(["bench", "digits", *common, "--out", out])
    if args.only in (None, "fashion-mnist"):
        data = "fashion-mnist" + (f":{args.fashion_dir}" if args.fashion_dir else "")
        steps = ["--steps", str(args.fashion_steps)] if args.fashion_steps else []
        out = os.path.join(args.out, "fashion-mnist")
        status |= run(["bench", data, "--ratio", "100", *steps, *common, "--out", out])
    return status


if __name__ == "__main__":
    sys.exit(cli())
