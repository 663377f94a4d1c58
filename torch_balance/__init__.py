"""torch_balance: class-imbalance tools for PyTorch data loading.

Samplers and dataset wrappers that over- and undersample at the index level, label readers
that never decode an image, and the strategies that decide what one epoch holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch_balance.batch_samplers import ClassBalancedBatchSampler, StratifiedBatchSampler
from torch_balance.class_aware import ClassAwareSampler, ClassExposure
from torch_balance.datasets import ResampledDataset
from torch_balance.feedback import Feedback, per_class_mean, per_class_recall
from torch_balance.labels import LabelIndex, MultiLabelIndex, get_labels, get_labelsets
from torch_balance.labels.masks import MaskFolder, class_pixel_counts
from torch_balance.mixtures import MixtureSampler, mixture_shares
from torch_balance.rare_class import ClassIndex, RareClassSampler, rare_class_probabilities
from torch_balance.rare_class_crop import RareClassCrop, RareClassDataset
from torch_balance.samplers import (
    BalancedSampler,
    RandomOverSampler,
    RandomUnderSampler,
    RepeatFactorSampler,
    repeat_factors,
)
from torch_balance.smote import embed
from torch_balance.strategies import (
    Deferred,
    Plan,
    Power,
    Progressive,
    make_plan,
    target_counts,
)
from torch_balance.streams import BalancedIterableDataset, BalancedMix, Manifest
from torch_balance.weighted import WeightedSampler
from torch_balance.weights import class_weights

if TYPE_CHECKING:
    from torch_balance.smote import SMOTE, SMOTEDataset

__version__ = "0.1.0"

__all__ = [
    "SMOTE",
    "BalancedIterableDataset",
    "BalancedMix",
    "BalancedSampler",
    "ClassBalancedBatchSampler",
    "Deferred",
    "Feedback",
    "LabelIndex",
    "Manifest",
    "MultiLabelIndex",
    "Plan",
    "Power",
    "Progressive",
    "RandomOverSampler",
    "RandomUnderSampler",
    "RepeatFactorSampler",
    "ResampledDataset",
    "SMOTEDataset",
    "StratifiedBatchSampler",
    "WeightedSampler",
    "class_weights",
    "embed",
    "get_labels",
    "get_labelsets",
    "make_plan",
    "per_class_mean",
    "per_class_recall",
    "repeat_factors",
    "target_counts",
]

# rare-class sampling for segmentation
__all__ += [
    "ClassIndex",
    "MaskFolder",
    "RareClassCrop",
    "RareClassDataset",
    "RareClassSampler",
    "class_pixel_counts",
    "rare_class_probabilities",
]

# class-aware sampling for multi-label and detection data
__all__ += ["ClassAwareSampler", "ClassExposure"]
# mixtures of sources, each balanced inside
__all__ += ["MixtureSampler", "mixture_shares"]


def __getattr__(name: str) -> Any:
    # SMOTE and SMOTEDataset load on first use: they import imbalanced-learn (seconds).
    if name in ("SMOTE", "SMOTEDataset"):
        import torch_balance.smote

        value = getattr(torch_balance.smote, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "SMOTE", "SMOTEDataset"})
