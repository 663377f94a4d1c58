"""bench.methods: the registry, and every registered method run through it."""

from __future__ import annotations

import pytest
import torch

from torch_balance.bench import methods
from torch_balance.bench.methods import METHODS, Job, Method, Recipe, check_methods, run_method
from torch_balance.bench.sources import load_source
from torch_balance.bench.split import Tensors, make_split, materialize
from torch_balance.bench.train import Budget, Trained


@pytest.fixture(scope="module")
def data() -> Tensors:
    source = load_source("digits")
    return materialize(source, make_split(source, ratio=10, seed=0))


def job(data: Tensors, erm: Trained | None = None) -> Job:
    budget = Budget(steps=3, batch_size=32, head_steps=2)
    return Job(data, 10, seed=0, budget=budget, device=torch.device("cpu"), erm=erm)


def test_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        check_methods("erm,smote")
    assert all(name in str(info.value) for name in METHODS)
    assert check_methods("over, erm,over") == ["over", "erm"]


def test_every_registered_method_runs_through_the_registry(data: Tensors) -> None:
    erm = run_method("erm", job(data))
    assert erm.model is not None, "erm keeps its model for the methods built on it"
    for name, method in METHODS.items():
        result = run_method(name, job(data, erm=erm))
        assert result.val_logits.shape == (len(data.y_val), 10), name
        assert result.test_logits.shape == (len(data.y_test), 10), name
        assert torch.isfinite(result.test_logits).all(), name
        assert (result.model is not None) == (name == "erm"), name
        if method.stage == "backbone":
            assert result.epochs >= 1, name
        if method.stage == "head":
            assert result.extra["head_steps"] == 2, name
    assert set(METHODS) == set(check_methods(",".join(METHODS)))


def test_methods_built_on_erm_need_it(data: Tensors) -> None:
    for name, method in METHODS.items():
        if method.uses_erm:
            with pytest.raises(ValueError, match="erm: expected the erm model, trained first"):
                run_method(name, job(data))
    with pytest.raises(ValueError, match="method: expected one of erm, over"):
        run_method("nope", job(data))


def test_a_new_method_is_one_registry_entry(data: Tensors, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def twice_erm(j: Job) -> Recipe:
        calls.append(j.seed)
        recipe = methods._sampled("instance")(j)
        recipe.extra["note"] = "added in one line"
        return recipe

    monkeypatch.setitem(METHODS, "twice-erm", Method("a test entry", "backbone", twice_erm))
    assert check_methods("erm,twice-erm") == ["erm", "twice-erm"]
    result = run_method("twice-erm", job(data))
    assert calls == [0] and result.extra == {"note": "added in one line"}
    # The same recipe as erm, so the same model: the registry adds nothing of its own.
    erm = run_method("erm", job(data))
    assert torch.equal(result.test_logits, erm.test_logits)


def test_steps_per_stage() -> None:
    budget = Budget(steps=40, batch_size=8, head_steps=6)
    assert {m.stage: m.steps(budget) for m in METHODS.values()} == {
        "backbone": 40,
        "head": 6,
        "post-hoc": 0,
    }


def test_feedback_feeds_validation_recall_every_epoch(data: Tensors) -> None:
    n_train = len(data.y_train)
    budget = Budget(steps=3 * -(-n_train // 64), batch_size=64)  # three epochs
    run = Job(data, 10, seed=0, budget=budget, device=torch.device("cpu"))
    result = run_method("feedback", run)
    fed = result.extra["recall_fed"]
    assert result.epochs == 3 and len(fed) == 2  # measured before epochs 1 and 2
    assert all(len(values) == 10 and all(0 <= r <= 1 for r in values) for values in fed)
    again = run_method("feedback", run)
    assert again.extra["recall_fed"] == fed and torch.equal(again.test_logits, result.test_logits)
