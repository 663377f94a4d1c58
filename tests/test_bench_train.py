"""bench.train: the model, the budget's schedule and the training loop."""

from __future__ import annotations

import math

import pytest
import torch

from torch_balance.bench.train import Budget, SmallCNN, train


def test_model_and_training_leave_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a, b = SmallCNN(1, 3, 8, seed=5), SmallCNN(1, 3, 8, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = SmallCNN(1, 3, 8, seed=6)
    assert not torch.equal(a.head.weight, c.head.weight)
    assert torch.equal(state, torch.get_rng_state()), "model init must not use the global RNG"
    x = torch.randint(0, 255, (12, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    y = torch.arange(12) % 3

    def feed(epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(x[:6], y[:6]), (x[6:], y[6:])]

    state = torch.get_rng_state()
    epochs = train(a, feed, steps=3, budget=Budget(3, 6), device=torch.device("cpu"))
    assert epochs == 2
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("steps,batch_size,n_train", [(400, 64, 1000), (40, 64, 700), (7, 32, 500)])
def test_budget_derives_the_progressive_and_deferred_epochs(
    steps: int, batch_size: int, n_train: int
) -> None:
    budget = Budget(steps, batch_size)
    per_epoch = math.ceil(n_train / batch_size)
    assert budget.epochs_spanned(n_train) == max(1, math.ceil(steps / per_epoch))
    assert budget.decay_step == max(1, round(0.8 * steps))
    assert budget.decay_epoch(n_train) == max(1, budget.decay_step // per_epoch)
    # The decay happens inside the run: the switch epoch is one the run reaches.
    assert budget.decay_epoch(n_train) <= budget.epochs_spanned(n_train)


def test_batched_gathering_equals_reading_item_by_item() -> None:
    from torch.utils.data import TensorDataset, default_collate

    from torch_balance import ResampledDataset
    from torch_balance.bench.train import take

    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 255, (30, 1, 4, 4), dtype=torch.uint8, generator=gen)
    y = torch.arange(30) % 3
    plain = TensorDataset(x, y)
    resampled = ResampledDataset(plain, "under", labels=y.numpy(), seed=3)
    for dataset in (plain, resampled):
        rows = [len(dataset) - 1, 0, 2, 2]
        by_item = default_collate([dataset[i] for i in rows])
        batched = take(dataset, rows)
        assert all(torch.equal(a, b) for a, b in zip(batched, by_item, strict=True))
        assert batched[0].dtype == torch.uint8 and batched[1].dtype == torch.int64


def test_feeds_leave_the_global_rng_alone_and_shuffle_per_epoch() -> None:
    from torch.utils.data import TensorDataset

    from torch_balance import BalancedSampler
    from torch_balance.bench.train import sampler_feed, shuffle_feed

    data = TensorDataset(torch.zeros(40, 1, 2, 2), torch.arange(40))
    state = torch.get_rng_state()
    sampled = sampler_feed(data, BalancedSampler((torch.arange(40) % 4).numpy(), seed=0), 16)
    assert sum(len(yb) for _, yb in sampled(0)) == 40
    shuffled = shuffle_feed(data, 16, 0, 5)
    first, again, second = ([yb for _, yb in shuffled(e)] for e in (0, 0, 1))
    assert torch.equal(torch.cat(first), torch.cat(again))
    assert not torch.equal(torch.cat(first), torch.cat(second))
    assert sorted(torch.cat(second).tolist()) == list(range(40))
    assert torch.equal(state, torch.get_rng_state())
