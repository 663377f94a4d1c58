"""The training stacks users train with, for real: 2 CPU ranks over gloo.

Two launches: Lightning's own DDP launcher (tests/stacks/lightning_ddp.py) and torchrun for
plain DDP, accelerate and the Hugging Face Trainer (tests/stacks/torchrun_ddp.py). Each rank
records the indices its steps received; here every epoch is checked to be one global epoch of
the plan, covered exactly once by equal shares (padding aside), drawn anew each epoch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import HANG_S
from torch.utils.data import DataLoader

from torch_balance import (
    ClassBalancedBatchSampler,
    RandomOverSampler,
    ResampledDataset,
    StratifiedBatchSampler,
    WeightedSampler,
)

pytest.importorskip("lightning")
pytest.importorskip("accelerate")
pytest.importorskip("transformers")

STACKS = Path(__file__).parent / "stacks"
sys.path.insert(0, str(STACKS))
from _common import (  # noqa: E402
    EPOCHS,
    LABELS,
    Indexed,
    class_aware_sampler,
    feedback_values,
    hf_stream,
    mixed_stream,
    mixture_sampler,
    picked_epoch,
    rare_sampler,
    stream,
)

WORLD = 2


def _launch(command: list[str], out: Path, world: int = WORLD) -> dict[str, Any]:
    # the tree under test first (not whichever copy the environment installed), then the scripts
    path = os.pathsep.join([str(STACKS.parent.parent), str(STACKS)])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*command, str(out)], env=env, capture_output=True, text=True, timeout=HANG_S
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((out / f"{r}.json").read_text()) for r in range(world)]
    return {name: [rank[name] for rank in ranks] for name in ranks[0]}


@pytest.fixture(scope="module")
def lightning_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("lightning")
    return _launch([sys.executable, str(STACKS / "lightning_ddp.py")], out)


@pytest.fixture(scope="module")
def torchrun_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("torchrun")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(WORLD), str(STACKS / "torchrun_ddp.py")]
    return _launch(command, out)


def _epoch(ranks: list[dict[str, Any]], epoch: int) -> list[list[int]]:
    return [rank[str(epoch)] for rank in ranks]


def _covers_once(shares: list[list[int]], planned: list[int], padding: int) -> None:
    """Equal shares that together hold the planned epoch once, plus at most ``padding``
    repeats of its items."""
    assert len({len(s) for s in shares}) == 1, [len(s) for s in shares]
    seen = Counter(i for share in shares for i in share)
    want = Counter(planned)
    assert not want - seen, f"never seen: {dict(want - seen)}"
    extra = seen - want
    assert sum(extra.values()) < padding, f"{sum(extra.values())} extra items: {dict(extra)}"
    assert set(extra) <= set(want)


def _check_sampled(ranks: list[dict[str, Any]], reference: Any, *, interleaved: bool) -> None:
    """The ranks' epochs against the sampler's own global epochs (a RareClassSampler's as
    ``10 * image + class``: the class each pick carried reached the dataset)."""
    epochs = []
    for epoch in range(EPOCHS):
        shares = _epoch(ranks, epoch)
        if hasattr(reference, "target_counts"):
            planned = reference.epoch_indices(epoch).tolist()
            assert Counter(LABELS[planned].tolist()) == reference.target_counts(epoch)
        elif hasattr(reference, "class_exposure"):  # a ClassAwareSampler: plain image indices
            planned = reference.epoch_indices(epoch).tolist()
        elif hasattr(reference, "mixture_report"):  # a MixtureSampler: each source's count
            planned = reference.epoch_indices(epoch).tolist()
            drawn = [sum(i < 30 for i in planned), sum(i >= 30 for i in planned)]
            assert drawn == reference.source_counts
        else:
            planned = picked_epoch(reference, epoch)
        if interleaved:  # sharded by the sampler: rank r holds positions r, r + R, ...
            assert shares == [planned[r::WORLD] for r in range(WORLD)]
        else:  # the whole epoch handed to a trainer that shards batches of 8 itself
            _covers_once(shares, planned, padding=WORLD * 8)
            # ... in the global epoch's order: batch b of the epoch is on rank b % R
            rounds = zip(*_batches(shares), strict=True)
            order = [i for batches in rounds for batch in batches for i in batch]
            assert order[: len(planned)] == planned
        epochs.append(planned)
    assert epochs[0] != epochs[1] != epochs[2]


def _check_weighted(ranks: list[dict[str, Any]], seed: int, *, interleaved: bool) -> None:
    """Every epoch is the reference sampler's global epoch under the weights that the reports
    of the previous epochs (from both ranks) produced: the ranks agreed on the weights."""
    reference = WeightedSampler([1.0] * len(LABELS), seed=seed)
    epochs = []
    for epoch in range(EPOCHS):
        planned = reference.epoch_indices(epoch).tolist()
        shares = _epoch(ranks, epoch)
        if interleaved:
            assert shares == [planned[r::WORLD] for r in range(WORLD)], epoch
        else:
            _covers_once(shares, planned, padding=WORLD * 8)
        seen = [i for share in shares for i in share]
        reference.update_weights(seen, feedback_values(seen, epoch))
        epochs.append(planned)
    assert epochs[0] != epochs[1] != epochs[2]
    assert len(set(reference.weights.tolist())) > 1, "the reports never changed the weights"


def _batches(shares: list[list[int]], size: int = 8) -> list[list[list[int]]]:
    return [[share[i : i + size] for i in range(0, len(share), size)] for share in shares]


def _check_batched(ranks: list[dict[str, Any]], sampler: Any) -> None:
    """Whole batches: rank r holds batches r, r + R, ... of the global epoch (padded)."""
    previous = None
    for epoch in range(EPOCHS):
        batches = sampler.epoch_indices(epoch)
        padded = (batches * WORLD)[: -(-len(batches) // WORLD) * WORLD]
        expected = [[i for b in padded[r::WORLD] for i in b] for r in range(WORLD)]
        assert _epoch(ranks, epoch) == expected, epoch
        assert batches != previous
        previous = batches


def _check_dataset(ranks: list[dict[str, Any]], dataset: ResampledDataset, padding: int) -> None:
    draws = []
    for epoch in range(EPOCHS):
        dataset.set_epoch(epoch)
        planned = dataset.epoch_indices().tolist()
        _covers_once(_epoch(ranks, epoch), planned, padding)
        assert Counter(LABELS[planned].tolist()) == dataset.target_counts(epoch)
        draws.append(Counter(planned))
    assert draws[0] != draws[1] != draws[2], "the same undersampled subset every epoch"


@pytest.mark.parametrize(
    ("scenario", "seed"),
    [
        ("early-default", 5),
        ("early-manual", 6),
        ("late-default", 7),
        ("late-manual", 8),
        ("rare-default", 14),
        ("class-aware-default", 16),
        ("mixture-default", 16),
    ],
)
def test_lightning_sampler(lightning_runs: dict[str, Any], scenario: str, seed: int) -> None:
    """use_distributed_sampler True and False, sampler built before and after the group; and
    a RareClassSampler, whose picks bring their class to the dataset; a MixtureSampler."""
    if scenario.startswith("rare"):
        reference = rare_sampler(seed)
    elif scenario.startswith("class-aware"):
        reference = class_aware_sampler(seed)
    elif scenario.startswith("mixture"):
        reference = mixture_sampler(seed)
    else:
        reference = RandomOverSampler(LABELS, seed=seed)
    _check_sampled(lightning_runs[scenario], reference, interleaved=True)


@pytest.mark.parametrize(
    "scenario", ["early-default", "early-manual", "late-default", "late-manual"]
)
def test_lightning_keeps_the_sampler_and_its_attributes(
    lightning_runs: dict[str, Any], scenario: str
) -> None:
    """Lightning hands the loop our sampler, unwrapped, and its DistributedSampler attributes
    have their meaning: this rank's count and the padded global epoch."""
    length = len(RandomOverSampler(LABELS))
    per_rank = -(-length // WORLD)
    for rank, recorded in enumerate(lightning_runs[f"{scenario}-sampler"]):
        for epoch in range(EPOCHS):
            expected = [WORLD, rank, per_rank, per_rank * WORLD, True]
            assert recorded[str(epoch)] == [*expected, "RandomOverSampler", len(LABELS)]


def test_lightning_dataset_wrapper_redraws(lightning_runs: dict[str, Any]) -> None:
    dataset = ResampledDataset(Indexed(), "under", labels=LABELS, seed=9)
    _check_dataset(lightning_runs["dataset-under"], dataset, padding=WORLD)


@pytest.mark.filterwarnings("ignore:ClassBalancedBatchSampler")
def test_lightning_batch_samplers(lightning_runs: dict[str, Any]) -> None:
    _check_batched(lightning_runs["stratified-manual"], StratifiedBatchSampler(LABELS, 8, seed=10))
    _check_batched(lightning_runs["pk-manual"], ClassBalancedBatchSampler(LABELS, 2, 4, seed=11))


def test_lightning_weighted_sampler_fed_back_across_ranks(lightning_runs: dict[str, Any]) -> None:
    _check_weighted(lightning_runs["weighted-feedback"], 12, interleaved=True)


def test_lightning_balanced_stream_by_rank_and_epoch(lightning_runs: dict[str, Any]) -> None:
    """Each rank reads what the stream built for that rank explicitly emits, epoch by epoch:
    the same number of samples on both ranks, the plan's mix, a new draw each epoch."""
    ranks = lightning_runs["stream-over"]
    epochs = []
    for epoch in range(EPOCHS):
        expected = []
        for rank in range(WORLD):
            own = stream(15, num_replicas=WORLD, rank=rank)
            own.set_epoch(epoch)
            expected.append([index for _, _, index in own])
        shares = _epoch(ranks, epoch)
        assert shares == expected, epoch
        assert len(shares[0]) == len(shares[1]) == len(own)
        # the plan's 37 of each class, give or take what each rank cut or padded to 74
        together = Counter(int(LABELS[i]) for share in shares for i in share)
        assert all(abs(together[c] - 37) <= 8 for c in range(4)), together
        epochs.append(shares)
    assert epochs[0] != epochs[1] != epochs[2]


def test_lightning_stream_mixture_by_rank_and_epoch(lightning_runs: dict[str, Any]) -> None:
    """A BalancedMix of sources under Lightning DDP: each rank emits epoch_length samples, what
    the mix built for that rank explicitly emits, both sources in it, anew each epoch."""
    ranks = lightning_runs["stream-mix"]
    epochs = []
    for epoch in range(EPOCHS):
        expected = []
        for rank in range(WORLD):
            own = mixed_stream(18, num_replicas=WORLD, rank=rank)
            own.set_epoch(epoch)
            expected.append([index for _, _, index in own])
        shares = _epoch(ranks, epoch)
        assert shares == expected, epoch
        assert [len(s) for s in shares] == [40, 40]
        assert shares[0] != shares[1]
        epochs.append(shares)
    assert epochs[0] != epochs[1] != epochs[2]


def test_lightning_default_flag_refuses_batch_sampler_by_name(
    lightning_runs: dict[str, Any],
) -> None:
    for rank in lightning_runs["pk-default"]:
        assert "use_distributed_sampler=False" in rank["note"]
        assert "ClassBalancedBatchSampler" in rank["note"]


def test_plain_ddp(torchrun_runs: dict[str, Any]) -> None:
    _check_sampled(
        torchrun_runs["ddp-set-epoch"], RandomOverSampler(LABELS, seed=1), interleaved=True
    )


def test_plain_loop_that_stops_at_len_redraws(torchrun_runs: dict[str, Any]) -> None:
    _check_batched(torchrun_runs["ddp-len-loop"], StratifiedBatchSampler(LABELS, 8, seed=2))


def test_ddp_stream_over_a_split_hugging_face_dataset(torchrun_runs: dict[str, Any]) -> None:
    """Issue 23 item 6: after split_dataset_by_node, each rank's epoch is that of the stream
    over the whole dataset built with its rank (read once, not split twice: was 200 of 400
    samples read, per-rank lengths 186/214), with equal numbers of batches."""
    pytest.importorskip("datasets")
    ranks = torchrun_runs["ddp-stream-hf-split"]
    steps = torchrun_runs["ddp-stream-hf-split-steps"][0]
    for epoch in range(EPOCHS):
        shares = _epoch(ranks, epoch)
        assert len(set(steps[str(epoch)])) == 1 and len(shares[0]) == len(shares[1])
        for rank, share in enumerate(shares):
            own = hf_stream(21, num_replicas=WORLD, rank=rank)
            own.set_epoch(epoch)
            items = DataLoader(own, batch_size=None)  # as the run's loader
            assert Counter(share) == Counter(int(item["index"]) for item in items)


def test_accelerate_prepare(torchrun_runs: dict[str, Any]) -> None:
    _check_sampled(
        torchrun_runs["accelerate-sampler"], RandomOverSampler(LABELS, seed=3), interleaved=False
    )
    _check_sampled(torchrun_runs["accelerate-rare"], rare_sampler(15), interleaved=False)
    batches = StratifiedBatchSampler(LABELS, 8, seed=4)
    for epoch in range(EPOCHS):
        planned = [i for b in batches.epoch_indices(epoch) for i in b]
        _covers_once(_epoch(torchrun_runs["accelerate-batches"], epoch), planned, WORLD * 8)


def test_accelerate_class_aware(torchrun_runs: dict[str, Any]) -> None:
    """A ClassAwareSampler under accelerate's prepare(): the whole epoch, batches sharded."""
    _check_sampled(
        torchrun_runs["accelerate-class-aware"], class_aware_sampler(17), interleaved=False
    )


def test_accelerate_prepare_mixture(torchrun_runs: dict[str, Any]) -> None:
    """A MixtureSampler under accelerate's prepare: the whole epoch, batches sharded."""
    _check_sampled(torchrun_runs["accelerate-mixture"], mixture_sampler(17), interleaved=False)


def test_accelerate_weighted_sampler_fed_back(torchrun_runs: dict[str, Any]) -> None:
    _check_weighted(torchrun_runs["accelerate-weighted"], 13, interleaved=False)


def test_accelerate_dispatch_batches(torchrun_runs: dict[str, Any]) -> None:
    reference = RandomOverSampler(LABELS, seed=7)
    for epoch in range(EPOCHS):
        planned = reference.epoch_indices(epoch).tolist()
        _covers_once(_epoch(torchrun_runs["accelerate-dispatch"], epoch), planned, WORLD * 8)


def test_ddp_sampler_attributes_are_distributed_samplers(torchrun_runs: dict[str, Any]) -> None:
    """Under plain DDP the attributes are those of a DistributedSampler of the same epoch;
    under accelerate, which shards batches itself, the sampler yields the whole epoch and
    says so."""
    length = len(RandomOverSampler(LABELS))
    per_rank = -(-length // WORLD)
    for rank, recorded in enumerate(torchrun_runs["ddp-attributes"]):
        expected = [WORLD, rank, per_rank, per_rank * WORLD, True, False, per_rank, len(LABELS)]
        assert recorded["0"] == expected
    for recorded in torchrun_runs["accelerate-attributes"]:
        assert recorded["0"] == [length, length]


def test_accelerate_sampler_answers_the_same_from_outside(torchrun_runs: dict[str, Any]) -> None:
    """len() and state_dict() asked outside BatchSamplerShard describe the global epoch, and the
    state loads back and continues it."""
    whole = RandomOverSampler(LABELS, seed=26).epoch_indices(0).tolist()
    for rank in torchrun_runs["accelerate-outside"]:
        length, batches, position = rank["0"]
        assert length == len(whole) and batches == -(-len(whole) // 8 // WORLD)
        assert 0 < position < len(whole) and position % 8 == 0
        assert rank["1"] == whole[position:]


def test_lightning_dataset_wrapper_without_the_callback_says_so(
    lightning_runs: dict[str, Any],
) -> None:
    for rank in lightning_runs["dataset-no-callback"]:
        assert "set_epoch(epoch)" in rank["note"] and "SetEpochCallback" in rank["note"]


def test_accelerate_warns_on_explicit_ranks(torchrun_runs: dict[str, Any]) -> None:
    for rank in torchrun_runs["accelerate-explicit-ranks"]:
        assert "num_replicas=2" in rank["note"] and "accelerator.prepare()" in rank["note"]


def test_hf_trainer_sampler(torchrun_runs: dict[str, Any]) -> None:
    _check_sampled(
        torchrun_runs["hf-sampler"], RandomOverSampler(LABELS, seed=5), interleaved=False
    )


def test_hf_trainer_dataset_wrapper_redraws(torchrun_runs: dict[str, Any]) -> None:
    dataset = ResampledDataset(Indexed(), "under", labels=LABELS, seed=6)
    _check_dataset(torchrun_runs["hf-dataset-under"], dataset, padding=WORLD * 8)


def test_hf_trainer_weighted_sampler_fed_back(torchrun_runs: dict[str, Any]) -> None:
    _check_weighted(torchrun_runs["hf-weighted"], 14, interleaved=False)


def _check_stream(ranks: list[dict[str, Any]], seed: int, padding: int, slack: int) -> None:
    """The ranks together hold the stream's global epoch (what one process reading every shard
    emits): equal shares, nothing lost beyond ``slack`` (the copies DataLoader workers cut or
    pad between them), repeats only as padding, a new draw each epoch."""
    epochs = []
    for epoch in range(EPOCHS):
        whole = stream(seed)
        whole.set_epoch(epoch)
        planned = Counter(index for _, _, index in whole)
        shares = _epoch(ranks, epoch)
        assert len({len(share) for share in shares}) == 1, [len(share) for share in shares]
        seen = Counter(i for share in shares for i in share)
        assert sum((planned - seen).values()) <= slack, f"never seen: {dict(planned - seen)}"
        assert sum((seen - planned).values()) <= padding + slack, dict(seen - planned)
        epochs.append(shares)
    assert epochs[0] != epochs[1] != epochs[2]


@pytest.mark.parametrize(
    ("scenario", "seed", "slack"),
    [
        # with 2 workers each emits half the epoch (the same share on every rank), cutting or
        # padding what its shards plan: up to 5 of 148 in these epochs
        ("accelerate-stream-dispatch", 16, 0),
        ("accelerate-stream-dispatch-workers", 17, 8),
        ("accelerate-stream-shards", 18, 0),
        ("accelerate-stream-shards-workers", 19, 8),
    ],
)
def test_accelerate_balanced_stream(
    torchrun_runs: dict[str, Any], scenario: str, seed: int, slack: int
) -> None:
    """Dispatched from rank 0 (accelerate's default for an IterableDataset) or read on every
    rank through IterableDatasetShard: the stream emits the global epoch, accelerate splits it."""
    assert "note" not in torchrun_runs[scenario][0], torchrun_runs[scenario][0].get("note")
    _check_stream(torchrun_runs[scenario], seed, padding=WORLD * 8, slack=slack)


def test_hf_trainer_balanced_stream(torchrun_runs: dict[str, Any]) -> None:
    _check_stream(torchrun_runs["hf-stream"], 20, padding=WORLD * 8, slack=0)


# -- resumed runs against uninterrupted ones (tests/stacks/resume_ddp.py) --------------------


@pytest.fixture(scope="module", params=[1, 2], ids=["1-rank", "2-ranks"])
def resume_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, dict[str, Any]]:
    world = int(request.param)
    out = tmp_path_factory.mktemp(f"resume-{world}")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(world), str(STACKS / "resume_ddp.py")]
    return world, _launch(command, out, world)


def _check_resumed(ranks: list[dict[str, Any]], scenario: str, cuts: dict[str, int]) -> None:
    """Every rank's resumed run saw exactly the uninterrupted run's batches after the cut."""
    for rank, data in enumerate(ranks):
        full = data[f"{scenario}/full"]["0"]
        per = len(full) // EPOCHS
        assert len(full) == per * EPOCHS and full[:per] != full[per : 2 * per], "no new draw"
        for name, cut in cuts.items():
            resumed = data[f"{scenario}/from-{name}"].get("0", [])
            assert resumed == full[cut:], (scenario, name, rank, len(resumed), len(full) - cut)


def _per_epoch(ranks: list[dict[str, Any]], scenario: str) -> int:
    return len(ranks[0][f"{scenario}/full"]["0"]) // EPOCHS


@pytest.mark.parametrize("scenario", ["plain-loop", "stateful-loop"])
def test_torchrun_loop_resumes_exactly(
    resume_runs: tuple[int, dict[str, Any]], scenario: str
) -> None:
    """Checkpoints after batch 4 of epoch 1, after the last batch of epoch 1 (then
    ``set_epoch(1)``: the empty rest of it, then epoch 2) and after the first batch; rank 0's
    state loaded on every rank."""
    _, runs = resume_runs
    ranks = [dict(zip(runs, values, strict=True)) for values in zip(*runs.values(), strict=True)]
    per = _per_epoch(ranks, scenario)
    _check_resumed(ranks, scenario, {"mid": per + 4, "end": 2 * per, "first": 1})


@pytest.mark.parametrize("scenario", ["accelerate-sampler", "accelerate-batches"])
def test_accelerate_skip_first_batches_resumes_exactly(
    resume_runs: tuple[int, dict[str, Any]], scenario: str
) -> None:
    _, runs = resume_runs
    ranks = [dict(zip(runs, values, strict=True)) for values in zip(*runs.values(), strict=True)]
    _check_resumed(ranks, scenario, {"mid": _per_epoch(ranks, scenario) + 4})


def test_accelerate_save_state_with_a_stateful_loader_resumes_exactly(
    resume_runs: tuple[int, dict[str, Any]],
) -> None:
    _, runs = resume_runs
    ranks = [dict(zip(runs, values, strict=True)) for values in zip(*runs.values(), strict=True)]
    per = _per_epoch(ranks, "accelerate-stateful")
    _check_resumed(ranks, "accelerate-stateful", {"mid": per + 4, "end": 2 * per})


@pytest.mark.parametrize("scenario", ["hf", "hf-dataset-workers", "hf-stream-workers"])
def test_hf_trainer_resumes_exactly_with_the_recipe(
    resume_runs: tuple[int, dict[str, Any]], scenario: str
) -> None:
    """The documented recipe (docs/guide/trainers.md; also with a ResampledDataset or a balanced
    stream and 2 workers), resumed in the middle of epoch 1 and from the ends of epochs 0 and 1:
    the callback runs before each epoch's iterator (and ``skip_first_batches``) is made."""
    _, runs = resume_runs
    ranks = [dict(zip(runs, values, strict=True)) for values in zip(*runs.values(), strict=True)]
    per = _per_epoch(ranks, scenario)
    assert ranks[0][f"{scenario}/cut-mid"]["note"] == str(per + 3)
    _check_resumed(ranks, scenario, {"mid": per + 3, "end": per, "end1": 2 * per})
    assert not any(f"{scenario}/warned-True" in rank for rank in ranks)


def test_hf_trainer_without_the_callback_says_so(resume_runs: tuple[int, dict[str, Any]]) -> None:
    """Without SetEpochCallback one process is still exact; on two the resumed pass cannot
    know its epoch, and says so (once, naming the callback)."""
    world, runs = resume_runs
    ranks = [dict(zip(runs, values, strict=True)) for values in zip(*runs.values(), strict=True)]
    if world == 1:
        _check_resumed(ranks, "hf-no-callback", {"mid": _per_epoch(ranks, "hf-no-callback") + 3})
        return
    for rank in ranks:
        assert "SetEpochCallback" in rank["hf-no-callback/warned-True"]["note"]


@pytest.fixture(scope="module")
def lightning_resumes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("lightning-resume")
    return _launch([sys.executable, str(STACKS / "lightning_resume.py")], out)


@pytest.mark.parametrize(
    "scenario",
    [
        "stateful",
        "stateful-batches",
        "plain",
        "stateful-stream",
        "stateful-stream-main",
    ],
)
def test_lightning_resumes_exactly_on_two_ranks(
    lightning_resumes: dict[str, Any], scenario: str
) -> None:
    """fit(ckpt_path=...) from a checkpoint in the middle of epoch 1 and from the end of
    epoch 0: a StatefulDataLoader (rank 0's loader state loads on rank 1) with a sampler, a
    batch sampler or a balanced stream over 2 workers (each worker's state loads on the same
    worker of rank 1), and a plain DataLoader with SetEpochCallback (whose state holds the
    sampler's position)."""
    ranks = [
        dict(zip(lightning_resumes, values, strict=True))
        for values in zip(*lightning_resumes.values(), strict=True)
    ]
    per = _per_epoch(ranks, scenario)
    _check_resumed(ranks, scenario, {str(per + 3): per + 3, str(per): per})


@pytest.mark.parametrize("scenario", ["plain-dataset", "plain-stream", "stateful-dataset"])
def test_lightning_resumes_a_dataset_at_epoch_ends(
    lightning_resumes: dict[str, Any], scenario: str
) -> None:
    """A ResampledDataset and a balanced stream in a plain DataLoader with SetEpochCallback
    (and the dataset in a StatefulDataLoader), resumed from the ends of epochs 0 and 1: the
    resumed epochs are the uninterrupted run's (Lightning reads a fit's first epoch before
    any hook runs; resumed at an epoch's end, it replayed epoch 0's draw)."""
    ranks = [
        dict(zip(lightning_resumes, values, strict=True))
        for values in zip(*lightning_resumes.values(), strict=True)
    ]
    per = _per_epoch(ranks, scenario)
    _check_resumed(ranks, scenario, {str(per): per, str(2 * per): 2 * per})
