"""bench.loss_methods: the long-tail losses as registry methods, on digits with fast settings,
and the per-class report beside the head / middle / tail thirds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from torch_balance.bench.loss_methods import BETA, LOSS_METHODS
from torch_balance.bench.methods import METHODS, CannotRun, Job, run_method
from torch_balance.bench.recipes import TAUS
from torch_balance.bench.sources import load_source
from torch_balance.bench.split import Tensors, make_split, materialize
from torch_balance.bench.train import Budget, Trained
from torch_balance.losses import (
    ClassBalancedLoss,
    DeferredReweighting,
    LDAMLoss,
    LogitAdjustedLoss,
    NormedLinear,
    tau_normalize,
)


@pytest.fixture(scope="module")
def data() -> Tensors:
    source = load_source("digits")
    return materialize(source, make_split(source, ratio=10, seed=0))


def job(data: Tensors, steps: int = 3, erm: Trained | None = None) -> Job:
    budget = Budget(steps=steps, batch_size=32, head_steps=2)
    return Job(data, 10, seed=0, budget=budget, device=torch.device("cpu"), erm=erm)


def test_every_loss_method_is_in_the_registry() -> None:
    assert set(LOSS_METHODS) <= set(METHODS)
    assert {"la-loss", "balanced-softmax", "ldam-drw", "ldam-drs", "cb-focal", "focal"} <= set(
        LOSS_METHODS
    )
    assert {"drw", "tau-norm"} <= set(LOSS_METHODS)
    names = list(METHODS)
    assert names.index("logit-adjust") < names.index("la-loss")  # appended after the others


def test_loss_recipes_carry_their_loss(data: Tensors) -> None:
    counts = np.bincount(data.y_train.numpy(), minlength=10)
    run = job(data)
    la = LOSS_METHODS["la-loss"].build(run)
    assert isinstance(la.loss, LogitAdjustedLoss) and la.loss.tau == 1.0
    assert la.loss.counts.tolist() == counts.tolist() and la.weight is None
    cb = LOSS_METHODS["cb-focal"].build(run).loss
    assert isinstance(cb, ClassBalancedLoss) and cb.loss == "focal" and cb.beta == BETA
    ldam = LOSS_METHODS["ldam-drw"].build(run)
    assert isinstance(ldam.loss, LDAMLoss) and ldam.head is not None
    assert isinstance(ldam.head(64, 10, 0), NormedLinear)


def test_drw_switches_the_weights_at_the_decay_epoch(data: Tensors) -> None:
    n_train = len(data.y_train)
    run = job(data, steps=5 * -(-n_train // 32))  # five epochs; the decay in epoch 4
    start = run.budget.decay_epoch(n_train)
    balanced = DeferredReweighting(data.y_train, start, beta=BETA).weight(start)
    for name in ("drw", "ldam-drw"):
        recipe = LOSS_METHODS[name].build(run)
        assert recipe.loss is not None and recipe.extra["start_epoch"] == start == 4
        next(iter(recipe.feed(start - 1)))
        assert torch.equal(recipe.loss.weight, torch.ones(10)), name
        next(iter(recipe.feed(start)))
        assert torch.equal(recipe.loss.weight, balanced), name


def test_ldam_drs_samples_class_balanced_from_the_decay_epoch(data: Tensors) -> None:
    n_train = len(data.y_train)
    run = job(data, steps=5 * -(-n_train // 32))
    recipe = LOSS_METHODS["ldam-drs"].build(run)
    start = recipe.extra["start_epoch"]
    before = torch.cat([y for _, y in recipe.feed(start - 1)]).bincount(minlength=10)
    after = torch.cat([y for _, y in recipe.feed(start)]).bincount(minlength=10)
    assert before.tolist() == np.bincount(data.y_train.numpy(), minlength=10).tolist()
    assert int(after.max() - after.min()) <= 1  # every class as often
    assert recipe.weight is None and recipe.loss is not None and recipe.loss.weight is None


def test_loss_methods_train_and_differ_from_erm(data: Tensors) -> None:
    erm = run_method("erm", job(data))
    for name, method in LOSS_METHODS.items():
        if method.stage != "backbone":
            continue
        result = run_method(name, job(data))
        assert torch.isfinite(result.test_logits).all(), name
        # three steps stay in epoch 0, before DRW's switch: drw is erm there, the same model
        same = torch.equal(result.test_logits, erm.test_logits)
        assert same == (name == "drw"), name
    ldam = run_method("ldam-drw", job(data))
    assert ldam.test_logits.abs().max() <= 1.0 + 1e-5  # cosine logits from the normed head


def test_tau_norm_rescales_erms_head(data: Tensors) -> None:
    erm = run_method("erm", job(data, steps=20))
    result = run_method("tau-norm", job(data, erm=erm))
    tau = result.extra["tau"]
    assert tau in TAUS and result.extra["tau_grid"] == list(TAUS)
    assert erm.model is not None
    head = erm.model.head
    assert isinstance(head, nn.Linear)
    with torch.no_grad():
        embeddings = erm.model.features.eval()(data.x_test)
        expected = tau_normalize(head, tau)(embeddings)
    assert torch.allclose(result.test_logits, expected, atol=1e-5)
    if tau == 0.0:
        assert torch.allclose(result.test_logits, erm.test_logits, atol=1e-5)


def test_a_class_without_training_images_cannot_run(data: Tensors) -> None:
    keep = data.y_train != 9
    thin = replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])
    for name in ("la-loss", "balanced-softmax", "ldam-drw", "ldam-drs", "cb-focal", "drw"):
        with pytest.raises(CannotRun, match=f"{name}: skipped: class 9 has no training image"):
            run_method(name, job(thin))
    assert torch.isfinite(run_method("focal", job(thin)).test_logits).all()  # no counts


def test_results_show_recall_per_class_and_thirds(tmp_path: Path) -> None:
    from torch_balance.bench.runner import BenchConfig, run_bench

    out = tmp_path / "out"
    config = BenchConfig(
        data="digits",
        methods=["erm", "la-loss", "ldam-drw", "tau-norm"],
        seeds=1,
        steps=6,
        batch_size=32,
        ratio=10,
        out=str(out),
        progress=False,
        jobs=1,
    )
    document = run_bench(config, say=lambda _: None)
    table = (out / "results.md").read_text()
    assert "| la-loss |" in table and "| tau-norm |" in table
    assert "Test recall per class" in table and "| strategy | H " in table and " T " in table
    saved = json.loads((out / "results.json").read_text())
    for name in ("la-loss", "ldam-drw", "tau-norm"):
        assert name in saved["summary"] and name in saved["recall_by_size_rank"]
        run = saved["runs"][0]["strategies"][name]
        assert len(run["per_class_recall"]) == 10
        assert {"head_recall", "middle_recall", "tail_recall", "minority_recall"} <= set(run)
    assert document["paths"]["table"] == str(out / "results.md")
