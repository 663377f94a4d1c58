"""WeightedSampler: distributions, the exact mode, sharding, weights that change, resume.

The conformance suite runs on it from tests/test_conformance.py (it is a public sampler).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy import stats
from torch.utils.data import WeightedRandomSampler

from torch_balance import WeightedSampler
from torch_balance.draws.weighted import ExactLayout, iid_draws, successive_draws
from torch_balance.testing import IndexDataset

P_MIN = 1e-4  # chi-square tests on fixed seeds: a correct sampler passes far above this


def small_weights(n: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, generator=g, dtype=torch.float64) ** 2 + 0.05
    w[3] = 0.0
    w[17] = 0.0
    return w


def _counts(indices: Any, n: int) -> np.ndarray:
    return np.bincount(np.asarray(indices, dtype=np.int64), minlength=n)


# -- replacement=True: i.i.d., P(i) proportional to w_i -----------------------------------


def test_iid_frequencies_match_the_weights_chi_square() -> None:
    w = small_weights()
    sampler = WeightedSampler(w, num_samples=20_000, seed=1)
    counts = sum(_counts(sampler.epoch_indices(e), len(w)) for e in range(5))
    assert counts[3] == counts[17] == 0  # zero weights are never drawn
    positive = w.numpy() > 0
    expected = w.numpy()[positive] / float(w.sum()) * counts.sum()
    assert stats.chisquare(counts[positive], expected).pvalue > P_MIN


def test_iid_chi_square_can_fail() -> None:
    """The same test rejects draws from other weights (the test above can fail)."""
    w = small_weights()
    other = w.clone()
    other[:5] *= 1.5
    counts = _counts(WeightedSampler(other, num_samples=100_000, seed=1).epoch_indices(0), len(w))
    positive = w.numpy() > 0
    expected = w.numpy()[positive] / float(w.sum()) * counts.sum()
    assert stats.chisquare(counts[positive], expected).pvalue < P_MIN


def test_iid_draws_are_independent_of_position() -> None:
    """An epoch is an i.i.d. sequence: its first and second half hold the same mix, and
    consecutive pairs are not more often equal than chance."""
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    epoch = WeightedSampler(w, num_samples=40_000, seed=2).epoch_indices(0).numpy()
    halves = np.stack([_counts(epoch[:20_000], 4), _counts(epoch[20_000:], 4)])
    assert stats.chi2_contingency(halves).pvalue > P_MIN
    same = float((epoch[1:] == epoch[:-1]).mean())
    p = (w / w.sum()).numpy()
    assert abs(same - float((p**2).sum())) < 0.01


def test_parity_with_weighted_random_sampler_distribution() -> None:
    """The same distribution as torch's WeightedRandomSampler (not the same stream)."""
    w = small_weights(25, seed=3)
    theirs = WeightedRandomSampler(
        w, 60_000, replacement=True, generator=torch.Generator().manual_seed(0)
    )
    ours = WeightedSampler(w, 60_000, seed=0)
    table = np.stack([_counts(list(theirs), len(w)), _counts(list(ours), len(w))])
    table = table[:, table.sum(axis=0) > 0]
    assert stats.chi2_contingency(table).pvalue > P_MIN
    assert table.shape[1] == 23  # the two zero weights: never drawn by either


def test_no_2_24_limit() -> None:
    n = 2**24 + 1
    w = torch.ones(n, dtype=torch.float64)
    w[:-1] = 0.0  # only the last sample can be drawn: the lookup reaches the end
    with pytest.raises(RuntimeError, match="2\\^24"):
        next(iter(WeightedRandomSampler(w, 4)))
    assert list(WeightedSampler(w, 4, seed=0)) == [n - 1] * 4
    assert list(WeightedSampler(w, 1, replacement=False, seed=0)) == [n - 1]


def test_iid_kernel_never_draws_zero_weights_at_the_edges() -> None:
    w = torch.tensor([0.0, 0.0, 1e-300, 5.0, 0.0, 0.0], dtype=torch.float64)
    picks = iid_draws(w, 100_000, torch.Generator().manual_seed(0))
    assert set(picks.tolist()) <= {2, 3}


# -- replacement=False: successive sampling, as torch.multinomial -------------------------


def _pair_counts(pairs: list[tuple[int, int]], n: int) -> np.ndarray:
    table = np.zeros((n, n), dtype=np.int64)
    for a, b in pairs:
        table[a, b] += 1
    return table.reshape(-1)


def test_without_replacement_matches_torch_multinomial() -> None:
    """The (first, second) draws against the successive-sampling probabilities
    w_i / W * w_j / (W - w_i), and against torch.multinomial(replacement=False)."""
    w = torch.tensor([1.0, 2.0, 0.0, 4.0, 8.0, 0.5], dtype=torch.float64)
    n, trials = len(w), 12_000
    g = torch.Generator().manual_seed(0)
    ours = [tuple(successive_draws(w, 2, g).tolist()) for _ in range(trials)]
    h = torch.Generator().manual_seed(1)
    theirs = [
        tuple(torch.multinomial(w, 2, replacement=False, generator=h).tolist())
        for _ in range(trials)
    ]
    p = (w / w.sum()).numpy()
    expected = np.array(
        [[p[i] * p[j] / (1 - p[i]) if i != j else 0.0 for j in range(n)] for i in range(n)]
    ).reshape(-1)
    keep = expected > 0
    ours_table = _pair_counts(ours, n)  # type: ignore[arg-type]
    assert ours_table[~keep].sum() == 0  # no repeats, no zero weights
    assert stats.chisquare(ours_table[keep], expected[keep] * trials).pvalue > P_MIN
    both = np.stack([ours_table[keep], _pair_counts(theirs, n)[keep]])  # type: ignore[arg-type]
    assert stats.chi2_contingency(both).pvalue > P_MIN
    # and the first draw of the sampler's epochs (its own stream) against w / W
    sampler = WeightedSampler(w, 3, replacement=False, seed=4)
    first = _counts([int(sampler.epoch_indices(e)[0]) for e in range(3000)], n)
    assert stats.chisquare(first[p > 0], p[p > 0] * 3000).pvalue > P_MIN


def test_without_replacement_epochs_hold_distinct_positive_samples() -> None:
    w = small_weights()
    sampler = WeightedSampler(w, seed=0, replacement=False)
    assert len(sampler) == 38  # default: the positive weights
    for epoch in range(3):
        drawn = sampler.epoch_indices(epoch).tolist()
        assert len(set(drawn)) == 38 and not {3, 17} & set(drawn)


def test_without_replacement_refuses_more_than_the_positive_weights() -> None:
    with pytest.raises(ValueError, match=r"weights: expected at least num_samples=39 positive"):
        WeightedSampler(small_weights(), 39, replacement=False)
    sampler = WeightedSampler(small_weights(), 30, replacement=False)
    few = torch.zeros(40, dtype=torch.float64)
    few[:10] = 1.0
    with pytest.raises(ValueError, match="10 positive weights"):
        sampler.set_weights(few)


# -- the exact mode ------------------------------------------------------------------------


def _shares(w: torch.Tensor, k: int) -> torch.Tensor:
    return w * k / w.sum()


@pytest.mark.parametrize("k", [30, 257, 1000])
def test_exact_counts_are_floor_or_ceil_and_converge(k: int) -> None:
    w = small_weights(200, seed=5) ** 2
    sampler = WeightedSampler(w, k, exact=True, seed=3)
    share = _shares(w, k)
    running = torch.zeros_like(share)
    worst = 0.0
    layout = sampler._exact_layout()
    for epoch in range(600):
        copies = layout.copies(epoch)
        assert int(copies.sum()) == k
        assert bool(((copies == share.floor()) | (copies == share.ceil())).all()), epoch
        running += copies
        worst = max(worst, float((running - (epoch + 1) * share).abs().max()))
    # the running count of every sample stays within a few copies of its share (measured
    # 2.96 over 1000 epochs of 500 samples); i.i.d. draws wander by sqrt(epochs * share)
    assert worst <= 3.5
    assert float((running / 600 - share).abs().max()) < 3.5 / 600
    # the sampler hands out exactly those copies
    for epoch in (0, 7):
        assert torch.equal(sampler.sample_counts(epoch), layout.copies(epoch))


def test_exact_convergence_check_can_fail() -> None:
    """i.i.d. draws of the same shares drift much further than the exact mode's bound."""
    w = small_weights(200, seed=5) ** 2
    sampler = WeightedSampler(w, 257, seed=3)
    running = sum(sampler.sample_counts(e).double() for e in range(300))
    assert float((running - 300 * _shares(w, 257)).abs().max()) > 10


def test_exact_at_most_once_and_its_refusal() -> None:
    w = torch.tensor([1.0, 2.0, 0.0, 1.0, 3.0, 1.0], dtype=torch.float64)
    sampler = WeightedSampler(w, 2, exact=True, replacement=False, seed=0)
    for epoch in range(50):
        drawn = sampler.epoch_indices(epoch).tolist()
        assert len(drawn) == len(set(drawn)) == 2 and 2 not in drawn
    with pytest.raises(
        ValueError, match=r"a share of 1.125 copies at index 4.*num_samples <= 2.66667"
    ):
        WeightedSampler(w, 3, exact=True, replacement=False)


def test_exact_layout_handles_integer_shares_and_rounding() -> None:
    layout = ExactLayout(torch.ones(7, dtype=torch.float64), 14, 0)
    assert layout.copies(3).tolist() == [2] * 7
    w = torch.full((1000,), 0.1, dtype=torch.float64)  # 0.1 is not exact in binary
    layout = ExactLayout(w, 333, 1)
    assert all(int(layout.copies(e).sum()) == 333 for e in range(20))


# -- sharding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{}, {"replacement": False, "num_samples": 30}, {"exact": True, "num_samples": 101}],
    ids=["iid", "without-replacement", "exact"],
)
@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_together_are_the_one_process_epoch(options: dict, drop_last: bool) -> None:
    w = small_weights()
    whole = WeightedSampler(w, seed=8, **options).epoch_indices(2).tolist()
    for world in (2, 3):
        shards = []
        for rank in range(world):
            sampler = WeightedSampler(
                w, seed=8, num_replicas=world, rank=rank, drop_last=drop_last, **options
            )
            sampler.set_epoch(2)
            shards.append(list(sampler))
        assert len({len(s) for s in shards}) == 1
        merged = [i for step in zip(*shards, strict=True) for i in step]
        expected = whole[: len(merged)] if drop_last else (whole * 2)[: len(merged)]
        assert merged == expected


# -- weights that change -------------------------------------------------------------------


def test_set_weights_applies_from_the_next_epoch() -> None:
    w = small_weights()
    sampler = WeightedSampler(w, seed=0)
    items = iter(sampler)
    head = [next(items) for _ in range(5)]
    only_zero = torch.zeros(40, dtype=torch.float64)
    only_zero[0] = 1.0
    sampler.set_weights(only_zero)  # mid-epoch: the epoch keeps its weights
    rest = list(items)
    assert head + rest == WeightedSampler(w, seed=0).epoch_indices(0).tolist()
    assert torch.equal(sampler.weights, only_zero)  # the pass ended: the new weights apply
    assert set(sampler) == {0}


def test_set_weights_between_epochs_and_after_set_epoch() -> None:
    sampler = WeightedSampler(small_weights(), seed=0)
    list(sampler)
    sampler.set_weights(torch.ones(40, dtype=torch.float64))
    assert (
        sampler.state_dict()["weights"] != WeightedSampler(small_weights()).state_dict()["weights"]
    )
    sampler.set_epoch(5)
    reference = WeightedSampler(torch.ones(40, dtype=torch.float64), seed=0)
    assert list(sampler) == reference.epoch_indices(5).tolist()


def test_update_weights_single_process() -> None:
    sampler = WeightedSampler(torch.ones(6, dtype=torch.float64), seed=0)
    new = sampler.update_weights(torch.tensor([1, 1, 4]), torch.tensor([2.0, 4.0, 0.5]))
    assert new.tolist() == [1.0, 3.0, 1.0, 1.0, 0.5, 1.0]
    assert sampler.update_weights([1, 1], [2.0, 4.0], reduce="max").tolist()[1] == 4.0
    assert sampler.update_weights([1, 1], [2.0, 4.0], reduce="min").tolist()[1] == 2.0
    assert sampler.update_weights([1, 1], [2.0, 4.0], reduce="sum").tolist()[1] == 6.0
    assert sampler.update_weights([1], [2.0], momentum=0.25).tolist()[1] == 5.0
    assert sampler.update_weights([], []).tolist() == sampler.weights.tolist()
    assert sampler.update_weights(np.array([0, 5]), 0.0).tolist()[::5] == [0.0, 0.0]


@pytest.mark.parametrize(
    ("indices", "values", "kwargs", "kind", "match"),
    [
        (
            [0, 9],
            [1.0, 1.0],
            {},
            ValueError,
            r"indices: expected sample indices in \[0, 6\), got 9",
        ),
        ([-1], [1.0], {}, ValueError, "got -1 at position 0"),
        ([0.5], [1.0], {}, TypeError, "indices: expected integer sample indices"),
        ([[0, 1]], [1.0, 1.0], {}, ValueError, "indices: expected a 1-d"),
        ([0, 1], [1.0], {}, ValueError, r"values: expected one value per index \(2\)"),
        ([0, 1], [1.0, float("nan")], {}, ValueError, "values: expected finite values >= 0"),
        ([0], [-2.0], {}, ValueError, "-2.0 at index 0"),
        ([0], ["a"], {}, TypeError, "values: expected real numbers"),
        ([0], [1.0], {"reduce": "median"}, ValueError, "reduce: expected 'mean'"),
        ([0], [1.0], {"momentum": 0}, ValueError, r"momentum: expected a number in \(0, 1\]"),
        ([0], [1.0], {"momentum": "x"}, TypeError, "momentum"),
    ],
)
def test_update_weights_refuses_bad_reports(
    indices: Any, values: Any, kwargs: dict, kind: type, match: str
) -> None:
    sampler = WeightedSampler(torch.ones(6, dtype=torch.float64), seed=0)
    with pytest.raises(kind, match=match):
        sampler.update_weights(indices, values, **kwargs)
    assert sampler.weights.tolist() == [1.0] * 6


def test_update_weights_refuses_all_zero_result() -> None:
    sampler = WeightedSampler(torch.ones(3, dtype=torch.float64), seed=0)
    with pytest.raises(ValueError, match="weights after update_weights: expected at least one"):
        sampler.update_weights([0, 1, 2], 0.0)


# -- bad weights and arguments -------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "kind", "match"),
    [
        (
            [1.0, -1.0, 2.0],
            ValueError,
            r"weights: expected finite weights >= 0, got -1.0 at index 1",
        ),
        ([1.0, 2.0, float("nan")], ValueError, "nan at index 2"),
        (np.array([1.0, np.inf]), ValueError, "inf at index 1"),
        (
            torch.zeros(4),
            ValueError,
            "weights: expected at least one weight > 0, got every weight 0",
        ),
        ([], ValueError, "weights: expected at least one weight"),
        (["a", 1.0], TypeError, "weights: expected real numbers, got 'a' at index 0"),
        ([1.0, None], TypeError, "None at index 1"),
        ("abc", TypeError, "weights: expected a 1-d sequence"),
        (
            torch.ones(2, 3),
            ValueError,
            r"weights: expected a 1-d sequence of weights, got shape \(2, 3\)",
        ),
        (torch.tensor([True, False]), TypeError, "weights: expected real numbers"),
    ],
)
def test_bad_weights_are_refused_by_name(weights: Any, kind: type, match: str) -> None:
    with pytest.raises(kind, match=match):
        WeightedSampler(weights)


def test_set_weights_refuses_wrong_length_and_bad_values() -> None:
    sampler = WeightedSampler([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"weights: expected one weight per sample \(3\), got 4"):
        sampler.set_weights([1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="nan at index 0"):
        sampler.set_weights([float("nan"), 1.0, 1.0])
    assert sampler.weights.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("kwargs", "kind", "match"),
    [
        ({"num_samples": 0}, ValueError, "num_samples: expected an integer >= 1, got 0"),
        ({"num_samples": 2.5}, TypeError, "num_samples: expected an integer"),
        ({"num_samples": True}, TypeError, "num_samples"),
        ({"replacement": 1}, TypeError, "replacement: expected True or False"),
        ({"exact": "yes"}, TypeError, "exact: expected True or False"),
        ({"seed": -1}, ValueError, "seed"),
        ({"num_samples": 10**15}, ValueError, "num_samples: expected an epoch that fits in memory"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs: dict, kind: type, match: str) -> None:
    with pytest.raises(kind, match=match):
        WeightedSampler([1.0, 2.0], **kwargs)


# -- checkpoints ---------------------------------------------------------------------------


def test_state_for_other_weights_is_refused_and_weights_state_restores() -> None:
    w = small_weights()
    sampler = WeightedSampler(w, seed=0)
    items = iter(sampler)
    head = [next(items) for _ in range(7)]
    sampler.set_weights(torch.ones(40, dtype=torch.float64))  # waits for the next epoch
    state, weights_state = sampler.state_dict(), sampler.weights_state_dict()
    rest = list(items)
    following = list(sampler)  # the next epoch, with the new weights

    fresh = WeightedSampler(torch.full((40,), 2.0, dtype=torch.float64), seed=0)
    with pytest.raises(ValueError, match=r"state_dict\['weights'\]: expected a state saved for"):
        fresh.load_state_dict(state)
    fresh.load_weights_state_dict(weights_state)
    fresh.load_state_dict(state)
    assert list(fresh) == rest
    assert list(fresh) == following
    assert head + rest == WeightedSampler(w, seed=0).epoch_indices(0).tolist()


def test_load_weights_state_dict_refuses_garbage() -> None:
    sampler = WeightedSampler([1.0, 2.0])
    with pytest.raises(TypeError, match="a dict from weights_state_dict"):
        sampler.load_weights_state_dict([1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"state\['weights'\]: expected one weight per sample"):
        sampler.load_weights_state_dict({"weights": torch.ones(3)})


def _stateful_loader(weights: torch.Tensor, workers: int) -> tuple[Any, WeightedSampler]:
    sdl = pytest.importorskip("torchdata.stateful_dataloader")
    sampler = WeightedSampler(weights, 30, seed=11)
    loader = sdl.StatefulDataLoader(
        IndexDataset(len(weights)), sampler=sampler, batch_size=4, num_workers=workers
    )
    return loader, sampler


def _train(
    loader: Any, sampler: WeightedSampler, epochs: int, stop_after: int | None = None
) -> tuple[list[list[int]], Any]:
    """Epochs of a loop that feeds a per-sample "loss" back at every epoch's end."""
    seen: list[list[int]] = []
    while sampler.epoch < epochs:
        epoch_items: list[int] = []
        for batch in loader:
            seen.append(batch.tolist())
            epoch_items += batch.tolist()
            if len(seen) == stop_after:
                return seen, (loader.state_dict(), sampler.weights_state_dict())
        losses = [1.0 + (i * 7 + sampler.epoch) % 5 for i in epoch_items]
        sampler.update_weights(epoch_items, losses)
    return seen, (loader.state_dict(), sampler.weights_state_dict())


@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_resumes_mid_epoch_with_changing_weights(workers: int) -> None:
    w = small_weights()
    reference, _ = _train(*_stateful_loader(w, workers), epochs=3)
    per = 8  # 30 indices in batches of 4
    assert len(reference) == 3 * per
    for cut in (3, per + 5):
        head, (state, weights_state) = _train(*_stateful_loader(w, workers), 3, stop_after=cut)
        loader, sampler = _stateful_loader(w, workers)
        sampler.load_weights_state_dict(weights_state)
        loader.load_state_dict(state)
        # the interrupted epoch's losses are lost with the process: report what it saw
        done = [i for batch in head[(cut // per) * per :] for i in batch]
        rest: list[list[int]] = []
        partial = []
        for batch in loader:
            rest.append(batch.tolist())
            partial += batch.tolist()
        items = done + partial
        sampler.update_weights(items, [1.0 + (i * 7 + sampler.epoch) % 5 for i in items])
        tail, _ = _train(loader, sampler, 3)
        assert head + rest + tail == reference, f"checkpoint after {cut} batches"


# -- a real two-process run over gloo ------------------------------------------------------

WEIGHTS = torch.linspace(0.5, 3.0, 23, dtype=torch.float64)


def _gloo_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    record: dict[str, Any] = {}
    try:
        sampler = WeightedSampler(WEIGHTS, 21, seed=5)
        sampler.set_epoch(0)
        seen = list(sampler)
        record["epoch0"] = seen
        values = [float((i % 4) + 1 + rank) for i in seen]  # ranks disagree on shared samples
        record["values"] = values
        new = sampler.update_weights(torch.tensor(seen), torch.tensor(values))
        record["weights"] = new.tolist()
        sampler.set_epoch(1)  # the digests agree: no error
        record["epoch1"] = list(sampler)
        # one rank's report is malformed: every rank raises instead of hanging
        try:
            sampler.update_weights([0] if rank else [99], [1.0])
        except ValueError as error:
            record["bad_report"] = str(error)
        # the ranks' weights drift apart: set_epoch runs no collective and passes; the next
        # pass (every rank starts it in step) refuses on every rank, and so does a report
        drift = sampler.weights.clone()
        if rank == 1:
            drift[3] += 1.0
        sampler.set_weights(drift)
        sampler.set_epoch(2)
        record["set_epoch_passed"] = True
        try:
            list(sampler)
        except ValueError as error:
            record["mismatch"] = str(error)
        try:
            sampler.update_weights([0], [1.0])
        except ValueError as error:
            record["update_mismatch"] = str(error)
    finally:
        dist.destroy_process_group()
        Path(out_dir, f"{rank}.json").write_text(json.dumps(record))


def test_two_process_gloo_update_weights_and_digest_check(tmp_path: Path) -> None:
    world = 2
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_gloo_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world)
    ranks = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(world)]
    # epoch 0: the ranks together are the one-process epoch (padded)
    whole = WeightedSampler(WEIGHTS, 21, seed=5).epoch_indices(0).tolist()
    merged = [i for pair in zip(ranks[0]["epoch0"], ranks[1]["epoch0"], strict=True) for i in pair]
    assert merged == (whole * 2)[: len(merged)]
    # the update: every report of a sample averaged, across ranks; the same on both ranks
    reports: dict[int, list[float]] = {}
    for rank in ranks:
        for i, v in zip(rank["epoch0"], rank["values"], strict=True):
            reports.setdefault(i, []).append(v)
    expected = WEIGHTS.tolist()
    for i, vs in reports.items():
        expected[i] = sum(vs) / len(vs)
    assert any(len({*vs}) > 1 for vs in reports.values())  # reports did differ across ranks
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert np.allclose(ranks[0]["weights"], expected, rtol=0, atol=1e-12)
    # epoch 1 is drawn with the combined weights on both ranks
    after = WeightedSampler(torch.tensor(ranks[0]["weights"], dtype=torch.float64), 21, seed=5)
    whole = after.epoch_indices(1).tolist()
    merged = [i for pair in zip(ranks[0]["epoch1"], ranks[1]["epoch1"], strict=True) for i in pair]
    assert merged == (whole * 2)[: len(merged)]
    assert "99 at position 0" in ranks[0]["bad_report"]
    assert "refused on rank(s) [0]" in ranks[1]["bad_report"]
    for rank in ranks:
        assert rank["set_epoch_passed"]
        for key in ("mismatch", "update_mismatch"):
            assert rank[key].startswith("weights: expected the same weights on every rank")
            assert "rank(s) [1]" in rank[key]


def test_counter_of_sample_counts_matches_epoch() -> None:
    sampler = WeightedSampler(small_weights(), 64, seed=2)
    counts = sampler.sample_counts(3)
    assert Counter(sampler.epoch_indices(3).tolist()) == {
        i: int(c) for i, c in enumerate(counts.tolist()) if c
    }
    assert "WeightedSampler(num_weights=40, num_samples=64" in repr(sampler)


# -- the i.i.d. epoch in chunks ------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "world", "drop_last"),
    [(23, 1, False), (23, 3, False), (23, 4, True), (5, 7, False), (16, 4, False)],
)
@pytest.mark.parametrize("start", [0, 2])
def test_iter_shard_chunks_agrees_with_iter_shard(
    length: int, world: int, drop_last: bool, start: int
) -> None:
    from torch_balance.sharding import iter_shard, iter_shard_chunks, shard_length

    epoch = torch.randperm(length, generator=torch.Generator().manual_seed(length)) + 100
    start = min(start, shard_length(length, world, drop_last))
    for size in (1, 3, 4, 64):
        for rank in range(world):

            def chunk(c: int, size: int = size) -> torch.Tensor:
                return epoch[c * size : (c + 1) * size]

            order = torch.arange(length)
            ref = [*chain(*iter_shard(epoch, order, world, rank, drop_last, start))]
            for helper in (False, True):  # chunks prefetched on threads or drawn in line
                ours = [
                    *chain(
                        *iter_shard_chunks(
                            chunk, size, length, world, rank, drop_last, start, helper=helper
                        )
                    )
                ]
                assert ours == ref, (size, rank, helper)


def test_multi_chunk_epoch_shards_and_resumes() -> None:
    w = small_weights(50)
    k = 2_200_000  # three chunks of the i.i.d. epoch
    whole = WeightedSampler(w, k, seed=6).epoch_indices(1)
    assert whole.shape[0] == k
    ranks = []
    for rank in range(2):
        sampler = WeightedSampler(w, k, seed=6, num_replicas=2, rank=rank)
        sampler.set_epoch(1)
        ranks.append(torch.tensor(list(sampler)))
    assert torch.equal(torch.stack(ranks, 1).reshape(-1), whole)
    run = WeightedSampler(w, k, seed=6)
    run.set_epoch(1)
    items = iter(run)
    for _ in range(1_500_000):
        next(items)
    resumed = WeightedSampler(w, k, seed=6)
    resumed.load_state_dict(run.state_dict())
    assert torch.equal(torch.tensor(list(resumed)), whole[1_500_000:])
    counts = _counts(whole, 50)
    positive = w.numpy() > 0
    assert (
        stats.chisquare(counts[positive], w.numpy()[positive] / float(w.sum()) * k).pvalue > P_MIN
    )


def _prefetch_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("torch_balance")]


def test_chunk_threads_are_joined_when_the_iterator_is_closed_or_fails() -> None:
    from torch_balance.sharding import iter_shard_chunks

    epoch = torch.arange(1000)

    def chunk(c: int) -> torch.Tensor:
        return epoch[c * 10 : (c + 1) * 10]

    items = iter_shard_chunks(chunk, 10, 1000, 1, 0, False, helper=True)
    next(items)
    assert _prefetch_threads(), "no helper threads ran: this test would prove nothing"
    items.close()
    assert _prefetch_threads() == []

    def broken(c: int) -> torch.Tensor:
        if c == 5:
            raise RuntimeError("chunk 5 failed")
        return chunk(c)

    with pytest.raises(RuntimeError, match="chunk 5 failed"):
        list(iter_shard_chunks(broken, 10, 1000, 1, 0, False, helper=True))
    assert _prefetch_threads() == []


def test_prefetch_returns_fn_of_each_item_in_any_order() -> None:
    from torch_balance._threads import Prefetch

    with Prefetch(lambda i: i * 10, 8, helper=True) as ahead:
        assert [ahead(i) for i in (0, 1, 5, 2, 7, 0, 3)] == [0, 10, 50, 20, 70, 0, 30]
    assert _prefetch_threads() == []
    line = Prefetch(lambda i: i + 1, 3, helper=False)
    assert [line(2), line(0)] == [3, 1] and _prefetch_threads() == []
