"""SMOTE in embedding space: a batched encoder pass, a torch-native SMOTE, its variants.

:func:`embed` (:mod:`~torch_balance.smote.embed`) runs an encoder over a dataset once and
returns its embeddings and labels. :class:`SMOTE` (:mod:`~torch_balance.smote.smote`) is an
imbalanced-learn over-sampler that over-samples them in torch, on the CPU or a GPU, with the
exact chunked nearest-neighbour search of :mod:`~torch_balance.smote.neighbors`.
:class:`SMOTEDataset` (:mod:`~torch_balance.smote.dataset`) is the dataset a classifier head
is retrained on: real embeddings plus synthetic ones, redrawn by ``set_epoch``.
"""

from __future__ import annotations

from torch_balance.smote.dataset import SMOTEDataset
from torch_balance.smote.embed import embed
from torch_balance.smote.smote import SMOTE

__all__ = ["SMOTE", "SMOTEDataset", "embed"]
