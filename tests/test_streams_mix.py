"""BalancedMix over sources: shares, torchdata's three stop rules, ranks and workers, resume,
class-balanced sources inside the mix, and bad input."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pytest

from tests.conftest import run_slots
from torch_balance import BalancedIterableDataset, BalancedMix

A = [f"a{i}" for i in range(10)]
B = [f"b{i}" for i in range(30)]
CHI2_999_DF1 = 10.83


def source_of(item: str) -> str:
    return item[0]


# ---- the three stop rules (torchdata's StopCriteria) --------------------------------------


def test_all_emits_every_sample_of_every_source_once() -> None:
    for seed in range(5):
        out = list(BalancedMix([A, B], proportions=[1, 1], stop="all", seed=seed))
        assert sorted(out) == sorted(A + B)


def test_first_exhausted_ends_when_the_first_source_runs_out() -> None:
    for seed in range(5):
        mix = BalancedMix([A, B], proportions=[1, 1], stop="first_exhausted", seed=seed)
        out = list(mix)
        counts = Counter(source_of(x) for x in out)
        assert counts["a"] == 10 and sorted(x for x in out if x[0] == "a") == sorted(A)
        assert counts["b"] < 30 and len(set(out)) == len(out)  # nothing repeated
        stats = mix.stats()
        assert stats["exhausted"] == {0: True, 1: False} and stats["cycles"] == {0: 0, 1: 0}


def test_cycle_until_all_restarts_sources_until_every_one_has_run_out() -> None:
    for seed in range(5):
        mix = BalancedMix([A, B], proportions=[1, 1], seed=seed)  # the default rule
        out = list(mix)
        counts = Counter(out)
        assert sorted(x for x in counts if x[0] == "b") == sorted(B)
        assert all(counts[b] == 1 for b in B)  # b ran out once: the pass ended there
        assert all(counts[a] >= 1 for a in A) and sum(counts[a] for a in A) > 10
        stats = mix.stats()
        assert stats["exhausted"] == {0: True, 1: True} and stats["cycles"][0] >= 1
        assert stats["cycles"][1] == 0


def test_a_source_of_share_zero_never_comes_and_does_not_hold_the_pass() -> None:
    out = list(BalancedMix({"a": A, "b": B}, proportions=[1, 0]))
    assert sorted(out) == sorted(A)


# ---- shares ---------------------------------------------------------------------------------


def test_shares_by_chi_square_under_epoch_length() -> None:
    big = [f"x{i}" for i in range(50)]
    small = [f"y{i}" for i in range(5)]
    mix = BalancedMix([big, small], proportions=[0.7, 0.3], epoch_length=4000, seed=3)
    out = list(mix)
    assert len(out) == len(mix) == 4000
    observed = np.array([sum(x[0] == "x" for x in out), sum(x[0] == "y" for x in out)])
    expected = np.array([0.7, 0.3]) * 4000
    assert float(((observed - expected) ** 2 / expected).sum()) < CHI2_999_DF1
    assert mix.stats()["total_variation"] < 0.03
    wrong = np.array([0.75, 0.25]) * 4000
    assert float(((observed - wrong) ** 2 / wrong).sum()) > CHI2_999_DF1


def test_temperature_uses_the_sizes() -> None:
    sources = {"big": [0] * 900, "small": [1] * 100}
    assert BalancedMix(sources, temperature=1).target_shares() == pytest.approx(
        {"big": 0.9, "small": 0.1}
    )
    assert BalancedMix(sources, temperature=math.inf).target_shares() == {
        "big": 0.5,
        "small": 0.5,
    }
    given = BalancedMix([iter([]), iter([])], temperature=2.0, counts=[400, 100])
    assert given.target_shares() == pytest.approx({0: 2 / 3, 1: 1 / 3})


# ---- class-balanced sources inside the mix --------------------------------------------------


def labelled(prefix: str, labels: list[int]) -> list[tuple[str, int]]:
    return [(f"{prefix}{i}", y) for i, y in enumerate(labels)]


def test_a_balanced_source_keeps_its_class_mix_inside_the_mix() -> None:
    labels = [0] * 40 + [1] * 4
    web = labelled("w", labels)
    balanced = BalancedIterableDataset(web, "over", manifest={"web": labels}, seed=1)
    plain = labelled("p", [2] * 20)
    mix = BalancedMix({"web": balanced, "plain": plain}, proportions=[1, 1], stop="all")
    out = list(mix)
    from_web = Counter(y for x, y in out if x[0] == "w")
    assert from_web == balanced.target_counts() == {0: 40, 1: 40}
    assert Counter(x for x, _ in out if x[0] == "p") == Counter(x for x, _ in plain)
    assert BalancedMix([balanced, plain], temperature=1).target_shares() == pytest.approx(
        {0: 0.8, 1: 0.2}
    )  # a balanced stream counts as its epoch (80), the plain one as its length (20)


# ---- ranks, workers, resume -----------------------------------------------------------------


def test_ranks_and_workers_emit_their_exact_share_of_epoch_length() -> None:
    def make(**kw: Any) -> BalancedMix:
        return BalancedMix([A, B], proportions=[1, 3], epoch_length=25, seed=5, **kw)

    parts = run_slots(make, 2, 2)
    assert [len(parts[r, 0]) + len(parts[r, 1]) for r in range(2)] == [25, 25]
    assert [len(parts[0, w]) for w in range(2)] == [13, 12]
    assert parts == run_slots(make, 2, 2)  # a pure function of (seed, epoch, rank, worker)
    assert parts[0, 0] != parts[1, 0]
    # with fewer shards than readers, each reader reads its own samples of each source
    assert not set(parts[0, 0]) & set(parts[1, 1])


def test_more_than_one_rank_needs_epoch_length() -> None:
    with pytest.raises(ValueError, match="epoch_length: expected a fixed number of samples"):
        list(BalancedMix([A, B], proportions=[1, 1], num_replicas=2, rank=0))


@pytest.mark.parametrize("stop", ["cycle_until_all", "all", "first_exhausted"])
def test_resume_mid_pass_continues_exactly(stop: str) -> None:
    def make() -> BalancedMix:
        return BalancedMix([A, B], proportions=[2, 1], stop=stop, seed=7)

    whole = list(make())
    for cut in (1, len(whole) // 2, len(whole) - 1):
        first = make()
        it = iter(first)
        head = [next(it) for _ in range(cut)]
        state = first.state_dict()
        second = make()
        second.load_state_dict(state)
        assert head + list(second) == whole, f"resumed after {cut}"


def test_resume_through_stateful_dataloader_with_workers() -> None:
    sdl = pytest.importorskip("torchdata.stateful_dataloader")

    def make() -> BalancedMix:
        return BalancedMix({"a": A, "b": B}, proportions=[1, 1], epoch_length=40, seed=2)

    def loader(stream: Any) -> Any:
        return sdl.StatefulDataLoader(stream, batch_size=4, num_workers=2, collate_fn=list)

    whole = [x for batch in loader(make()) for x in batch]
    assert len(whole) == 40
    first = loader(make())
    it = iter(first)
    got = [x for _ in range(3) for x in next(it)]
    state = first.state_dict()
    second = loader(make())
    second.load_state_dict(state)
    got.extend(x for batch in second for x in batch)
    assert got == whole


def test_a_state_of_another_mix_is_refused() -> None:
    stream = BalancedMix([A, B], proportions=[1, 1])
    next(iter(stream))
    with pytest.raises(ValueError, match=r"state_dict\['shares'\]"):
        BalancedMix([A, B], proportions=[1, 2]).load_state_dict(stream.state_dict())
    with pytest.raises(ValueError, match=r"state_dict\['stop'\]"):
        BalancedMix([A, B], proportions=[1, 1], stop="all").load_state_dict(stream.state_dict())


def test_epochs_differ_and_repeat() -> None:
    mix = BalancedMix([A, B], proportions=[1, 1], stop="all", seed=1)
    first = list(mix)
    mix.set_epoch(1)
    second = list(mix)
    mix.set_epoch(0)
    assert first != second and list(mix) == first


# ---- the per-class form is unchanged --------------------------------------------------------


def test_one_stream_per_class_still_plans_by_strategy() -> None:
    mix = BalancedMix({"cat": ["c0", "c1", "c2", "c3"], "dog": ["d0"]})
    assert mix.target_counts() == {"cat": 4, "dog": 4} and len(mix) == 8
    assert mix.target_shares() == {"cat": 0.5, "dog": 0.5}


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "kind", "match"),
    [
        ({"proportions": [1, -1]}, ValueError, r"proportions\[1\]"),
        ({"proportions": [1, float("nan")]}, ValueError, r"proportions\[1\]"),
        ({"proportions": [0, 0]}, ValueError, "proportions: expected at least one weight > 0"),
        ({"proportions": [1]}, ValueError, "proportions: expected 2 weights"),
        ({"temperature": 0}, ValueError, "temperature: expected a number > 0"),
        ({"temperature": -1.0}, ValueError, "temperature"),
        ({"proportions": [1, 1], "temperature": 1.0}, ValueError, "not both"),
        ({"proportions": [1, 1], "stop": "never"}, ValueError, "stop: expected 'cycle_until_all'"),
        ({"proportions": [1, 1], "stop": "all", "epoch_length": 5}, ValueError, "stop: expected"),
        ({"proportions": [1, 1], "epoch_length": 0}, ValueError, "epoch_length: expected"),
        ({"proportions": [1, 1], "strategy": "over"}, ValueError, "strategy: expected None"),
        ({"proportions": [1, 1], "exhausted": "stop"}, ValueError, "exhausted: expected 'cycle'"),
        ({"temperature": 1.0, "counts": [1]}, ValueError, "counts: expected 2 sizes"),
        ({}, TypeError, "sources_by_class: expected a dict"),
        ({"proportions": [1, 1], "counts": [3, 4]}, ValueError, "counts: expected None"),
        ({"proportions": [1, 1], "drop_last": True}, ValueError, "drop_last: expected False"),
    ],
)
def test_bad_mixing_arguments_are_refused_by_name(kwargs: dict, kind: type, match: str) -> None:
    with pytest.raises(kind, match=match):
        BalancedMix([A, B], **kwargs)


def test_bad_sources_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="sources_by_class: expected at least one source"):
        BalancedMix([], proportions=[])
    with pytest.raises(TypeError, match=r"sources_by_class\[1\]: expected a webdataset"):
        BalancedMix([A, 42], proportions=[1, 1])
    with pytest.raises(ValueError, match="counts: expected each source's size"):
        BalancedMix([iter(A), iter(B)], temperature=2.0)
    with pytest.raises(ValueError, match=r"sources_by_class\[1\]: expected samples for every"):
        list(BalancedMix([A, []], proportions=[1, 1]))
    with pytest.raises(ValueError, match="stop: expected None for one stream per class"):
        BalancedMix({0: A, 1: B}, stop="all")
    with pytest.raises(TypeError, match="len"):
        len(BalancedMix([A, B], proportions=[1, 1]))
    with pytest.raises(ValueError, match="target_counts: expected one stream per class"):
        BalancedMix([A, B], proportions=[1, 1]).target_counts()


# ---- parity with torchdata's MultiNodeWeightedSampler ----------------------------------------

TORCHDATA_RULES = {
    "all": "ALL_DATASETS_EXHAUSTED",
    "first_exhausted": "FIRST_DATASET_EXHAUSTED",
    "cycle_until_all": "CYCLE_UNTIL_ALL_DATASETS_EXHAUSTED",
}


@pytest.mark.parametrize("stop", list(TORCHDATA_RULES))
def test_stop_rules_match_torchdata(stop: str) -> None:
    """The same stop rule ends passes alike: the same invariants on every pass, and pass
    lengths of the same distribution (means within four standard errors over 200 seeds)."""
    nodes = pytest.importorskip("torchdata.nodes")
    criteria = pytest.importorskip("torchdata.nodes.samplers.stop_criteria").StopCriteria

    def theirs(seed: int) -> list[str]:
        sources = {"a": nodes.IterableWrapper(A), "b": nodes.IterableWrapper(B)}
        rule = getattr(criteria, TORCHDATA_RULES[stop])
        return list(
            nodes.MultiNodeWeightedSampler(
                sources, {"a": 1.0, "b": 1.0}, stop_criteria=rule, rank=0, world_size=1, seed=seed
            )
        )

    def ours(seed: int) -> list[str]:
        return list(BalancedMix([A, B], proportions=[1, 1], stop=stop, seed=seed))

    lengths = {}
    for name, run in (("theirs", theirs), ("ours", ours)):
        found = []
        for seed in range(200):
            out = run(seed)
            counts = Counter(out)
            if stop == "all":
                assert sorted(out) == sorted(A + B), name
            elif stop == "first_exhausted":
                assert max(counts.values()) == 1, name  # nothing starts again
                assert set(A) <= set(out) or set(B) <= set(out), name
            else:
                assert set(A + B) <= set(out), name  # every source ran out at least once
            found.append(len(out))
        lengths[name] = np.array(found, dtype=np.float64)
    a, b = lengths["theirs"], lengths["ours"]
    error = math.sqrt(a.var() / a.size + b.var() / b.size)
    assert abs(a.mean() - b.mean()) <= 4 * error + 1e-9, (a.mean(), b.mean())
