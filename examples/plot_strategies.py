"""
An epoch's class mix under each strategy
========================================

Ten long-tailed classes (the largest has 100 times the images of the smallest) and what one
epoch of each strategy holds, class by class. The bars are counted from the indices a sampler
actually hands out; the black ticks are the plan, ``target_counts()``, which they match
exactly. ``"instance"`` is a plain shuffle; ``"sqrt"`` and ``"class"`` keep the epoch length
and flatten the mix (Kang et al., ICLR 2020); ``"over"`` and ``"under"`` are
imbalanced-learn's counts, longer and shorter epochs. The second panel follows
``Progressive(5)`` from instance- to class-balanced over five epochs.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from torch_balance import BalancedSampler, Progressive, RandomOverSampler, RandomUnderSampler

counts = [int(1000 * 100 ** (-c / 9)) for c in range(10)]  # 1000 down to 10
labels = np.repeat(np.arange(10), counts)

samplers = {
    '"instance"': BalancedSampler(labels, "instance", seed=0),
    '"sqrt"': BalancedSampler(labels, "sqrt", seed=0),
    '"class"': BalancedSampler(labels, "class", seed=0),
    '"over"': RandomOverSampler(labels, seed=0),
    '"under"': RandomUnderSampler(labels, seed=0),
}

fig, (mix, schedule) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
width = 0.16
for k, (name, sampler) in enumerate(samplers.items()):
    drawn = np.bincount(labels[np.fromiter(sampler, dtype=np.int64)], minlength=10)
    planned = list(sampler.target_counts().values())
    assert drawn.tolist() == planned
    x = np.arange(10) + (k - 2) * width
    mix.bar(x, drawn, width, label=f"{name} ({len(sampler)} per epoch)")
    mix.scatter(x, planned, marker="_", color="black", s=30, zorder=3)
mix.set_yscale("log")
mix.set_xticks(range(10))
mix.set_xlabel("class (largest first)")
mix.set_ylabel("samples in one epoch")
mix.set_title("One epoch, five strategies")
mix.set_ylim(5, 3e4)  # room for the legend above the bars
mix.legend(fontsize=7, loc="upper center", ncol=2)

sampler = BalancedSampler(labels, Progressive(5), seed=0)
for epoch in range(5):
    sampler.set_epoch(epoch)
    drawn = np.bincount(labels[np.fromiter(sampler, dtype=np.int64)], minlength=10)
    schedule.plot(range(10), drawn, marker="o", label=f"epoch {epoch}")
schedule.set_yscale("log")
schedule.set_xticks(range(10))
schedule.set_xlabel("class (largest first)")
schedule.set_title("Progressive(5): instance- to class-balanced")
schedule.legend(fontsize=8)
plt.show()
