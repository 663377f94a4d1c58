"""Class-aware sampling for multi-label data: the kernel (torch_balance.draws.class_aware) and
ClassAwareSampler (torch_balance.class_aware)."""

from __future__ import annotations

import pickle
from collections import Counter
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare
from test_labels_torchvision import coco, voc  # noqa: F401 (fixtures)
from torch.utils.data import DataLoader, Dataset, Subset

from torch_balance import (
    ClassAwareSampler,
    Deferred,
    MultiLabelIndex,
    Power,
    Progressive,
    get_labelsets,
)
from torch_balance._rng import Stream, generator
from torch_balance.draws.buckets import (
    PIECE,
    SCANS,
    BucketCycle,
    bucket_cycle_reference,
    permutation,
)
from torch_balance.draws.class_aware import (
    GROUP,
    LAZY_ABOVE,
    NUMPY_ROWS_FROM,
    SORT_BELOW,
    WalkGroups,
    choice_order,
    class_aware_epoch,
    class_aware_reference,
    class_choices,
    group_cycles,
    members_by_class,
    walk_group,
    walk_positions,
)


def random_sets(n: int, classes: int, seed: int = 0) -> list[tuple[int, ...]]:
    """Long-tailed category sets: 1 to 3 categories per image, class c weighted 0.7**c."""
    rng = np.random.default_rng(seed)
    share = 0.7 ** np.arange(classes)
    share /= share.sum()
    return [
        tuple(sorted(set(rng.choice(classes, size=int(rng.integers(1, 4)), p=share).tolist())))
        for _ in range(n)
    ]


# ---- the kernel --------------------------------------------------------------------------------


def test_members_by_class_lists_every_image_of_every_class() -> None:
    sets = random_sets(300, 7)
    index = MultiLabelIndex(sets)
    offsets, members = members_by_class(index.codes, index.offsets, index.num_categories)
    for code, key in enumerate(index.keys()):
        own = members[offsets[code] : offsets[code + 1]].tolist()
        assert own == [i for i, s in enumerate(sets) if key in s]


@pytest.mark.parametrize(
    "n", [1, 2, 5, SORT_BELOW - 1, SORT_BELOW, 300, GROUP, GROUP + 7, LAZY_ABOVE + 1]
)
def test_walk_goes_through_every_image_once_per_cycle(n: int) -> None:
    cycles = max(3, 2 * group_cycles(n) + 1)  # past at least two group boundaries
    walk = walk_positions(n, 3, 0, cycles * n, seed=5).view(cycles, n)
    expected = torch.arange(n, dtype=walk.dtype).expand(cycles, n)
    assert torch.equal(walk.sort(dim=1).values, expected)
    if n > 2:  # a fresh permutation each cycle
        assert len({tuple(row.tolist()) for row in walk}) > 1


@pytest.mark.parametrize("n", [3, 40_000, 300_000])
def test_permutation_in_pieces_is_a_permutation(n: int) -> None:
    perm = permutation(n, generator(1, Stream.CLASS_AWARE_WALK), torch.int32)
    assert perm.dtype == torch.int32
    assert torch.equal(perm.sort().values, torch.arange(n, dtype=torch.int32))


def test_permutation_in_pieces_is_uniform() -> None:
    """Where the first and the last item land, over many draws: uniform over 10 bins."""
    n, draws = 40_000, 400
    first, last = np.zeros(10, dtype=np.int64), np.zeros(10, dtype=np.int64)
    for seed in range(draws):
        perm = permutation(n, generator(seed, Stream.CLASS_AWARE_WALK), torch.int64)
        first[int(perm[0]) * 10 // n] += 1
        last[int(np.flatnonzero(perm.numpy() == n - 1)[0]) * 10 // n] += 1
    assert chisquare(first).pvalue > 1e-3 and chisquare(last).pvalue > 1e-3


def test_bucket_cycle_is_uniform() -> None:
    """Where the first and the last image land in a cycle drawn bucket by bucket, and which
    image comes first and last, over many cycles: uniform over 10 bins."""
    n, draws = LAZY_ABOVE + 1, 300
    counts = np.zeros((4, 10), dtype=np.int64)
    for cycle in range(draws):
        perm = BucketCycle(n, code=2, cycle=cycle, seed=7).positions(0, n).numpy()
        assert np.array_equal(np.sort(perm), np.arange(n))
        where = np.empty(n, dtype=np.int64)
        where[perm] = np.arange(n)
        for row, value in enumerate((where[0], where[n - 1], perm[0], perm[n - 1])):
            counts[row, int(value) * 10 // n] += 1
    assert all(chisquare(row).pvalue > 1e-3 for row in counts)


@pytest.mark.parametrize("n", [LAZY_ABOVE + 1, 3 * PIECE + 5, 128 * PIECE + 1])
def test_bucket_cycle_positions_are_a_pure_function_of_the_position(n: int) -> None:
    whole = BucketCycle(n, code=1, cycle=4, seed=3).positions(0, n)
    assert torch.equal(whole.sort().values, torch.arange(n, dtype=torch.int32))
    fresh = BucketCycle(n, code=1, cycle=4, seed=3)  # read from the end back, in odd pieces
    for start in (n - 7, n // 2, PIECE - 3, 0):
        assert torch.equal(fresh.positions(start, 2 * PIECE), whole[start : start + 2 * PIECE])
    assert not torch.equal(whole[:PIECE], BucketCycle(n, 1, 5, seed=3).positions(0, PIECE))
    assert not torch.equal(whole[:PIECE], BucketCycle(n, 2, 4, seed=3).positions(0, PIECE))
    assert isinstance(walk_group(n, 1, 4, seed=3), BucketCycle)
    listed_at_once = BucketCycle(n, code=1, cycle=4, seed=3, whole=True)
    assert torch.equal(listed_at_once.positions(0, n), whole)


def test_a_large_class_reads_only_the_buckets_its_walk_reaches() -> None:
    n = 64 * PIECE
    cache = WalkGroups()
    walk_positions(n, 0, n - 10, 20, seed=1, cache=cache)  # the end of cycle 0, then cycle 1
    held = cache.groups[0][1]
    assert isinstance(held, BucketCycle) and list(held.pieces) == [0]
    whole = walk_positions(n, 0, n, n, seed=1)
    assert torch.equal(walk_positions(n, 0, n - 10, 20, seed=1, cache=cache)[10:], whole[:10])


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    n=st.integers(LAZY_ABOVE + 1, 6 * PIECE),
    whole=st.booleans(),
    reads=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 3 * PIECE)), min_size=1, max_size=5),
    seed=st.integers(0, 2**20),
)
def test_bucket_cycle_reads_equal_the_plain_reference(
    n: int, whole: bool, reads: list[tuple[float, int]], seed: int
) -> None:
    """Reads anywhere in a cycle, in any order (the first listing only the buckets it reads,
    the later ones every bucket), are the reference cycle's positions."""
    reference = bucket_cycle_reference(n, 3, 1, seed)
    assert torch.equal(reference.sort().values, torch.arange(n, dtype=torch.int32))
    cycle = BucketCycle(n, code=3, cycle=1, seed=seed, whole=whole)
    for share, count in reads:
        start = min(int(share * n), n - 1)
        assert torch.equal(cycle.positions(start, count), reference[start : start + count])


@settings(max_examples=10, deadline=None, derandomize=True)
@given(
    n=st.integers(LAZY_ABOVE + 1, 3 * PIECE),
    start=st.integers(0, 2 * 3 * PIECE),
    steps=st.lists(st.integers(1, 2 * PIECE), min_size=1, max_size=6),
)
def test_a_large_class_walk_is_its_reference_cycles_end_to_end(
    n: int, start: int, steps: list[int]
) -> None:
    """A cached walk that starts inside a cycle and goes on into the next ones (opened whole)
    reads the reference cycles one after the other."""
    cycles = -(-(start + sum(steps)) // n)
    whole = torch.cat([bucket_cycle_reference(n, 0, c, seed=4) for c in range(cycles)])
    cache = WalkGroups()
    at = start
    for count in steps:
        assert torch.equal(walk_positions(n, 0, at, count, 4, cache), whole[at : at + count])
        at += count


def test_a_cycle_lists_its_first_buckets_one_pass_each_then_every_bucket() -> None:
    """An epoch that starts inside a large cycle lists only the buckets it reads, up to SCANS
    of them; the next bucket lists every one (the keys are then dropped)."""
    n = 16 * PIECE
    reference = bucket_cycle_reference(n, 0, 0, seed=1)
    cycle = BucketCycle(n, code=0, cycle=0, seed=1)
    for bucket in range(SCANS + 1):
        middle = bucket * PIECE + PIECE // 2  # inside bucket `bucket` (16 buckets of ~PIECE)
        assert torch.equal(cycle.positions(middle, 3), reference[middle : middle + 3])
        if bucket < SCANS:
            assert cycle.scans == bucket + 1 and cycle.keys is not None
    assert cycle.keys is None and len(cycle.listed) + len(cycle.pieces) == 16


@pytest.mark.parametrize("n", [NUMPY_ROWS_FROM - 1, NUMPY_ROWS_FROM, SORT_BELOW - 1])
def test_short_cycles_are_the_order_of_their_keys(n: int) -> None:
    """The rows sorted by numpy or by torch: each cycle is the order of its random keys."""
    cycles = group_cycles(n)
    g = generator(9, Stream.CLASS_AWARE_WALK, 3, 1)
    keys = torch.rand(cycles, n, generator=g, dtype=torch.float64)
    expected = keys.argsort(dim=1).to(torch.int32).reshape(-1)
    assert torch.equal(walk_group(n, 3, 1, seed=9), expected)


def test_walk_positions_are_a_pure_function_of_the_position() -> None:
    whole = walk_positions(37, 1, 0, 3 * GROUP, seed=2)
    cache = WalkGroups()
    at = 0
    for count in (5, 700, GROUP, 3, 2 * GROUP - 708):
        part = walk_positions(37, 1, at, count, seed=2, cache=cache)
        assert torch.equal(part, whole[at : at + count])
        at += count
    assert not torch.equal(whole, walk_positions(37, 1, 0, 3 * GROUP, seed=3))
    assert not torch.equal(whole, walk_positions(37, 2, 0, 3 * GROUP, seed=2))


def test_walk_group_comes_from_its_own_generator() -> None:
    a = walk_group(100, 4, 7, seed=1)
    assert torch.equal(a, walk_group(100, 4, 7, seed=1))
    assert not torch.equal(a, walk_group(100, 4, 8, seed=1))
    assert pickle.loads(pickle.dumps(WalkGroups())).groups == {}


def test_class_choices_hold_the_targets_and_ranks_count_within_a_class() -> None:
    targets = np.array([5, 0, 3, 1])
    choices = class_choices(targets, generator(0, Stream.CLASS_AWARE, 0))
    assert Counter(choices.tolist()) == {0: 5, 2: 3, 3: 1}
    ranks, same = choice_order(targets, generator(0, Stream.CLASS_AWARE, 0))
    assert same.tolist() == choices.tolist()
    starts = np.concatenate([[0], np.cumsum(targets)])
    seen = Counter()
    for position, code in enumerate(choices.tolist()):
        assert ranks[position] == starts[code] + seen[code]
        seen[code] += 1


def test_class_aware_epoch_runs_of_num_sample_class() -> None:
    sets = random_sets(200, 6)
    index = MultiLabelIndex(sets)
    offsets, members = members_by_class(index.codes, index.offsets, index.num_categories)
    targets = np.array([4, 4, 4, 3, 3, 3])
    g = generator(1, Stream.CLASS_AWARE, 0)
    values, order, choices = class_aware_epoch(offsets, members, targets, [0] * 6, 3, 62, g, seed=1)
    epoch = values.index_select(0, order).tolist()
    assert len(epoch) == 62 and len(choices) == 21
    for position, image in enumerate(epoch):
        code = int(choices[position // 3])
        assert index.keys()[code] in sets[image]


# ---- the sampler -------------------------------------------------------------------------------


def picks_by_class(sampler: ClassAwareSampler, epochs: int) -> dict[int, list[int]]:
    """Each class's picks over ``epochs`` epochs, in the order they were drawn."""
    found: dict[int, list[int]] = {}
    for epoch in range(epochs):
        images, classes = sampler.epoch_picks(epoch)
        for image, code in zip(images.tolist(), classes.tolist(), strict=True):
            found.setdefault(code, []).append(image)
    return found


@pytest.mark.parametrize("strategy", ["class", Power(0.5), Progressive(3), Deferred(2)])
def test_each_class_cycles_through_its_images_across_epochs(strategy: Any) -> None:
    sets = random_sets(150, 8, seed=3)
    sampler = ClassAwareSampler(sets, strategy, num_sample_class=2, num_samples=120, seed=4)
    index = sampler.index
    for code, images in picks_by_class(sampler, 6).items():
        key = index.keys()[code]
        own = sorted(i for i, s in enumerate(sets) if key in s)
        n = len(own)
        for begin in range(0, len(images) - n + 1, n):  # every full cycle: each image once
            assert sorted(images[begin : begin + n]) == own, (key, begin)
        tail = images[len(images) - len(images) % n :]
        assert len(set(tail)) == len(tail)


def test_num_sample_class_consecutive_picks_hold_the_class() -> None:
    sets = random_sets(100, 5, seed=1)
    sampler = ClassAwareSampler(sets, num_sample_class=4, num_samples=98, seed=2)
    images, classes = sampler.epoch_picks(0)
    keys = sampler.index.keys()
    runs = classes.view(-1)[:96].view(-1, 4)
    assert bool((runs == runs[:, :1]).all())
    assert all(keys[c] in sets[i] for i, c in zip(images.tolist(), classes.tolist(), strict=True))
    assert len(sampler) == 98 and list(sampler) == images.tolist()


def test_uniform_chooses_every_class_equally_and_exactly() -> None:
    sampler = ClassAwareSampler(random_sets(400, 10), num_samples=1000, seed=0)
    for epoch in range(3):
        report = sampler.class_exposure(epoch)
        assert report.chosen.tolist() == [100] * 10
        assert report.chosen.sum() == 1000


@pytest.mark.parametrize("q", [0.5, 1.0, -0.5])
def test_power_class_shares_follow_n_to_the_q(q: float) -> None:
    sets = random_sets(300, 6, seed=5)
    counts = MultiLabelIndex(sets).counts.astype(np.float64)
    share = counts**q / (counts**q).sum()
    sampler = ClassAwareSampler(sets, Power(q), num_samples=600, seed=0)
    chosen = sampler.class_exposure().chosen
    assert np.abs(chosen - 600 * share).max() <= 1  # the plan: exact up to rounding
    # the order is unbiased: the class of one fixed position, over many seeds
    first = np.zeros(6, dtype=np.int64)
    for seed in range(1500):
        sampler.seed = seed
        first[int(sampler.epoch_picks(0)[1][17])] += 1
    assert chisquare(first, 1500 * chosen / chosen.sum()).pvalue > 1e-3


def test_negative_q_favours_rare_classes() -> None:
    sets = random_sets(300, 6, seed=5)
    chosen = ClassAwareSampler(sets, Power(-1), num_samples=600).class_exposure().chosen
    assert list(chosen) == sorted(chosen)  # class 0 is the most frequent


def test_exposure_counts_every_category_of_every_pick() -> None:
    sets = random_sets(200, 6, seed=8)
    sampler = ClassAwareSampler(sets, num_sample_class=2, num_samples=301, seed=3)
    report = sampler.class_exposure(2)
    images, classes = sampler.epoch_picks(2)
    keys = sampler.index.keys()
    shown = Counter(c for i in images.tolist() for c in sets[i])
    assert report.exposure.tolist() == [shown[k] for k in keys]
    assert report.chosen.tolist() == np.bincount(classes.numpy(), minlength=6).tolist()
    assert report.chosen.sum() == 301 and (report.exposure >= report.chosen).all()
    assert report.exposure.sum() > 301  # co-occurrence shows more than was chosen
    assert abs(report.target.sum() - 1) < 1e-12
    assert report.table(rows=[0, 5]).count("\n") == 3


def test_classes_without_images_are_skipped_and_empty_images_never_drawn() -> None:
    hot = np.zeros((12, 4), dtype=np.int64)
    hot[:6, 0] = 1
    hot[5:9, 2] = 1
    hot[9, 3] = 1  # column 1 has no image; rows 10 and 11 have no category
    sampler = ClassAwareSampler(hot, num_samples=90, seed=1)
    assert sampler.index.keys() == [0, 2, 3]
    picks = list(sampler)
    assert set(picks) <= set(range(10))
    assert sampler.class_exposure(0).chosen.tolist() == [30, 30, 30]
    sets = [(), (0,), (), (0, 5)]
    assert set(ClassAwareSampler(sets, num_samples=20)) <= {1, 3}


def test_epoch_length_defaults_to_the_images() -> None:
    sets = random_sets(77, 5)
    assert len(ClassAwareSampler(sets)) == 77
    assert len(ClassAwareSampler(sets, num_sample_class=5)) == 77
    sampler = ClassAwareSampler(sets, num_replicas=2, rank=1)
    assert len(sampler) == 39 and sampler.global_length == 77


def test_ranks_split_one_global_epoch() -> None:
    sets = random_sets(90, 6)
    whole = ClassAwareSampler(sets, num_sample_class=2, seed=5).epoch_indices(1).tolist()
    parts = []
    for rank in range(3):
        sampler = ClassAwareSampler(sets, num_sample_class=2, seed=5, num_replicas=3, rank=rank)
        sampler.set_epoch(1)
        parts.append(list(sampler))
    assert [parts[r][i] for i in range(30) for r in range(3)] == whole


def test_resume_mid_epoch_continues_the_epoch() -> None:
    sets = random_sets(120, 6)
    reference = ClassAwareSampler(sets, Power(0.3), num_sample_class=3, seed=9)
    reference.set_epoch(4)
    expected = list(reference)
    sampler = ClassAwareSampler(sets, Power(0.3), num_sample_class=3, seed=9)
    sampler.set_epoch(4)
    items = iter(sampler)
    head = [next(items) for _ in range(50)]
    state = sampler.state_dict()
    resumed = ClassAwareSampler(sets, Power(0.3), num_sample_class=3, seed=9)
    resumed.load_state_dict(state)
    assert head + list(resumed) == expected
    other = ClassAwareSampler(sets, Power(0.3), num_sample_class=2, seed=9)
    with pytest.raises(ValueError, match="num_sample_class"):
        other.load_state_dict(state)


def test_schedules_start_each_epoch_where_the_last_stopped() -> None:
    sets = random_sets(60, 5)
    sampler = ClassAwareSampler(sets, Progressive(4), num_samples=50, seed=1)
    steps = [0] * 5
    for epoch in range(7):
        assert sampler._starts(epoch) == steps
        steps = [s + int(t) for s, t in zip(steps, sampler.plan.targets(epoch), strict=True)]
    assert sampler._starts(10**12)[0] > 0  # closed form past the schedule, no loop over epochs


# ---- the readers and loaders -------------------------------------------------------------------


def test_reads_coco_and_voc_without_decoding(coco: tvd.CocoDetection, voc: Any) -> None:  # noqa: F811
    for dataset in (coco, voc, Subset(coco, [3, 0, 2])):
        sets = get_labelsets(dataset, progress=False)
        sampler = ClassAwareSampler(dataset, num_samples=40, seed=0)
        assert sampler.dataset is dataset
        for image, code in zip(*(t.tolist() for t in sampler.epoch_picks(0)), strict=True):
            assert sampler.index.keys()[code] in sets[image]


class Tagged(Dataset):
    """A dataset with category sets in ``labelsets`` and indices as items."""

    labelsets = random_sets(40, 5, seed=2)

    def __len__(self) -> int:
        return len(self.labelsets)

    def __getitem__(self, i: int) -> int:
        return i


def test_a_dataloader_with_workers_gets_the_epoch() -> None:
    sampler = ClassAwareSampler(Tagged(), num_sample_class=2, seed=3)
    expected = sampler.epoch_indices(0).tolist()
    loader = DataLoader(Tagged(), sampler=sampler, batch_size=8, num_workers=2)
    assert torch.cat(list(loader)).tolist() == expected
    by_fn = ClassAwareSampler(Tagged(), seed=3, label_fn=lambda ds, i: ds.labelsets[i])
    assert (
        by_fn.epoch_indices(0).tolist()
        == ClassAwareSampler(Tagged(), seed=3).epoch_indices(0).tolist()
    )


def test_repr_and_pickle() -> None:
    sampler = ClassAwareSampler(random_sets(30, 4), Power(0.5), num_sample_class=2, seed=1)
    list(sampler)
    assert repr(sampler).startswith(
        "ClassAwareSampler(strategy=Power(q=0.5), num_sample_class=2, global_length=30"
    )
    copy = pickle.loads(pickle.dumps(sampler))
    assert copy._walks.groups == {}
    assert list(copy) == list(sampler)


# ---- hostile input -----------------------------------------------------------------------------

SETS = random_sets(20, 4)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, None, "2", 21, 2**62, 2**70])
def test_num_sample_class_refused(value: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="num_sample_class"):
        ClassAwareSampler(SETS, num_sample_class=value)


@pytest.mark.parametrize("value", [0, -3, 2.5, False])
def test_num_samples_refused(value: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="num_samples"):
        ClassAwareSampler(SETS, num_samples=value)


def test_power_q_nan_or_infinite_refused() -> None:
    for q in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"Power\.q"):
            ClassAwareSampler(SETS, Power(q))


@pytest.mark.parametrize(
    ("strategy", "kind"),
    [
        ("over", ValueError),
        ("under", ValueError),
        ("nonsense", ValueError),
        (lambda counts, epoch: counts, TypeError),
        (Power, TypeError),
        (0.5, TypeError),
    ],
)
def test_strategies_that_do_not_fit_refused(strategy: Any, kind: type) -> None:
    with pytest.raises(kind, match=r"^strategy: expected"):
        ClassAwareSampler(SETS, strategy)


@pytest.mark.parametrize("empty", [[], [(), (), ()], np.zeros((3, 2), dtype=np.int64)])
def test_no_category_at_all_refused(empty: Any) -> None:
    with pytest.raises(ValueError, match="dataset_or_labelsets"):
        ClassAwareSampler(empty)


class SingleLabel(Dataset):
    targets: ClassVar[list[int]] = [0, 1, 1, 2]

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[int, int]:
        return i, self.targets[i]


@pytest.mark.parametrize(
    "labels",
    [[0, 1, 1, 2], np.array([0, 1, 1]), torch.tensor([3, 3, 1]), ["cat", "dog"], SingleLabel()],
)
def test_single_label_data_is_sent_to_balanced_sampler(labels: Any) -> None:
    with pytest.raises(TypeError, match="BalancedSampler") as raised:
        ClassAwareSampler(labels)
    assert str(raised.value).startswith("dataset_or_labelsets: expected multi-label data")


def test_a_class_the_plan_gives_nothing_is_never_chosen() -> None:
    sets = random_sets(300, 6, seed=5)
    sampler = ClassAwareSampler(sets, Power(8), num_samples=40, seed=0)
    report = sampler.class_exposure()
    zero = np.flatnonzero(sampler.plan.targets(0) == 0)
    assert zero.size and (report.chosen[zero] == 0).all()
    assert report.table(rows=zero.tolist()).splitlines()[-1].endswith("| - |")
    assert set(sampler.epoch_picks(0)[1].tolist()).isdisjoint(zero.tolist())


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    sizes=st.lists(st.integers(1, 70), min_size=1, max_size=6),
    runs=st.integers(1, 4),
    extra=st.integers(0, 3),
    epoch_start=st.integers(0, 3 * GROUP),
    seed=st.integers(0, 2**20),
)
def test_the_vectorised_epoch_equals_the_plain_reference(
    sizes: list[int], runs: int, extra: int, epoch_start: int, seed: int
) -> None:
    """Random classes (1 to 70 images, a few shared), runs, targets and walk positions (past
    group boundaries): the vectorised epoch is the reference's, pick for pick."""
    rng = np.random.default_rng(seed)
    sets = [
        tuple(sorted({c, int(rng.integers(len(sizes)))}))
        for c, n in enumerate(sizes)
        for _ in range(n)
    ]
    index = MultiLabelIndex(sets)
    offsets, members = members_by_class(index.codes, index.offsets, index.num_categories)
    targets = rng.integers(0, 5, size=index.num_categories)
    targets[0] += 1
    length = int(targets.sum()) * runs - min(extra, runs - 1)
    starts = (epoch_start + rng.integers(0, 50, size=index.num_categories)).tolist()
    args = (offsets, members, targets, starts, runs, length)
    values, order, _ = class_aware_epoch(
        *args, generator(seed, Stream.CLASS_AWARE, 2), seed, WalkGroups()
    )
    reference = class_aware_reference(*args, generator(seed, Stream.CLASS_AWARE, 2), seed)
    assert values.index_select(0, order).tolist() == reference
