"""What the stack scripts share: a tiny long-tailed dataset whose items carry their index."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

# 4 classes, 37/11/5/3 samples: "over" gives an epoch of 148, "under" one of 12.
LABELS = np.repeat(np.arange(4), [37, 11, 5, 3])
EPOCHS = 3


class Indexed(Dataset):
    """Item i is (feature, label, i), so a training step can record what it was given."""

    def __init__(self, labels: np.ndarray = LABELS) -> None:
        self.labels = labels
        self.targets = labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        return torch.tensor([float(self.labels[i])]), int(self.labels[i]), i


def rare_counts() -> np.ndarray:
    """LABELS as segmentation masks' pixel counts: a background class 0 of 400 pixels in every
    image, and class 1 + label with 20 to 60 pixels."""
    counts = np.zeros((len(LABELS), 5), dtype=np.int64)
    counts[:, 0] = 400
    counts[np.arange(len(LABELS)), LABELS + 1] = 20 + (np.arange(len(LABELS)) * 7) % 41
    return counts


def rare_sampler(seed: int) -> Any:
    """The RareClassSampler of the rare-class scenarios."""
    from torch_balance import RareClassSampler

    return RareClassSampler(rare_counts(), min_pixels=20, temperature=0.5, seed=seed)


def class_aware_sets() -> list[tuple[int, ...]]:
    """LABELS as category sets: each image's label, and every fourth image also class 3."""
    return [tuple({int(y), 3}) if i % 4 == 0 else (int(y),) for i, y in enumerate(LABELS)]


def class_aware_sampler(seed: int) -> Any:
    """The ClassAwareSampler of the class-aware scenarios: 2 images per class choice."""
    from torch_balance import ClassAwareSampler

    return ClassAwareSampler(class_aware_sets(), num_sample_class=2, seed=seed)


def mixture_sampler(seed: int) -> Any:
    """The MixtureSampler of the mixture scenarios: LABELS as two sources (its first 30 items,
    class-balanced, and the rest as they are), shares 1 : 2."""
    from torch_balance import MixtureSampler

    sources = [LABELS[:30], LABELS[30:]]
    return MixtureSampler(sources, proportions=[1, 2], strategy=["class", None], seed=seed)


def mixed_stream(seed: int, **kwargs: Any) -> Any:
    """A BalancedMix of two sources, shares 1 : 1: the balanced stream above and the dataset
    as it is (one shard), 40 samples per rank and epoch."""
    from torch_balance import BalancedMix

    data = Indexed()
    sources = {"balanced": stream(seed), "plain": [data[i] for i in range(len(LABELS))]}
    return BalancedMix(sources, proportions=[1, 1], epoch_length=40, seed=seed, **kwargs)


def picked_epoch(sampler: Any, epoch: int) -> list[int]:
    """A RareClassSampler's global epoch as ``10 * image + class``, what Picked records."""
    images, classes = sampler.epoch_picks(epoch)
    return (images * 10 + classes).tolist()


class Picked(Indexed):
    """Item i is (feature, label, 10 * i + the class drawn for i): a training step records
    that the class a RareClassSampler chose reached the dataset (9: no class)."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        x, y, index = super().__getitem__(int(i))
        return x, y, 10 * index + getattr(i, "class_id", 9)


def stream_shards() -> dict[str, list[tuple[torch.Tensor, int, int]]]:
    """The dataset as 4 named shards (sample i in shard i % 4), for the balanced streams."""
    data = Indexed()
    return {f"shard-{s}": [data[i] for i in range(s, len(LABELS), 4)] for s in range(4)}


def stream(seed: int, *, as_dicts: bool = False, **kwargs: Any) -> Any:
    """The dataset as 4 shards, balanced with "over" from its manifest (mode 1); items as
    dicts for the Trainer's collator; ``kwargs`` go to ``BalancedIterableDataset``."""
    from torch_balance import BalancedIterableDataset
    from torch_balance.streams import Shards

    shards: dict[str, list[Any]] = dict(stream_shards())
    if as_dicts:
        shards = {
            name: [{"x": x, "labels": y, "index": i} for x, y, i in items]
            for name, items in shards.items()
        }
    return BalancedIterableDataset(
        Shards(list(shards), shards.__getitem__),
        "over",
        manifest={name: LABELS[int(name[-1]) :: 4].tolist() for name in shards},
        label_fn=_dict_label if as_dicts else None,
        seed=seed,
        **kwargs,
    )


def hf_stream(seed: int, *, split: tuple[int, int] | None = None, **kwargs: Any) -> Any:
    """The dataset as a Hugging Face stream of 4 shards (items ``{"x", "label", "index"}``),
    split by ``datasets.distributed.split_dataset_by_node`` for ``split = (rank, world)``
    where given, balanced with "over" from its manifest (read from the split stream)."""
    import datasets
    from datasets.distributed import split_dataset_by_node

    from torch_balance import BalancedIterableDataset, Manifest

    table = datasets.Dataset.from_dict(
        {
            "x": LABELS.astype(float).tolist(),
            "label": LABELS.tolist(),
            "index": list(range(len(LABELS))),
        }
    )
    data = table.to_iterable_dataset(num_shards=4)
    if split is not None:
        data = split_dataset_by_node(data, rank=split[0], world_size=split[1])
    manifest = Manifest.from_source(data)
    return BalancedIterableDataset(data, "over", manifest=manifest, seed=seed, **kwargs)


def _dict_label(item: dict[str, Any]) -> int:
    return int(item["labels"])


def feedback_values(indices: list[int], epoch: int) -> list[float]:
    """What a rank reports to ``WeightedSampler.update_weights`` for the samples it saw: a
    stand-in for a per-sample loss that the test can recompute."""
    return [1.0 + (7 * i + epoch) % 5 for i in indices]


class Record:
    """Indices seen per (scenario, epoch) on this rank, written to ``<out>/<rank>.json``."""

    def __init__(self, out: str, rank: int) -> None:
        self.path = Path(out) / f"{rank}.json"
        self.data: dict[str, Any] = {}

    def add(self, scenario: str, epoch: int, indices: Any) -> None:
        values = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
        self.data.setdefault(scenario, {}).setdefault(str(epoch), []).extend(values)

    def note(self, scenario: str, text: str) -> None:
        self.data.setdefault(scenario, {})["note"] = text

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data))


def rank_from_env() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
