"""The one scan: every item of a dataset loaded once through a ``DataLoader``, its label
kept (what :func:`~torch_balance.labels.get_labels` and
:func:`~torch_balance.labels.get_labelsets` fall back on, and how a ``label_fn`` runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from torch_balance._progress import progress_bar
from torch_balance.labels.kinds import Kind, LabelProblem

__all__ = ["ScanView", "read_item", "scan"]

SCAN_BATCH_SIZE = 128


def read_item(dataset: Any, i: int) -> Any:
    return dataset[i]


class ScanView(Dataset):
    """``dataset`` seen through ``read(dataset, i)`` and ``convert``: what a scan loads.

    A label that cannot be used, and with ``fn_expected`` a ``read`` that raises (a
    ``label_fn``), come back as a :class:`LabelProblem` in its place, so that the main
    process can name the sample's index.
    """

    def __init__(
        self,
        dataset: Any,
        read: Callable[[Any, int], Any],
        convert: Callable[[Any], Any],
        fn_expected: str | None,
    ) -> None:
        self.dataset = dataset
        self.read = read
        self.convert = convert
        self.fn_expected = fn_expected

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        if self.fn_expected is None:
            value = self.read(self.dataset, i)
        else:
            try:
                value = self.read(self.dataset, i)
            except Exception as error:
                return LabelProblem(
                    ValueError, self.fn_expected, f"{type(error).__name__}: {error}", cause=error
                )
        try:
            return self.convert(value)
        except LabelProblem as problem:
            return problem


def _keep(batch: list[Any]) -> list[Any]:
    return batch


def scan(
    view: ScanView, kind: Kind, name: str, num_workers: int, progress: bool, desc: str
) -> np.ndarray:
    """Load every item of ``view`` once through a DataLoader: the one scan of both kinds."""
    # A DataLoader draws its workers' base seed from the global RNG unless given a generator.
    loader = DataLoader(
        view,
        batch_size=SCAN_BATCH_SIZE,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_keep,
        generator=torch.Generator(),
    )
    labels: list[Any] = []
    with progress_bar(
        total=len(view), desc=f"{kind.function}: {desc}", unit="sample", enabled=progress
    ) as bar:
        for batch in loader:
            for value in batch:
                if isinstance(value, LabelProblem):
                    # a label_fn's value is "returned at index i"; a label_fn that raised is not
                    returned = view.fn_expected not in (None, value.expected)
                    value.throw(name, f"{'returned ' if returned else ''}at index {len(labels)}")
                labels.append(value)
            bar.update(len(batch))
    return kind.vector(labels, name)
