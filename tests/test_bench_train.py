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
