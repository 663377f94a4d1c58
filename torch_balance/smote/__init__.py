"""SMOTE in embedding space: a batched encoder pass, a torch-native SMOTE, its variants.

:func:`embed` (:mod:`~torch_balance.smote.embed`) runs an encoder over a dataset once and
returns its embeddings and labels. :class:`SMOTE` (:mod:`~torch_balance.smote.smote`) is an
imbalanced-learn over-sampler that over-samples them in torch, on the CPU or a GPU, with the
exact chunked nearest-neighbour search of :mod:`~torch_balance.smote.neighbors`.
:class:`SMOTEDataset` (:mod:`~torch_balance.smote.dataset`) is the dataset a classifier head
is retrained on: real embeddings plus synthetic ones, redrawn by ``set_epoch``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from torch_balance.smote.embed import embed

if TYPE_CHECKING:
    from torch_balance.smote.dataset import SMOTEDataset
    from torch_balance.smote.smote import SMOTE

__all__ = ["SMOTE", "SMOTEDataset", "embed"]

# SMOTE subclasses imbalanced-learn's base sampler, and importing imbalanced-learn (with
# scikit-learn) takes seconds: these load on first use, so `import torch_balance` stays fast.
LAZY = {"SMOTE": "torch_balance.smote.smote", "SMOTEDataset": "torch_balance.smote.dataset"}


def __getattr__(name: str) -> Any:
    module = LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *LAZY})
