"""class_weights: loss weights per class."""

from __future__ import annotations

import pytest
import torch

from torch_balance import class_weights


def test_class_weights() -> None:
    labels = [0] * 80 + [1] * 15 + [2] * 5
    inverse = class_weights(labels)
    assert inverse.dtype == torch.float32
    assert torch.isclose(inverse.sum(), torch.tensor(3.0))
    raw = 1 / torch.tensor([80.0, 15.0, 5.0])
    assert torch.allclose(inverse, raw / raw.sum() * 3)
    sqrt = class_weights(labels, "sqrt")
    assert torch.allclose(sqrt, (raw.sqrt() / raw.sqrt().sum()) * 3)
    beta = 0.99
    effective = class_weights(labels, "effective", beta=beta)
    n = torch.tensor([80.0, 15.0, 5.0], dtype=torch.float64)
    raw_eff = (1 - beta) / (1 - beta**n)
    assert torch.allclose(effective.double(), raw_eff / raw_eff.sum() * 3, atol=1e-6)
    assert torch.allclose(class_weights(labels, "effective", beta=0.0), torch.ones(3))


def test_class_weights_index_by_label_value() -> None:
    weights = class_weights([0, 0, 3], num_classes=5)
    assert weights.shape == (5,)
    assert weights[1] == 0 and weights[2] == 0 and weights[4] == 0
    assert weights[3] > weights[0]
    with pytest.raises(ValueError, match="num_classes"):
        class_weights([0, 0, 3], num_classes=2)
    with pytest.raises(ValueError, match="beta"):
        class_weights([0, 1], "effective", beta=1.0)
    with pytest.raises(ValueError, match="kind"):
        class_weights([0, 1], "log")
