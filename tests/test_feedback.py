"""Class-level feedback: the Feedback strategy and the per-class measurement helpers."""

from __future__ import annotations

import pickle
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from conftest import HANG_S

from torch_balance import (
    BalancedSampler,
    Feedback,
    Power,
    ResampledDataset,
    StratifiedBatchSampler,
    make_plan,
    per_class_mean,
    per_class_recall,
)
from torch_balance._apportion import apportion
from torch_balance.testing import CHECKS, conformance_labels

LABELS = np.repeat(np.arange(4), [40, 20, 10, 10])  # 80 samples


def test_hand_computed_recall_targets() -> None:
    strategy = Feedback("class", tau=1.0, mix=0.5)
    plan = make_plan(LABELS, strategy)
    assert plan.targets(0).tolist() == [20, 20, 20, 20]
    strategy.update([1.0, 0.8, 0.6, 0.6], kind="recall", epoch=1)
    # difficulty 0, .2, .4, .4 -> share 0, .2, .4, .4; blended: .125, .225, .325, .325 of 80
    assert plan.targets(1).tolist() == [10, 18, 26, 26]
    assert plan.targets(0).tolist() == [20, 20, 20, 20]  # before the update: the base plan


def test_hand_computed_tau_and_loss() -> None:
    strategy = Feedback(Power(1), tau=2.0, mix=1.0)  # base: instance-balanced, 80 samples
    plan = make_plan(LABELS, strategy)
    strategy.update([1.0, 1.0, 2.0, 0.0], kind="loss", epoch=0)
    # loss ** 2 = 1, 1, 4, 0 -> share 1/6, 1/6, 4/6, 0 of 80 = 13.33, 13.33, 53.33, 0
    assert plan.targets(0).tolist() == [14, 13, 53, 0]
    assert plan.targets(7).tolist() == [14, 13, 53, 0]


def test_tau_zero_and_nothing_left_to_learn_are_uniform() -> None:
    for tau, values in ((0.0, [0.1, 0.9, 0.5, 0.5]), (1.0, [1.0, 1.0, 1.0, 1.0])):
        strategy = Feedback("instance", tau=tau, mix=1.0)
        plan = make_plan(LABELS, strategy)
        strategy.update(values, epoch=1)
        assert plan.targets(1).tolist() == [20, 20, 20, 20]


def test_blend_matches_the_formula_for_random_values() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        tau, mix = float(rng.uniform(0, 3)), float(rng.uniform(0, 1))
        recall = rng.uniform(0, 1, 4)
        strategy = Feedback("sqrt", tau=tau, mix=mix)
        plan = make_plan(LABELS, strategy, num_samples=101)
        base = plan.targets(0)
        strategy.update(recall, epoch=2)
        share = (1 - recall) ** tau / ((1 - recall) ** tau).sum()
        expected = apportion((1 - mix) * base / 101 + mix * share, 101)
        assert plan.targets(2).tolist() == expected.tolist()
        assert int(plan.targets(5).sum()) == 101 == plan.length  # the epoch length is fixed


def test_updates_take_effect_at_the_first_epoch_not_started() -> None:
    strategy = Feedback("class", mix=1.0)
    sampler = BalancedSampler(LABELS, strategy, seed=0)
    strategy.update([0.5, 0.5, 0.5, 0.0])  # nothing drawn yet: epoch 0
    assert strategy.history[-1]["epoch"] == 0
    list(sampler)  # a complete pass of epoch 0
    strategy.update([0.5, 0.5, 0.0, 0.5])
    assert strategy.history[-1]["epoch"] == 1
    it = iter(sampler)  # epoch 1 under way
    next(it)
    strategy.update([0.0, 0.5, 0.5, 0.5])
    assert strategy.history[-1]["epoch"] == 2
    assert sampler.target_counts(1) == {0: 16, 1: 16, 2: 32, 3: 16}
    sampler.set_epoch(4)
    strategy.update([0.5, 0.0, 0.5, 0.5])
    assert [h["epoch"] for h in strategy.history] == [0, 1, 2, 4]


def test_epochs_follow_the_fed_targets_and_are_deterministic() -> None:
    def run() -> list[list[int]]:
        strategy = Feedback("sqrt", tau=1.5, mix=0.7)
        sampler = BalancedSampler(LABELS, strategy, seed=3)
        epochs = []
        for epoch in range(4):
            sampler.set_epoch(epoch)
            drawn = list(sampler)
            counts = Counter(LABELS[drawn].tolist())
            assert dict(counts) == {k: v for k, v in sampler.target_counts(epoch).items() if v}
            assert len(drawn) == len(sampler) == 80
            epochs.append(drawn)
            strategy.update([0.9, 0.7, 0.4 + 0.1 * epoch, 0.2])
        return epochs

    first, second = run(), run()
    assert first == second
    assert Counter(LABELS[first[0]].tolist()) != Counter(LABELS[first[1]].tolist())


def test_state_round_trip_restores_the_history() -> None:
    strategy = Feedback("class", tau=1.0, mix=0.6)
    sampler = BalancedSampler(LABELS, strategy, seed=1)
    for epoch in range(3):
        list(sampler)
        strategy.update([0.9, 0.8, 0.3 + 0.2 * epoch, 0.5], kind="recall")
    it = iter(sampler)  # epoch 3, stopped mid-way
    head = [next(it) for _ in range(11)]
    state = pickle.loads(pickle.dumps(sampler.state_dict()))
    rest = list(it)
    assert state["feedback"] == strategy.history

    fresh = Feedback("class", tau=1.0, mix=0.6)
    resumed = BalancedSampler(LABELS, fresh, seed=1)
    resumed.load_state_dict(state)
    assert fresh.history == strategy.history
    assert head + list(resumed) == head + rest
    for epoch in range(5):
        assert resumed.target_counts(epoch) == sampler.target_counts(epoch)


def test_state_for_other_settings_is_refused_and_rolled_back() -> None:
    strategy = Feedback("class", tau=1.0)
    sampler = BalancedSampler(LABELS, strategy, seed=1)
    strategy.update([0.9, 0.8, 0.3, 0.5], epoch=1)
    state = sampler.state_dict()

    other = Feedback("class", tau=2.0)  # another tau: another strategy
    other.update([0.5, 0.5, 0.5, 0.5], epoch=0)
    with pytest.raises(ValueError, match="strategy"):
        BalancedSampler(LABELS, other, seed=1).load_state_dict(state)
    assert other.history == [{"epoch": 0, "kind": "recall", "values": [0.5] * 4}]

    broken = dict(state, feedback=[{"epoch": 1, "kind": "recall", "values": [0.5, 2.0, 0, 0]}])
    with pytest.raises(ValueError, match=r"state_dict\['feedback'\]"):
        BalancedSampler(LABELS, Feedback("class"), seed=1).load_state_dict(broken)
    short = dict(state, feedback=[{"epoch": 1, "kind": "recall", "values": [0.5]}])
    with pytest.raises(ValueError, match="one value per class"):
        BalancedSampler(LABELS, Feedback("class"), seed=1).load_state_dict(short)
    plain = BalancedSampler(LABELS, "class", seed=1)
    with pytest.raises(ValueError, match="strategy"):
        plain.load_state_dict(state)


@pytest.mark.parametrize(
    ("values", "kind", "error", "match"),
    [
        ([0.5, 0.5, 0.5], "recall", ValueError, r"values: expected one value per class \(4"),
        ([0.5, float("nan"), 0.5, 0.5], "recall", ValueError, "nan at class 1"),
        ([0.5, 50.0, 0.5, 0.5], "recall", ValueError, "recalls in \\[0, 1\\].*percentage"),
        ([0.5, -0.1, 0.5, 0.5], "recall", ValueError, "-0.1 at class 1"),
        ([0.5, -0.1, 0.5, 0.5], "loss", ValueError, "losses >= 0, got -0.1 at class 1"),
        ([0.5, float("inf"), 0.5, 0.5], "loss", ValueError, "inf at class 1"),
        (["a", "b", "c", "d"], "recall", TypeError, "values: expected a 1-d sequence"),
        (0.5, "recall", TypeError, "values: expected one number per class"),
        ([0.5] * 4, "accuracy", ValueError, "kind: expected 'recall' or 'loss'"),
    ],
)
def test_bad_values_are_refused(values: Any, kind: Any, error: type, match: str) -> None:
    strategy = Feedback("class")
    sampler = BalancedSampler(LABELS, strategy)  # noqa: F841 (the sampler the updates follow)
    with pytest.raises(error, match=match):
        strategy.update(values, kind=kind)
    assert strategy.history == []


def test_bad_settings_and_uses_are_refused() -> None:
    with pytest.raises(ValueError, match=r"Feedback\.tau"):
        Feedback(tau=-1.0)
    with pytest.raises(ValueError, match=r"Feedback\.mix"):
        Feedback(mix=1.5)
    with pytest.raises(TypeError, match=r"Feedback\.base"):
        Feedback(Feedback())
    alone = Feedback()
    with pytest.raises(ValueError, match=r"epoch: .*pass epoch= explicitly"):
        alone.update([0.5] * 4)
    strategy = Feedback()
    BalancedSampler(LABELS, strategy)
    strategy.update([0.5] * 4, epoch=3)
    with pytest.raises(ValueError, match="an epoch >= 3"):
        strategy.update([0.5] * 4, epoch=2)
    keep = BalancedSampler(LABELS, strategy)  # noqa: F841 (alive: the first is garbage)
    with pytest.raises(ValueError, match="drives no other sampler"):
        BalancedSampler(LABELS, strategy)
    with pytest.raises(ValueError, match="Feedback"):
        ResampledDataset(list(range(80)), Feedback(), labels=LABELS)
    fed = Feedback()
    fed.update([0.5] * 3, epoch=1)
    with pytest.raises(ValueError, match="fed one value per class"):
        make_plan(LABELS, fed)


def test_values_as_a_dict_and_reset() -> None:
    strategy = Feedback("class", mix=1.0)
    sampler = BalancedSampler(["a"] * 5 + ["b"] * 5, strategy)  # noqa: F841
    strategy.update({"b": 0.0, "a": 1.0})
    assert strategy.history[-1]["values"] == [1.0, 0.0]
    strategy.reset()
    assert strategy.history == [] and strategy.share(0) is None


def test_stratified_batches_follow_the_feedback() -> None:
    strategy = Feedback("class", mix=1.0)
    sampler = StratifiedBatchSampler(LABELS, 16, strategy, seed=0)
    list(sampler)
    strategy.update([1.0, 1.0, 0.5, 0.5])
    flat = [i for batch in sampler for i in batch]
    assert Counter(LABELS[flat].tolist()) == {2: 40, 3: 40}


def fed(labels: Any, **kw: Any) -> BalancedSampler:
    """A Feedback sampler whose plan changes at epochs 1 and 3."""
    strategy = Feedback("sqrt", tau=1.0, mix=0.5)
    sampler = BalancedSampler(labels, strategy, **kw)
    strategy.update([0.9, 0.5, 0.7, 0.2, 0.1], epoch=1)
    strategy.update([0.2, 0.9, 0.1, 0.8, 0.5], epoch=3)
    return sampler


@pytest.mark.parametrize("check", list(CHECKS))
def test_conformance_feedback(check: str) -> None:
    CHECKS[check](fed, conformance_labels())


def test_per_class_recall_and_mean() -> None:
    predictions = torch.tensor([0, 1, 1, 2, 2, 2])
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    assert per_class_recall(predictions, targets, 3).tolist() == [0.5, 0.5, 1.0]
    logits = torch.nn.functional.one_hot(predictions, 3).float()
    assert per_class_recall(logits, targets, 3).tolist() == [0.5, 0.5, 1.0]
    means = per_class_mean(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 7.0]), targets, 4)
    assert means[:3].tolist() == [1.5, 3.5, 6.0] and bool(torch.isnan(means[3]))
    with pytest.raises(ValueError, match="targets: expected class ids in"):
        per_class_recall(predictions, targets, 2)
    with pytest.raises(ValueError, match="predictions"):
        per_class_recall(predictions[:3], targets, 3)


def _rank(rank: int, world: int, port: int, out: Any) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        # each rank holds half of the validation set
        predictions = torch.tensor([[0, 1, 2, 3], [0, 0, 2, 2]][rank])
        targets = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]][rank])
        recall = per_class_recall(predictions, targets, 4)
        strategy = Feedback("class", mix=1.0)
        sampler = BalancedSampler(LABELS, strategy, seed=2)
        list(sampler)
        strategy.update(recall)
        out.put((rank, recall.tolist(), list(sampler), sampler.target_counts(1)))
    finally:
        dist.destroy_process_group()


def test_recall_is_combined_across_two_gloo_ranks() -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=HANG_S) for _ in procs)
    for p in procs:
        p.join(timeout=HANG_S)
        assert p.exitcode == 0
    (_, recall_0, share_0, counts_0), (_, recall_1, share_1, counts_1) = results
    assert recall_0 == recall_1 == [1.0, 0.5, 1.0, 0.5]
    assert counts_0 == counts_1 == {0: 0, 1: 40, 2: 0, 3: 40}
    merged = [x for pair in zip(share_0, share_1, strict=True) for x in pair]
    reference = BalancedSampler(LABELS, Feedback("class", mix=1.0), seed=2)
    reference.plan._rule.feedback.update(recall_0, epoch=1)  # type: ignore[attr-defined]
    assert merged == reference.epoch_indices(1).tolist()


def test_inside_a_lightning_trainer() -> None:
    """Feedback from on_validation_epoch_end shapes the next training epoch's draws."""
    pl = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.arange(80, dtype=torch.float32).reshape(80, 1)
    data = TensorDataset(x, torch.as_tensor(LABELS))
    strategy = Feedback("class", tau=1.0, mix=1.0)
    sampler = BalancedSampler(LABELS, strategy, seed=0)
    fed = [[1.0, 1.0, 0.5, 0.5], [0.5, 1.0, 1.0, 0.5], [1.0, 0.0, 1.0, 1.0]]

    class Module(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(1, 4)
            self.seen: list[list[int]] = []

        def on_train_epoch_start(self) -> None:
            self.seen.append([])

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            self.seen[-1].extend(batch[0].reshape(-1).long().tolist())
            return self.layer(batch[0]).sum()

        def validation_step(self, batch: Any, _: int) -> None:
            pass

        def on_validation_epoch_end(self) -> None:
            if not self.trainer.sanity_checking:
                strategy.update(fed[self.current_epoch], kind="recall")

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.0)

    module = Module()
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(
        module,
        DataLoader(data, batch_size=16, sampler=sampler),
        DataLoader(data, batch_size=40),
    )
    assert [h["epoch"] for h in strategy.history] == [1, 2, 3]
    composition = [dict(Counter(LABELS[seen].tolist())) for seen in module.seen]
    assert composition == [
        {0: 20, 1: 20, 2: 20, 3: 20},
        {2: 40, 3: 40},  # difficulty 0, 0, .5, .5
        {0: 40, 3: 40},
    ]
