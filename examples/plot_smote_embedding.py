"""
SMOTE rows in a 2-D view of an embedding
========================================

Four classes of scikit-learn's 8x8 digits, long-tailed (150, 40, 12 and 6 images), embedded by
an encoder (here a fixed random projection of the pixels to 16 features, standing in for a
trained backbone), then oversampled with :class:`~torch_balance.SMOTE` up to the largest
class. Each synthetic row lies on the segment between a real row of its class and one of its
5 nearest neighbours in the embedding, so the new rows fill the space the class already
spans instead of copying points. The plot projects real and synthetic rows onto the first two
principal axes of the real embedding.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from torch_balance import SMOTE, embed

digits = load_digits()
keep = np.concatenate(
    [
        np.flatnonzero(digits.target == c)[:n]
        for c, n in zip(range(4), [150, 40, 12, 6], strict=True)
    ]
)
images = torch.tensor(digits.images[keep], dtype=torch.float32).unsqueeze(1) / 16
data = TensorDataset(images, torch.tensor(digits.target[keep]))

torch.manual_seed(0)
encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh())
X, y = embed(data, encoder, progress=False)
y = np.asarray(y)  # the labels, as numpy for the plot
smote = SMOTE(k_neighbors=5, random_state=0)
X_res, y_res = smote.fit_resample(X, y)
synthetic = slice(len(X), len(X_res))
print("per class before:", np.bincount(y), "after:", np.bincount(y_res))

mean = X.mean(0)
_, _, axes = torch.linalg.svd(X - mean, full_matrices=False)
project = lambda rows: ((rows - mean) @ axes[:2].T).numpy()  # noqa: E731
real_2d, new_2d = project(X), project(X_res[synthetic])
y_new = np.asarray(y_res)[synthetic]

fig, ax = plt.subplots(figsize=(6.5, 5), constrained_layout=True)
for c, colour in zip(range(4), ["tab:blue", "tab:orange", "tab:green", "tab:red"], strict=True):
    ax.scatter(*real_2d[y == c].T, s=18, color=colour, label=f"class {c}: {np.sum(y == c)} real")
    if np.any(y_new == c):
        ax.scatter(
            *new_2d[y_new == c].T,
            s=14,
            marker="x",
            color=colour,
            alpha=0.6,
            label=f"class {c}: {np.sum(y_new == c)} SMOTE",
        )
ax.set_xlabel("first principal axis")
ax.set_ylabel("second principal axis")
ax.legend(fontsize=8)
plt.show()
