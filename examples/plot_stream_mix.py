"""
A balanced stream's class mix, prefix by prefix
===============================================

A stream is read once, in order, by DataLoader workers, so wherever an epoch is cut (a fixed
``epoch_length``, a ``break``), what came out so far should already follow the target mix.
Here 1,271 samples of 5 long-tailed classes (800 down to 16, ratio 50) flow in a random
order, and the plot follows the distance (total variation) between the class mix of the
first n samples emitted and the target mix (class-balanced, ``"over"``), for the stream read
as it is, balanced with a manifest (mode 1: the labels known up front) and balanced online
(mode 2: labels seen as they flow). The right panel shows each class's share of the
emitted prefix in mode 2.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from torch_balance import BalancedIterableDataset

rng = np.random.default_rng(0)
counts = [int(800 * 50 ** (-c / 4)) for c in range(5)]
labels = rng.permutation(np.repeat(np.arange(5), counts))
source = [(f"x{i}", int(y)) for i, y in enumerate(labels)]  # any iterable of (x, y)


def prefix_distance(emitted: np.ndarray) -> np.ndarray:
    onehot = np.eye(5)[emitted]
    mix = onehot.cumsum(0) / np.arange(1, len(emitted) + 1)[:, None]
    return 0.5 * np.abs(mix - 0.2).sum(1)


plain = np.array([y for _, y in source])
mode1 = BalancedIterableDataset(source, "over", manifest={"data": plain.tolist()}, seed=0)
mode2 = BalancedIterableDataset(source, "over", seed=0, epoch_length=len(source))
emitted = {
    "the stream as read": plain,
    "mode 1 (manifest)": np.array([y for _, y in mode1]),
    "mode 2 (online)": np.array([y for _, y in mode2]),
}

fig, (dist, shares) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
for name, ys in emitted.items():
    d = prefix_distance(ys)
    dist.plot(np.arange(1, len(ys) + 1), d, label=f"{name}: {len(ys)} samples, end {d[-1]:.3f}")
dist.set_xscale("log")
dist.set_xlabel("samples emitted")
dist.set_ylabel("distance of the prefix's mix to the target")
dist.legend(fontsize=8)
ys = emitted["mode 2 (online)"]
share = np.eye(5)[ys].cumsum(0) / np.arange(1, len(ys) + 1)[:, None]
for c in range(5):
    shares.plot(np.arange(1, len(ys) + 1), share[:, c], label=f"class {c} ({counts[c]} read)")
shares.axhline(0.2, color="black", linewidth=0.8, linestyle="--")
shares.set_xscale("log")
shares.set_xlabel("samples emitted (mode 2)")
shares.set_ylabel("share of the prefix")
shares.legend(fontsize=8)
print({name: round(float(prefix_distance(ys)[-1]), 4) for name, ys in emitted.items()})
plt.show()
