"""The public surface is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import torch_balance

EXPECTED = {
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
    "SMOTE",
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
}

# rare-class sampling for segmentation
EXPECTED |= {
    "ClassIndex",
    "MaskFolder",
    "RareClassCrop",
    "RareClassDataset",
    "RareClassSampler",
    "class_pixel_counts",
    "rare_class_probabilities",
}

# class-aware sampling for multi-label and detection data
EXPECTED |= {"ClassAwareSampler", "ClassExposure"}
# mixtures of sources, each balanced inside
EXPECTED |= {"MixtureSampler", "mixture_shares"}


def test_all_is_pinned() -> None:
    assert set(torch_balance.__all__) == EXPECTED


def test_every_name_resolves() -> None:
    for name in torch_balance.__all__:
        assert getattr(torch_balance, name) is not None, name


# the long-tail losses: their own namespace, torch_balance.losses
LOSSES = {
    "BalancedSoftmaxLoss",
    "ClassBalancedLoss",
    "DeferredReweighting",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "NormedLinear",
    "class_counts",
    "focal_loss",
    "logit_adjust",
    "tau_normalize",
}


def test_losses_all_is_pinned() -> None:
    import torch_balance.losses

    assert set(torch_balance.losses.__all__) == LOSSES
    for name in torch_balance.losses.__all__:
        assert getattr(torch_balance.losses, name) is not None, name
