"""Reports: the results table, JSON and plot of ``bench``, and the ``inspect`` text.

The files keep the names they had before the benchmark's recipes were called "methods": the
table's first column is ``strategy`` and ``results.json`` holds each run's results under
``"strategies"`` (:data:`RESULTS_KEY`), so earlier results and the scripts that read them stay
valid.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from torch_balance.bench.metrics import METRIC_NAMES
from torch_balance.bench.sources import Source
from torch_balance.bench.split import Split
from torch_balance.bench.train import Budget
from torch_balance.strategies import Deferred, Progressive, target_counts
from torch_balance.weights import class_weights

__all__ = [
    "CLASS_TABLE_LIMIT",
    "RESULTS_KEY",
    "finite",
    "format_class_table",
    "format_table",
    "histogram",
    "imbalance_lines",
    "inspect_report",
    "recall_by_size_rank",
    "summarize",
    "write_plot",
    "write_results",
]

RESULTS_KEY = "strategies"  # results.json's key for the per-method results (a stable format)
CLASS_TABLE_LIMIT = 20  # results.md shows per-class recall up to this many classes (JSON: all)

HEADERS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced acc.",
    "minority_recall": "minority recall",
    "head_recall": "head",
    "middle_recall": "middle",
    "tail_recall": "tail",
    "macro_f1": "macro-F1",
    "g_mean": "G-mean",
}


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (ddof=1; 0 for one seed) of every metric.

    Example:
        >>> summarize([{"accuracy": 0.5}, {"accuracy": 0.7}])["accuracy"]["mean"]
        0.6
    """
    out: dict[str, dict[str, float]] = {}
    for metric in METRIC_NAMES:
        values = np.array([run[metric] for run in per_seed if metric in run], dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            out[metric] = {"mean": float("nan"), "std": float("nan")}
            continue
        std = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[metric] = {"mean": round(float(values.mean()), 6), "std": round(std, 6)}
    return out


def _cell(stats: dict[str, float]) -> str:
    mean, std = stats["mean"], stats["std"]
    if not math.isfinite(mean):
        return "n/a"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def format_table(
    summary: dict[str, dict[str, dict[str, float]]],
    methods: list[str],
    labels: dict[str, str] | None = None,
) -> str:
    """A markdown table: one row per method, metrics in percent as mean ± std over seeds.

    ``labels`` may rename a row (a method that ran in fewer seeds than the others says so).

    Example:
        >>> stats = {m: {"mean": 0.5, "std": 0.01} for m in METRIC_NAMES}
        >>> print(format_table({"erm": stats}, ["erm"]).splitlines()[2])
        | erm | 50.0 ± 1.0 | 50.0 ± 1.0 | 50.0 ± 1.0 | 50.0 ± 1.0 | 50.0 ± 1.0 | 50.0 ± 1.0 | ...
    """
    header = "| strategy | " + " | ".join(HEADERS[m] for m in METRIC_NAMES) + " |"
    rule = "|---|" + "---:|" * len(METRIC_NAMES)
    rows = [header, rule]
    for name in methods:
        cells = [_cell(summary[name][m]) for m in METRIC_NAMES]
        label = (labels or {}).get(name, name)
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def format_class_table(
    sizes: np.ndarray, by_rank: dict[str, np.ndarray], methods: list[str]
) -> str:
    """A markdown table of per-class test recall (%), one column per class by training-size
    rank (largest first; the header gives the mean training count), head / middle / tail
    marked as :func:`~torch_balance.bench.metrics.thirds` splits them.

    Example:
        >>> recall = {"erm": np.array([1.0, 0.25])}
        >>> print(format_class_table(np.array([90.0, 9.0]), recall, ["erm"]))
        | strategy | H 90 | T 9 |
        |---|---:|---:|
        | erm | 100.0 | 25.0 |
    """
    from torch_balance.bench.metrics import thirds

    head, _, tail = thirds(sizes)  # sizes are ranked already: the thirds are positions
    tags = ["H" if r in head else "T" if r in tail else "M" for r in range(len(sizes))]
    header = "| strategy | " + " | ".join(f"{t} {n:.0f}" for t, n in zip(tags, sizes, strict=True))
    rows = [header + " |", "|---|" + "---:|" * len(sizes)]
    for name in methods:
        cells = ["n/a" if not math.isfinite(v) else f"{100 * v:.1f}" for v in by_rank[name]]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def write_plot(
    path: Path,
    sizes: np.ndarray,
    recalls: dict[str, np.ndarray],
    *,
    title: str,
) -> None:
    """Per-class test recall (mean over seeds) against training-class size, one line each.

    Args:
        path: The PNG to write.
        sizes: Training images of the class at each size rank (mean over seeds).
        recalls: Method -> recall of the class at each rank (mean over seeds).
        title: The plot title.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 5.0), dpi=110)
    order = np.argsort(sizes)
    styles = ["-", "--", "-.", ":"]
    for i, (name, values) in enumerate(recalls.items()):
        ax.plot(
            sizes[order],
            100 * values[order],
            styles[(i // 10) % len(styles)],
            marker="o",
            markersize=3,
            linewidth=1.3,
            label=name,
        )
    if sizes.min() > 0 and sizes.max() / max(sizes.min(), 1e-9) > 3:
        ax.set_xscale("log")
    ax.set_xlabel("training images of the class")
    ax.set_ylabel("test recall of the class (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def histogram(counts: np.ndarray, classes: list[str], width: int = 40) -> str:
    """Text bars of ``counts``, largest class first.

    Example:
        >>> print(histogram(np.array([4, 2]), ["a", "b"], width=4))
        a  4  ████
        b  2  ██
    """
    counts = np.asarray(counts, dtype=np.int64)
    top = max(int(counts.max()), 1)
    name_width = max(len(c) for c in classes)
    digits = len(str(top))
    lines = []
    for c in np.argsort(-counts, kind="stable"):
        n = int(counts[c])
        bar = "█" * max(1 if n else 0, round(width * n / top))
        lines.append(f"{classes[c]:<{name_width}}  {n:>{digits}}  {bar}")
    return "\n".join(lines)


def inspect_report(source: Source, split: Split, *, batch_size: int, steps: int) -> str:
    """What ``torch-balance inspect`` prints: histogram, ratio and one epoch per method.

    The ``progressive`` and ``deferred`` columns use the epochs :class:`Budget` derives from
    ``steps`` and ``batch_size``, the same ones the benchmark trains with.

    Example:
        >>> from torch_balance.bench.sources import load_source
        >>> from torch_balance.bench.split import make_split
        >>> source = load_source("digits")
        >>> text = inspect_report(source, make_split(source, ratio=10), batch_size=64, steps=400)
        >>> print(text.splitlines()[1])
        training split (longtail, ratio 10, seed 0; classes assigned to ranks at random per seed):
        >>> "| progr. first | progr. last | deferred e>=" in text
        True
    """
    counts = split.train_counts
    labels = np.repeat(np.arange(source.num_classes), counts)
    lines = [source.description]
    if split.ratio is None and source.natural:
        lines.append(f"training split (natural counts, seed {split.seed}):")
    else:
        lines.append(
            f"training split ({split.profile}, ratio {split.ratio:g}, seed {split.seed};"
            " classes assigned to ranks at random per seed):"
        )
    lines += ["", histogram(counts, source.classes), ""]
    lines.append(
        f"{int(counts.sum())} training images, {source.num_classes} classes; validation "
        f"{int(split.val_counts.sum())}, test {int(split.test_counts.sum())}"
        + (" (balanced)" if len(set(split.test_counts.tolist())) == 1 else "")
    )
    lines += ["", *imbalance_lines(source, split)]
    budget = Budget(steps=steps, batch_size=batch_size)  # the schedule the methods train on
    epochs = budget.epochs_spanned(len(labels))
    start = budget.decay_epoch(len(labels))
    columns: dict[str, dict[Any, int]] = {
        "erm": target_counts(labels, "instance"),
        "over": target_counts(labels, "over"),
        "under": target_counts(labels, "under"),
        "sqrt": target_counts(labels, "sqrt"),
        "class": target_counts(labels, "class"),
        "progr. first": target_counts(labels, Progressive(epochs), epoch=0),
        "progr. last": target_counts(labels, Progressive(epochs), epoch=epochs - 1),
        f"deferred e>={start}": target_counts(labels, Deferred(start), epoch=start),
    }
    weights = class_weights(labels, "effective", num_classes=source.num_classes)
    lines += [
        "",
        f"one epoch under each sampling strategy (images per class; {steps} steps of "
        f"{batch_size} span about {epochs} epochs of the training set):",
        "",
    ]
    names = ["class", *columns, "reweight w"]
    lines.append("| " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * (len(names) - 1))
    for c in range(source.num_classes):
        cells = [str(columns[k].get(c, 0)) for k in columns] + [f"{float(weights[c]):.2f}"]
        lines.append(f"| {source.classes[c]} | " + " | ".join(cells) + " |")
    totals = [str(sum(columns[k].values())) for k in columns] + [""]
    lines.append("| total | " + " | ".join(totals) + " |")
    lines += [
        "",
        "under-static: one 'under' epoch drawn once and kept; pixel-smote and smote-embedding:"
        " 'over' counts of synthetic neighbours; crt: 'class' for the head; logit-adjust:"
        " erm's model, prior-corrected logits. reweight w: effective-number loss weights."
        " The loss methods sample as erm (ldam-drs as deferred); drw and ldam-drw weigh the"
        " loss by reweight w from the deferred epoch on.",
    ]
    lines += split.notes
    return "\n".join(lines)


def _ratio(counts: np.ndarray, classes: list[str]) -> str:
    """``largest / smallest`` of ``counts``, with the classes and sizes it comes from."""
    big, small = int(np.argmax(counts)), int(np.argmin(counts))
    n_big, n_small = int(counts[big]), int(counts[small])
    ratio = f"{n_big / n_small:.1f}" if n_small else "inf"
    if n_big == n_small:
        return f"{ratio:>6}  ({n_big} in every class)"
    return f"{ratio:>6}  ({n_big} {classes[big]!r} / {n_small} {classes[small]!r})"


def imbalance_lines(source: Source, split: Split) -> list[str]:
    """The imbalance ratio (largest / smallest class) of the whole data and of each split,
    each labelled: the training split's differs from the folder's, since the test images
    and the validation share are taken out first (or a ``--ratio`` reshapes it).

    Example:
        >>> from torch_balance.bench.sources import load_source
        >>> from torch_balance.bench.split import make_split
        >>> source = load_source("digits")
        >>> lines = imbalance_lines(source, make_split(source, ratio=10))
        >>> [line.split()[0] for line in lines[1:]]
        ['whole', 'training', 'validation', 'test']
    """
    whole = np.asarray(source.train_labels, dtype=np.int64)
    for given in (source.val_labels, source.test_labels):
        if given is not None:
            whole = np.concatenate([whole, np.asarray(given, dtype=np.int64)])
    parts = {
        "whole data": np.bincount(whole, minlength=source.num_classes),
        "training split": split.train_counts,
        "validation split": split.val_counts,
        "test split": split.test_counts,
    }
    lines = ["imbalance ratio (largest / smallest class):"]
    lines += [f"  {name:<17}{_ratio(c, source.classes)}" for name, c in parts.items()]
    if split.ratio is None and source.natural:
        lines.append(
            "  (the methods train on the training split: the data less the test images and"
            " the validation share)"
        )
    return lines


def recall_by_size_rank(
    runs: list[dict[str, Any]], methods: list[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-class test recall by training-size rank, averaged over seeds.

    Classes are ranked by training size within each seed (ranks share a size across seeds).
    A method's recall is averaged over the seeds in which it ran.

    Returns:
        The mean training size at each rank, and per method the mean recall at each rank.

    Example:
        >>> erm = {"per_class_recall": [0.5, 1.0]}
        >>> runs = [{"train_counts": [1, 9], RESULTS_KEY: {"erm": erm}}]
        >>> sizes, recall = recall_by_size_rank(runs, ["erm"])
        >>> sizes.tolist(), recall["erm"].tolist()
        ([9.0, 1.0], [1.0, 0.5])
    """
    ranked = [np.argsort(-np.asarray(run["train_counts"]), kind="stable") for run in runs]
    sizes = np.mean(
        [np.asarray(run["train_counts"])[r] for run, r in zip(runs, ranked, strict=True)], axis=0
    )
    by_rank = {
        m: np.nanmean(
            [
                np.asarray(run[RESULTS_KEY][m]["per_class_recall"], dtype=np.float64)[r]
                for run, r in zip(runs, ranked, strict=True)
                if m in run[RESULTS_KEY]
            ],
            axis=0,
        )
        for m in methods
    }
    return sizes, by_rank


def finite(value: Any) -> Any:
    """JSON has no NaN: ``None`` (``null``) instead, in nested dicts and lists too.

    Example:
        >>> finite({"a": [1.0, float("nan")]})
        {'a': [1.0, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def write_results(
    out: Path,
    runs: list[dict[str, Any]],
    methods: list[str],
    head: dict[str, Any],
    *,
    header: str,
    machine_line: str,
    plot_title: str,
    say: Callable[[str], None],
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Summarise ``runs``; write and print the table, write the JSON and the plot.

    ``head`` opens the JSON document (the command, settings, data and machine, in that order);
    the summary, the recall by class size and the runs follow. The files keep their format:
    the table's header says "per strategy" and the JSON's keys are those of earlier results.
    A method is summarised over the seeds in which it ran (its row says so when that is not
    every seed); ``notes`` (methods skipped, an early stop) follow the table.

    Returns:
        The JSON document, with the paths written under ``"paths"``.
    """
    summary = {
        m: summarize([run[RESULTS_KEY][m] for run in runs if m in run[RESULTS_KEY]])
        for m in methods
    }
    seeds_run = {m: sum(m in run[RESULTS_KEY] for run in runs) for m in methods}
    labels = {m: f"{m} ({k} of {len(runs)} seeds)" for m, k in seeds_run.items() if k < len(runs)}
    command = head["command"]
    table = format_table(summary, methods, labels)
    below = "".join(f"{line}\n\n" for line in notes or [])
    sizes, by_rank = recall_by_size_rank(runs, methods)
    if len(sizes) <= CLASS_TABLE_LIMIT:
        below += (
            "Test recall per class (%, mean over seeds), the classes ranked by training images "
            "(largest first; the header gives H(ead), M(iddle) or T(ail) and the mean count):"
            f"\n\n{format_class_table(sizes, by_rank, methods)}\n\n"
        )
    markdown = f"{header}\n\n{table}\n\n{below}`{command}`\n\n{machine_line}\n"
    document: dict[str, Any] = {
        **head,
        "metrics": list(METRIC_NAMES),
        "summary": summary,
        "recall_by_size_rank": {
            "train_size": [round(float(v), 2) for v in sizes],
            **{m: [round(float(v), 6) for v in by_rank[m]] for m in methods},
        },
        "runs": runs,
    }
    paths = {"table": out / "results.md", "json": out / "results.json", "plot": out / "recall.png"}
    paths["table"].write_text(markdown)
    paths["json"].write_text(json.dumps(finite(document), indent=1) + "\n")
    write_plot(paths["plot"], sizes, by_rank, title=plot_title)
    say("")
    say(markdown)
    for key, path in paths.items():
        say(f"{key:>5}: {path}")
    document["paths"] = {k: str(v) for k, v in paths.items()}
    return document
