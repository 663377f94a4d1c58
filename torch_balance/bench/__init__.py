"""The recall benchmark behind ``torch-balance bench`` and ``torch-balance inspect``.

``data`` loads a source and builds each seed's split (balanced test, imbalanced training,
validation from the imbalanced training data); ``protocol`` trains one small CNN under each
strategy with the same step budget; ``metrics`` scores predictions; ``report`` writes the
table, the plot and the ``inspect`` text; ``runner`` ties them together.
"""

from __future__ import annotations

from torch_balance.bench.data import (
    DATASET_NAMES,
    Source,
    Split,
    load_source,
    long_tail_counts,
    make_split,
    step_counts,
)
from torch_balance.bench.metrics import METRIC_NAMES, scores, thirds
from torch_balance.bench.protocol import STRATEGIES, Budget, SmallCNN, check_strategies
from torch_balance.bench.runner import BenchConfig, run_bench

__all__ = [
    "DATASET_NAMES",
    "METRIC_NAMES",
    "STRATEGIES",
    "BenchConfig",
    "Budget",
    "SmallCNN",
    "Source",
    "Split",
    "check_strategies",
    "load_source",
    "long_tail_counts",
    "make_split",
    "run_bench",
    "scores",
    "step_counts",
    "thirds",
]
