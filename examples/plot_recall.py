"""
Per-class recall: what each method does for the rare classes
============================================================

Per-class test recall against the size of the class in the training set, on long-tailed
Fashion-MNIST (imbalance ratio 100), read from the results file that
``benchmarks/bench_recall.py`` saved (``benchmarks/results/fashion-mnist/results.json``:
``torch-balance bench fashion-mnist --ratio 100 --seeds 3`` on a 2-core AMD EPYC VM). Nothing
is retrained here. Each point is the mean over 3 seeds of the class with that training-size
rank (which class is rare is drawn per seed). Plain training (``erm``) loses the rare classes;
re-balancing lifts them, at some cost on the largest ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt


def results_file() -> Path:
    # run from the repository root, from examples/, or by sphinx-gallery (which sets __file__)
    name = Path("benchmarks", "results", "fashion-mnist", "results.json")
    here = Path(globals().get("__file__", "plot_recall.py")).resolve().parent
    for base in (here.parent, Path.cwd(), Path.cwd().parent):
        if (base / name).exists():
            return base / name
    raise FileNotFoundError(f"{name}: run this script from a checkout of the repository")


results = json.loads(results_file().read_text())
by_rank = results["recall_by_size_rank"]
sizes = by_rank["train_size"]
groups = {
    "plain training and resampling": ["erm", "over", "under-static", "sqrt", "class"],
    "schedules, re-weighting and decoupling": [
        "erm",
        "deferred",
        "reweight",
        "crt",
        "logit-adjust",
    ],
}
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, constrained_layout=True)
for ax, (title, methods) in zip(axes, groups.items(), strict=True):
    for method in methods:
        recall = [100 * r for r in by_rank[method]]
        ax.plot(sizes, recall, marker="o", label=method, linewidth=2 if method == "erm" else 1)
    ax.set_xscale("log")
    ax.set_xlabel("training images in the class")
    ax.set_title(title)
    ax.legend(fontsize=8)
axes[0].set_ylabel("test recall (%)")
fig.suptitle(results["command"], fontsize=9)
print(results["command"])
print("machine:", results["machine"]["cpu"], results["machine"]["cores"], "cores")
plt.show()
