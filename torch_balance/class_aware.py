"""Class-aware sampling for multi-label and detection data (Shen et al., "Relay
Backpropagation", ECCV 2016, §3.3; mmdetection's ``ClassAwareSampler``, used for LVIS and
OpenImages).

Data flows one way: category sets (:func:`~torch_balance.labels.get_labelsets`, a
:class:`~torch_balance.labels.MultiLabelIndex`) -> the images of each class -> a plan over
classes (:func:`~torch_balance.strategies.make_plan` on the class image counts: uniform, or
``Power(q)``) -> draws (:mod:`torch_balance.draws.class_aware`) -> shard -> indices.

Where this differs from mmdetection (``mmdet/datasets/samplers/class_aware_sampler.py``):

* the choices per class come from a plan, exact in every epoch (uniform: equal up to one),
  in one shuffled order; mmdetection cycles through the classes in rounds (every class once
  per round, in a new order each round). The counts are the same; rounds exist only for the
  uniform rule, and a plan also gives ``Power(q)`` and the schedules;
* each class's walk through its images runs on across epochs (mmdetection restarts every
  class's cycle each epoch), so a class with more images than one epoch takes shows every
  image before any repeats, over several epochs;
* classes without an image are skipped, as mmdetection's ``valid_cat_inds`` do; images
  without a category are never drawn;
* an epoch holds ``num_samples`` picks (default the number of images, as mmdetection) on all
  ranks together, sharded with ``DistributedSampler``'s interleaving, padding and
  ``drop_last`` (mmdetection gives each rank a contiguous block and always pads);
* every random choice comes from (seed, epoch) and (seed, class, walk position), never from a
  generator whose state depends on the picks before.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from torch_balance._apportion import describe
from torch_balance._epoch import SamplerShell, describe_plan
from torch_balance._rng import Stream, generator
from torch_balance._validation import Text, check_epoch_size, check_int, fail
from torch_balance.draws.class_aware import WalkGroups, class_aware_epoch, members_by_class
from torch_balance.labels import MultiLabelIndex, given_dataset, is_label_data, resolve_labelsets
from torch_balance.labels.index import CountIndex
from torch_balance.strategies import Deferred, Power, Progressive, Strategy, make_plan

__all__ = ["ClassAwareSampler", "ClassExposure"]

EPOCH_BYTES = 40  # per pick: the choices, their ranks, the order and the values (8 bytes each)
_RUNS_FIX = "Images drawn in a row for each class choice (mmdetection's default is 1)"
_SETS = (list, tuple, set, frozenset, range, np.ndarray, torch.Tensor)
_STRATEGIES = "'class' (uniform), 'sqrt', 'instance', Power(q), Progressive(T) or Deferred(E)"


def _check_strategy(strategy: Any) -> None:
    if isinstance(strategy, str):
        if strategy in ("over", "under"):
            fail(
                "strategy",
                _STRATEGIES,
                strategy,
                "imbalanced-learn's over/under rules count images of single-label data; "
                "choose classes uniformly with 'class' and set the epoch with num_samples",
            )
        return  # make_plan refuses unknown names with the list of the others
    if isinstance(strategy, Power | Progressive | Deferred):
        return
    fail(
        "strategy",
        _STRATEGIES,
        strategy if not isinstance(strategy, type) else Text(strategy.__name__),
        "A plan over classes here follows a rule of the class image counts; callables and "
        "Feedback take per-class single-label counts (use BalancedSampler for those)",
        kind=TypeError,
    )


def _refuse_single_label(given: Any, label_fn: Any) -> None:
    """One label per sample, given as scalars, is single-label data: say what balances it."""
    if label_fn is not None:
        return
    data = given
    if not is_label_data(given):  # a dataset: class labels as integer .targets (CIFAR, ...)
        data = getattr(given, "targets", None)
        if hasattr(given, "labelsets") or data is None or not is_label_data(data):
            return
        first = data[0] if len(data) else None
        if not isinstance(first, numbers.Integral | np.integer | torch.Tensor):
            return  # VOCDetection's .targets are annotation paths
    scalars = False
    if isinstance(data, torch.Tensor):
        scalars = data.ndim == 1
    elif isinstance(data, np.ndarray):
        scalars = data.ndim == 1 and (
            data.dtype != object or (data.shape[0] > 0 and not isinstance(data[0], _SETS))
        )
    elif isinstance(data, list | tuple) and data:
        scalars = not isinstance(data[0], _SETS)
    if scalars:
        fail(
            "dataset_or_labelsets",
            "multi-label data (a collection of category ids per image, a multi-hot matrix, or "
            "a dataset with category sets)",
            Text("one label per sample (single-label data)"),
            "Balance single-label data with BalancedSampler(dataset_or_labels, 'class'), "
            "which draws every class equally often",
            kind=TypeError,
        )


@dataclass(frozen=True)
class ClassExposure:
    """Each class's exposure in one epoch beside its target.

    A pick made for class ``c`` shows every category of its image, so a class that shares
    images with others is seen more often than it is chosen: ``exposure`` counts the picks
    whose image holds the class, ``chosen`` the picks made for it.

    Attributes:
        categories: The classes, in the sampler's order.
        images: Images holding each class.
        target: The plan's share of the class choices, per class.
        chosen: Picks made for each class this epoch.
        exposure: Picks whose image holds each class this epoch (co-occurrence included).
        length: Picks in the epoch.

    Example:
        >>> sampler = ClassAwareSampler([(0, 1), (0,), (0,), (2,)], num_samples=6, seed=0)
        >>> report = sampler.class_exposure()
        >>> report.chosen.tolist(), report.exposure.tolist()
        ([2, 2, 2], [4, 3, 2])
        >>> print(report.table())
        | class | images | target | chosen | exposure | exposure / target |
        |---|---:|---:|---:|---:|---:|
        | 0 | 3 | 0.333 | 0.333 | 0.667 | 2.00x |
        | 1 | 1 | 0.333 | 0.333 | 0.500 | 1.50x |
        | 2 | 1 | 0.333 | 0.333 | 0.333 | 1.00x |
    """

    categories: list[Any]
    images: np.ndarray
    target: np.ndarray
    chosen: np.ndarray
    exposure: np.ndarray
    length: int

    @property
    def exposure_share(self) -> np.ndarray:
        """``exposure / length``: the share of picks that show each class (sums past 1)."""
        return self.exposure / self.length

    @property
    def chosen_share(self) -> np.ndarray:
        """``chosen / length``: the share of picks made for each class (sums to 1)."""
        return self.chosen / self.length

    def table(self, rows: Iterable[int] | None = None) -> str:
        """A markdown table, one row per class (positions ``rows``; default every class).

        Returns:
            The table, shares as fractions of the epoch's picks.

        Raises:
            TypeError: For ``rows`` that are not an iterable of integers.
            ValueError: For a position outside ``[0, classes)``.
        """
        count = len(self.categories)
        if isinstance(rows, np.ndarray | torch.Tensor):
            rows = rows.tolist()  # a 0-d one becomes a number, refused below
        if rows is None:
            rows = range(count)
        elif isinstance(rows, str | bytes) or not isinstance(rows, Iterable):
            fail("rows", "an iterable of class positions, or None", rows, kind=TypeError)
        else:
            fix = "Positions in categories (0 for the first class)"
            rows = [int(check_int("rows", c, minimum=0, maximum=count - 1, fix=fix)) for c in rows]
        lines = [
            "| class | images | target | chosen | exposure | exposure / target |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        exposure, chosen = self.exposure_share, self.chosen_share
        for c in rows:
            ratio = f"{exposure[c] / self.target[c]:.2f}x" if self.target[c] else "-"
            lines.append(
                f"| {self.categories[c]} | {int(self.images[c])} | {self.target[c]:.3f} | "
                f"{chosen[c]:.3f} | {exposure[c]:.3f} | {ratio} |"
            )
        return "\n".join(lines)


class ClassAwareSampler(SamplerShell):
    """Choose a class, then the next image of that class: class-aware sampling for
    multi-label and detection data, as mmdetection's ``ClassAwareSampler``.

    Each class choice follows the strategy over the classes' image counts (uniform by
    default) and is followed by ``num_sample_class`` consecutive images of the class. Every
    class goes through its images in cycles, a fresh random permutation per cycle, every
    image once before any image twice; the cycles run on across epochs. An epoch holds
    ``num_samples`` picks on all ranks together; the choices per class are the plan's, exact
    in every epoch. Classes without an image are skipped and images without a category are
    never drawn. :meth:`class_exposure` reports how often each class is shown, which images
    with several categories push past its target. See :mod:`torch_balance.class_aware` for
    where this differs from mmdetection.

    Args:
        dataset_or_labelsets: A dataset (sets read with
            :func:`~torch_balance.labels.get_labelsets`: COCO, LVIS in COCO format, VOC,
            CelebA, ``.labelsets``), one collection of category ids per image, a 2-D
            multi-hot matrix, or a :class:`~torch_balance.labels.MultiLabelIndex`.
        strategy: How classes are chosen, over their image counts ``n_c``: ``"class"``
            (uniform, the default), ``"sqrt"``, ``"instance"``, ``Power(q)`` (``n_c ** q``;
            ``q < 0`` favours rare classes further), ``Progressive(T)`` or ``Deferred(E)``.
        num_sample_class: Consecutive images per class choice (mmdetection's
            ``num_sample_class``).
        num_samples: Picks per global epoch; default the number of images.
        seed: Shared seed; must be the same on every rank.
        num_replicas: Number of ranks; default from ``torch.distributed`` when each epoch
            starts (1 without a process group).
        rank: This rank; default likewise.
        process_group: The data-parallel group (a ``ProcessGroup`` or a 1-D ``DeviceMesh``)
            whose ranks share the epoch; default the default group.
        drop_last: Drop the tail of the epoch so that it divides evenly among ranks, instead
            of padding it.
        label_fn: ``label_fn(dataset, i) -> iterable of category ids``.

    Attributes:
        index: The category sets, a :class:`~torch_balance.labels.MultiLabelIndex`.
        plan: Class choices per epoch, keyed by category
            (:class:`~torch_balance.strategies.Plan`).
        images_per_class: Images holding each category (``index.counts``).
        num_samples: This rank's picks per epoch (``DistributedSampler``'s meaning); the
            global epoch's length is ``global_length``.

    Raises:
        TypeError: For arguments of the wrong type, and for single-label data.
        ValueError: For invalid values, with the fix in the message.

    Example:
        >>> sets = [(0,), (0,), (0,), (0,), (0, 1), (2,)]
        >>> sampler = ClassAwareSampler(sets, num_sample_class=2, seed=0)
        >>> sampler.plan.as_dict(0)
        {0: 1, 1: 1, 2: 1}
        >>> picks = list(sampler)
        >>> len(picks), sorted(picks)
        (6, [3, 4, 4, 4, 5, 5])
    """

    def __init__(
        self,
        dataset_or_labelsets: Any,
        strategy: Strategy = "class",
        *,
        num_sample_class: int = 1,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        process_group: Any = None,
        drop_last: bool = False,
        label_fn: Callable[[Any, int], Iterable[Any]] | None = None,
    ) -> None:
        self._open(seed, num_replicas, rank, drop_last, process_group)
        _check_strategy(strategy)
        check_int("num_sample_class", num_sample_class, minimum=1, fix=_RUNS_FIX)
        length = check_int("num_samples", num_samples, minimum=1, allow_none=True)
        _refuse_single_label(dataset_or_labelsets, label_fn)
        self.index: MultiLabelIndex = resolve_labelsets(dataset_or_labelsets, label_fn)
        self._dataset = given_dataset(dataset_or_labelsets, label_fn)
        if self.index.num_categories == 0:
            fail(
                "dataset_or_labelsets",
                "at least one image with a category",
                Text(f"{len(self.index)} images, none with a category"),
            )
        picks = len(self.index) if length is None else int(length)
        check_epoch_size("num_samples", picks, EPOCH_BYTES, "Use a smaller num_samples")
        self.num_sample_class = int(
            check_int(
                "num_sample_class",
                num_sample_class,
                minimum=1,
                maximum=picks,
                fix=f"{_RUNS_FIX}; at most the epoch's {picks} picks",
            )
        )
        self.strategy = strategy
        counts = self.index.counts
        self.images_per_class = counts
        self.plan = make_plan(
            CountIndex(dict(zip(self.index.keys(), counts.tolist(), strict=True))),
            strategy,
            num_samples=-(-picks // self.num_sample_class),
        )
        self._offsets, self._members = members_by_class(
            self.index.codes, self.index.offsets, self.index.num_categories
        )
        self._walks = WalkGroups()
        self._global_length = picks
        self._ready()

    def _starts(self, epoch: int) -> list[int]:
        """Per class, the walk position epoch ``epoch`` starts at: the picks of the epochs
        before it (a plan is constant from ``settled`` on: a schedule's last stage)."""
        step = self.num_sample_class
        strategy = self.strategy
        settled = 0
        if not self.plan.constant:
            settled = (
                strategy.num_epochs - 1
                if isinstance(strategy, Progressive)
                else int(getattr(strategy, "start_epoch", 0))
            )
        head = min(epoch, settled)
        starts = [0] * self.index.num_categories
        for past in range(head):
            for code, t in enumerate(self.plan.targets(past).tolist()):
                starts[code] += t * step
        tail = epoch - head
        if tail:
            for code, t in enumerate(self.plan.targets(settled).tolist()):
                starts[code] += t * step * tail
        return starts

    def _draw(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        return class_aware_epoch(
            self._offsets,
            self._members,
            self.plan.targets(epoch),
            self._starts(epoch),
            self.num_sample_class,
            self._global_length,
            generator(self.seed, Stream.CLASS_AWARE, epoch),
            self.seed,
            self._walks,
        )

    def _source(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        values, order, _ = self._draw(epoch)
        return values, order

    def epoch_picks(self, epoch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, classes)`` of the global epoch (before sharding), in iteration order:
        each pick's image and the class it was drawn for (a position in ``index.keys()``).

        Args:
            epoch: Which epoch; default the epoch of the next pass.

        Returns:
            Two tensors of ``global_length`` items.
        """
        values, order, choices = self._draw(self._epoch_arg(epoch))
        classes = torch.from_numpy(choices.astype(np.int64)).repeat_interleave(
            self.num_sample_class
        )
        return values.index_select(0, order), classes[: self._global_length]

    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor:
        """The images of the global epoch (before sharding), in iteration order.

        Args:
            epoch: Which epoch; default the epoch of the next pass.

        Returns:
            ``global_length`` image indices.
        """
        values, order, _ = self._draw(self._epoch_arg(epoch))
        return values.index_select(0, order)

    def class_exposure(self, epoch: int | None = None) -> ClassExposure:
        """How often each class is chosen and shown in one global epoch, beside its target.

        Every category of every drawn image counts toward ``exposure``: a class that shares
        its images with frequent classes is shown more often than it is chosen.

        Args:
            epoch: Which epoch; default the epoch of the next pass.

        Returns:
            A :class:`ClassExposure`; ``table()`` prints it.
        """
        epoch = self._epoch_arg(epoch)
        images, classes = self.epoch_picks(epoch)
        num_classes = self.index.num_categories
        chosen = np.bincount(classes.numpy(), minlength=num_classes)
        drawn = np.bincount(images.numpy(), minlength=len(self.index))
        sizes = self.index.sizes()
        exposure = np.bincount(
            self.index.codes, weights=np.repeat(drawn, sizes), minlength=num_classes
        )
        targets = self.plan.targets(epoch)
        return ClassExposure(
            categories=self.index.keys(),
            images=self.images_per_class.copy(),
            target=targets / targets.sum(),
            chosen=chosen.astype(np.int64),
            exposure=np.rint(exposure).astype(np.int64),
            length=self._global_length,
        )

    def _own_settings(self, epoch: int) -> dict[str, Any]:
        return {"num_sample_class": self.num_sample_class, **describe_plan(self.plan, epoch)}

    def extra_repr(self) -> str:
        return (
            f"strategy={describe(self.strategy)}, num_sample_class={self.num_sample_class}, "
            f"global_length={self._global_length}, images={len(self.index)}, "
            f"classes={self.index.num_categories}"
        )
