"""The ``torch-balance`` command: ``inspect`` a dataset's imbalance, ``bench`` the methods.

Run ``torch-balance bench --help`` for the options; ``python -m torch_balance`` is the same.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main", "natural_int", "positive_int", "ratio_value"]

_DATA_HELP = (
    "digits (scikit-learn's bundled 8x8 digits, default), fashion-mnist[:DIR] (the four idx "
    "files; default DIR /usr/share/datasets/fashion-mnist from Debian's dataset-fashion-mnist), "
    "cifar10[:DIR] (torchvision's cifar-10-batches-py) or imagefolder:PATH (one folder per "
    "class; train/ val/ test/ sub-folders used when present). Nothing is downloaded."
)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (argparse exits with status 2 and the message).

    Example:
        >>> positive_int("3")
        3
        >>> positive_int("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected an integer >= 1, got 0
    """
    return _int_at_least(text, 1)


def natural_int(text: str) -> int:
    """An argparse type: an integer >= 0 (a seed)."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
    if value < low or value >= 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
    return value


def ratio_value(text: str) -> float:
    """An argparse type: a finite imbalance ratio >= 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (1.0 <= value < math.inf):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``torch-balance``.

    Example:
        >>> build_parser().parse_args(["bench", "--seeds", "1"]).seeds
        1
    """
    from torch_balance.bench.methods import METHODS
    from torch_balance.bench.settings import DEFAULTS

    def per_source(key: str) -> str:
        names = {"digits": "digits", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
        shown = [f"{DEFAULTS[k][key]:g} on {names.get(k, 'an image folder')}" for k in DEFAULTS]
        return ", ".join(shown)

    methods = "\n".join(f"  {name:<16} {m.summary}" for name, m in METHODS.items())
    parser = argparse.ArgumentParser(
        prog="torch-balance",
        description="Class-imbalance tools for PyTorch: inspect a dataset, benchmark methods.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{inspect,bench}")

    def data_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("data", nargs="?", default="digits", metavar="DATA", help=_DATA_HELP)
        p.add_argument(
            "--profile",
            choices=("longtail", "step"),
            default="longtail",
            help="long-tailed n_i = n_max * R^(-i/(C-1)), or step: half the classes at "
            "n_max/R (default longtail); applies with a ratio: an image folder keeps its own "
            "counts unless --ratio is given",
        )
        p.add_argument(
            "--ratio",
            type=ratio_value,
            default=None,
            help="largest / smallest training class (default 10 on digits, 100 on "
            "Fashion-MNIST and CIFAR-10; an image folder keeps its own counts)",
        )
        p.add_argument(
            "--steps",
            type=positive_int,
            default=None,
            help=f"optimizer steps per method (default {per_source('steps')})",
        )
        p.add_argument(
            "--batch-size",
            type=positive_int,
            default=None,
            help=f"images per step (default {per_source('batch_size')})",
        )
        p.add_argument(
            "--image-size",
            type=positive_int,
            default=32,
            help="image-folder images are resized to this (default 32)",
        )

    inspect = commands.add_parser(
        "inspect",
        help="class histogram, imbalance ratio, one epoch of each method",
        description="Show the training split's class histogram, its imbalance ratio and what "
        "one epoch of each method's sampling would hold. Decodes no image. DATA may also be "
        "WebDataset tar shards (a pattern such as shards/train-{000..003}.tar): their class "
        "histogram is read from the label members alone.",
    )
    data_options(inspect)
    inspect.add_argument(
        "--seed", type=natural_int, default=0, help="which seed's split (default 0)"
    )
    inspect.add_argument(
        "--label-key",
        default="cls",
        help="for WebDataset shards (DATA such as shards/train-{000..003}.tar): the extension "
        "of the label member (default cls); only those members are read",
    )

    bench = commands.add_parser(
        "bench",
        help="train a small CNN under each method and compare per-class recall",
        description="Train the same small CNN under each method with the same number of "
        "optimizer steps, evaluate on a balanced test set (an image folder's test/ as given), "
        "print a markdown table (mean ± std "
        "over seeds) and write it, a JSON of every number and a PNG plot of per-class recall "
        "against training-class size to --out.",
        epilog="methods:\n" + methods,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data_options(bench)
    bench.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated names (default: all {len(METHODS)}, listed below)",
    )
    # The option's name before the benchmark's recipes became "methods": still accepted.
    bench.add_argument("--strategies", dest="methods", help=argparse.SUPPRESS)
    bench.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..N-1 (default 3)")
    bench.add_argument(
        "--head-steps",
        type=positive_int,
        default=None,
        help="head-only steps of crt and smote-embedding (default steps/4, at least 50)",
    )
    bench.add_argument("--device", default=None, help="cpu or cuda (default cuda when available)")
    bench.add_argument(
        "--out", default=None, help="output directory (default bench-out/<DATA name>)"
    )
    bench.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="training runs (method x seed) at a time, each in its own process (default: the "
        "usable cores; 1 on CUDA); the results are the same for every value",
    )
    bench.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads of each run (default 1); unlike --jobs, a different count "
        "can change the last digits of the results",
    )
    bench.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (they show only when the output is a terminal anyway)",
    )
    return parser


def is_shard_pattern(data: str) -> bool:
    """Whether ``inspect``'s DATA names WebDataset tar shards rather than a benchmark dataset.

    Example:
        >>> is_shard_pattern("shards/train-{000..003}.tar"), is_shard_pattern("digits")
        (True, False)
    """
    return data.endswith((".tar", ".tar.gz", ".tgz")) or ".tar::" in data


def shard_report(pattern: str, label_key: str = "cls") -> str:
    """What ``torch-balance inspect PATTERN`` prints for tar shards: the class histogram (read
    from the label members alone) and one epoch of each strategy."""
    import numpy as np

    from torch_balance.bench.report import histogram
    from torch_balance.strategies import target_counts
    from torch_balance.streams import Manifest

    manifest = Manifest.scan_tar(pattern, label_key=label_key)
    counts = manifest.counts()
    classes = [str(c) for c in counts]
    values = np.array(list(counts.values()), dtype=np.int64)
    lines = [
        f"{pattern}: {len(manifest)} samples in {manifest.num_shards} shards, {len(counts)} "
        f"classes, imbalance ratio {values.max() / values.min():.1f} (largest / smallest)",
        "",
        histogram(values, classes),
        "",
        "one epoch under each strategy (samples per class):",
        "",
    ]
    names = ("over", "under", "sqrt", "class")
    columns = [target_counts(manifest.index, name) for name in names]
    lines.append("| class | samples | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * (len(names) + 1))
    for key, n in counts.items():
        lines.append(f"| {key} | {n} | " + " | ".join(str(c[key]) for c in columns) + " |")
    return "\n".join(lines)


def _inspect(args: argparse.Namespace) -> int:
    if is_shard_pattern(args.data):
        try:
            report = shard_report(args.data, args.label_key)
        except (ValueError, TypeError) as error:  # named as the command line names them
            text = str(error)
            if text.startswith("label_key:"):
                raise type(error)("--label-key" + text[len("label_key") :]) from error
            raise type(error)(f"DATA {args.data!r}: {text}") from error
        print(report)
        return 0
    from torch_balance.bench.report import inspect_report
    from torch_balance.bench.runner import defaults_for
    from torch_balance.bench.sources import load_source
    from torch_balance.bench.split import make_split

    source = load_source(args.data, image_size=args.image_size, progress=False)
    defaults = defaults_for(source)
    ratio = args.ratio if args.ratio is not None else defaults["ratio"]
    split = make_split(source, profile=args.profile, ratio=ratio, seed=args.seed)
    print(
        inspect_report(
            source,
            split,
            batch_size=args.batch_size or defaults["batch_size"],
            steps=args.steps or defaults["steps"],
        )
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    from torch_balance.bench.methods import check_methods
    from torch_balance.bench.runner import BenchConfig, run_bench

    names = [name.strip() for name in str(args.methods).split(",")]
    twice = sorted({name for name in names if name and names.count(name) > 1})
    if twice:
        raise ValueError(
            f"--methods: expected each method once, got {', '.join(twice)} more than once. "
            "Use --seeds for repeated runs of one method"
        )
    config = BenchConfig(
        data=args.data,
        profile=args.profile,
        ratio=args.ratio,
        methods=check_methods(args.methods),
        seeds=args.seeds,
        steps=args.steps,
        batch_size=args.batch_size,
        head_steps=args.head_steps,
        device=args.device,
        out=args.out,
        image_size=args.image_size,
        threads=args.threads,
        progress=not args.no_progress,
        jobs=args.jobs,
    )
    run_bench(config)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``torch-balance``; returns the exit status.

    Example:
        >>> main(["bench", "--methods", "erm,nope"])
        2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exited:  # argparse printed why (a bad flag: status 2; --help: 0)
        return exited.code if isinstance(exited.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _inspect(args) if args.command == "inspect" else _bench(args)
    except (ValueError, TypeError) as error:
        print(f"torch-balance: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("torch-balance: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
