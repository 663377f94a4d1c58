"""bench.report: the table, the per-rank recall and the ``inspect`` text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from torch_balance.bench import report
from torch_balance.bench.metrics import METRIC_NAMES
from torch_balance.bench.report import (
    RESULTS_KEY,
    finite,
    format_table,
    inspect_report,
    recall_by_size_rank,
)
from torch_balance.bench.sources import load_source
from torch_balance.bench.split import make_split
from torch_balance.bench.train import Budget


def test_inspect_takes_progressive_and_deferred_epochs_from_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = load_source("digits")
    split = make_split(source, ratio=10, seed=0)
    n_train = int(split.train_counts.sum())
    text = inspect_report(source, split, batch_size=64, steps=400)
    budget = Budget(steps=400, batch_size=64)
    assert f"deferred e>={budget.decay_epoch(n_train)}" in text
    assert f"span about {budget.epochs_spanned(n_train)} epochs" in text

    @dataclass(frozen=True)
    class EarlyDecay(Budget):
        decay_at: float = 0.5

    # No constant of its own: a budget that decays earlier moves inspect's column with it.
    monkeypatch.setattr(report, "Budget", EarlyDecay)
    early = EarlyDecay(steps=400, batch_size=64).decay_epoch(n_train)
    assert early < budget.decay_epoch(n_train)
    assert f"deferred e>={early}" in inspect_report(source, split, batch_size=64, steps=400)


def test_table_has_one_row_per_method_in_the_given_order() -> None:
    stats = {m: {"mean": 0.25, "std": 0.0} for m in METRIC_NAMES}
    table = format_table({"over": stats, "erm": stats}, ["over", "erm"])
    rows = table.splitlines()
    assert rows[0].startswith("| strategy | accuracy |")  # the results format is kept
    assert [row.split("|")[1].strip() for row in rows[2:]] == ["over", "erm"]


def test_recall_by_size_rank_averages_ranks_across_seeds() -> None:
    runs = [
        {"train_counts": [10, 2], RESULTS_KEY: {"erm": {"per_class_recall": [1.0, 0.0]}}},
        {"train_counts": [4, 20], RESULTS_KEY: {"erm": {"per_class_recall": [0.5, 0.5]}}},
    ]
    sizes, by_rank = recall_by_size_rank(runs, ["erm"])
    assert sizes.tolist() == [15.0, 3.0]
    assert np.allclose(by_rank["erm"], [0.75, 0.25])
    assert finite({"x": [float("nan"), float("inf"), 1.0]}) == {"x": [None, None, 1.0]}
