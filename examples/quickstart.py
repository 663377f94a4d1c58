"""Quickstart: a sampler fixes a skewed batch mix on scikit-learn's bundled digits
===============================================================================

Builds a long-tailed training set from the 8x8 digits (class 0 keeps all its images, class 9
about a tenth), then counts what a DataLoader hands out in one epoch with a plain shuffle,
with RandomOverSampler and with RandomUnderSampler. Trains nothing; runs in seconds.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from torch_balance import RandomOverSampler, RandomUnderSampler


def long_tailed_digits(ratio: float = 10.0, seed: int = 0) -> TensorDataset:
    """Digits with n_c = n_max * ratio**(-c/9) images of class c (Cao et al., 2019)."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    n_max = int(torch.bincount(labels).min())
    for c in range(10):
        members = np.flatnonzero(labels.numpy() == c)
        n_c = int(n_max * ratio ** (-c / 9))
        keep.extend(rng.choice(members, size=n_c, replace=False).tolist())
    idx = torch.tensor(sorted(keep))
    return TensorDataset(images[idx], labels[idx])


def epoch_mix(loader: DataLoader) -> Counter[int]:
    mix: Counter[int] = Counter()
    for _, y in loader:
        mix.update(y.tolist())
    return mix


def main() -> None:
    dataset = long_tailed_digits()
    loaders = {
        "shuffle": DataLoader(dataset, batch_size=64, shuffle=True),
        "RandomOverSampler": DataLoader(
            dataset, batch_size=64, sampler=RandomOverSampler(dataset, seed=0)
        ),
        "RandomUnderSampler": DataLoader(
            dataset, batch_size=64, sampler=RandomUnderSampler(dataset, seed=0)
        ),
    }
    print(f"{len(dataset)} training images, 10 classes, imbalance ratio 10\n")
    print(f"{'loader':<20}{'epoch':>7}  samples per class 0..9")
    for name, loader in loaders.items():
        mix = epoch_mix(loader)
        row = " ".join(f"{mix[c]:>4}" for c in range(10))
        print(f"{name:<20}{sum(mix.values()):>7}  {row}")


if __name__ == "__main__":
    main()
