"""Class-level feedback: class targets that follow what the model gets wrong.

:class:`Feedback` is a strategy (pass it wherever a strategy goes: ``BalancedSampler``,
``StratifiedBatchSampler``, ``make_plan``) that starts from a base plan and is fed one number
per class after each epoch: a validation recall, or a running training loss. Each class gets a
*difficulty* ``d_c`` (``1 - recall_c``, or the loss itself) and a feedback share
``d_c ** tau / sum_i d_i ** tau``, the class-wise difficulty-balanced weighting of Sinha et al.
(ACCV 2020); the epoch's targets blend it with the base plan,

    ``targets = apportion((1 - mix) * base / L + mix * share, L)``,

so the epoch length ``L`` is the base plan's and never changes. When every difficulty is 0
(nothing left to learn) the share is uniform; ``tau = 0`` also makes it uniform.

Targets are a pure function of the epoch and the values fed so far, each stamped with the epoch
from which it counts: feeding the same values on every rank gives every rank the same epochs, and
a checkpoint holds the fed history (``state_dict()['feedback']``), so a resumed run draws what the
uninterrupted one would. Under DDP each rank sees only its own share of the validation or training
data: combine the counts first, which :func:`per_class_recall` and :func:`per_class_mean` do with
an ``all_reduce`` when ``torch.distributed`` is initialised.
"""

from __future__ import annotations

import math
import numbers
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch

from torch_balance._apportion import apportion, describe
from torch_balance._collective import all_reduce_sum, check_group
from torch_balance._validation import Text, check_int, fail
from torch_balance.labels import LabelIndex
from torch_balance.strategies import Plan

__all__ = ["Feedback", "per_class_mean", "per_class_recall"]

Kind = Literal["recall", "loss"]
KINDS = ("recall", "loss")


def _real(name: str, value: Any, low: float, high: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(name, what, value, kind=TypeError)
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        fail(name, what, value)
    return number


class Feedback:
    """A strategy fed per-class measurements each epoch: harder classes get more samples.

    Args:
        base: The plan before any feedback, and the part kept by ``1 - mix`` after: any
            strategy but another ``Feedback`` (``"sqrt"``, ``"class"``, ``Power(q)``,
            ``Progressive(T)``, ...). Its epoch length is the feedback plan's.
        tau: The exponent on difficulty (``>= 0``): 0 spreads the feedback share evenly, larger
            values concentrate it on the hardest classes. Sinha et al. use 1 to 2.
        mix: The weight of the feedback share against the base plan, in ``[0, 1]``; 1 follows
            the feedback alone (a class with difficulty 0 then gets no samples).

    Attributes:
        history: The fed values, one dict per update: ``{"epoch", "kind", "values"}``, oldest
            first; ``epoch`` is the first epoch the values shape.

    Example:
        >>> from torch_balance import make_plan
        >>> strategy = Feedback("class", tau=1.0, mix=1.0)
        >>> plan = make_plan([0] * 6 + [1] * 3 + [2] * 3, strategy)
        >>> plan.targets(0).tolist()  # the base plan: class-balanced
        [4, 4, 4]
        >>> strategy.update([0.9, 0.6, 0.5], kind="recall", epoch=1)  # difficulties .1 .4 .5
        >>> plan.targets(0).tolist(), plan.targets(1).tolist()
        ([4, 4, 4], [1, 5, 6])
    """

    def __init__(self, base: Any = "sqrt", *, tau: float = 1.0, mix: float = 0.5) -> None:
        if isinstance(base, Feedback):
            fail("Feedback.base", "a strategy other than Feedback", base, kind=TypeError)
        self.base = base
        self.tau = _real("Feedback.tau", tau, 0.0, math.inf, "a finite number >= 0")
        self.mix = _real("Feedback.mix", mix, 0.0, 1.0, "a number in [0, 1]")
        self.history: list[dict[str, Any]] = []
        self.revision = 0  # bumped by every change of history; plans re-read their targets
        self._keys: list[Any] | None = None  # the classes, once a plan is built
        self._owner: Any = None  # weakref to the sampler whose epochs the updates follow

    def __repr__(self) -> str:
        return f"Feedback(base={describe(self.base)}, tau={self.tau!r}, mix={self.mix!r})"

    # -- feeding -------------------------------------------------------------------------------

    def update(self, values: Any, kind: Kind = "recall", *, epoch: int | None = None) -> None:
        """Feed one value per class; the targets of ``epoch`` and later follow them.

        Feed the same values on every rank (see :func:`per_class_recall`), in the order of the
        sampler's classes (``target_counts()``'s keys, sorted), or as ``{class: value}``.

        Args:
            values: Per-class recall in ``[0, 1]`` (``kind="recall"``) or per-class mean loss
                ``>= 0`` (``kind="loss"``): a sequence, array, tensor or dict.
            kind: ``"recall"`` (difficulty ``1 - recall``) or ``"loss"`` (difficulty = loss).
            epoch: The first epoch these values shape. Default: the first epoch the sampler
                this strategy drives has not started drawing (the next epoch after a complete
                pass, the one after the pass under way otherwise). Required where the strategy
                drives no sampler (``make_plan``).

        Raises:
            ValueError: For the wrong number of values, NaN or infinite ones, a recall outside
                ``[0, 1]``, a negative loss, or an epoch before the latest update's.
            TypeError: For non-numeric values or an unknown ``kind`` type.
        """
        if not isinstance(kind, str):
            fail("kind", "'recall' or 'loss'", kind, kind=TypeError)
        if kind not in KINDS:
            fail("kind", "'recall' or 'loss'", kind)
        array = self._values(values, kind)
        if epoch is None:
            owner = self._owner() if self._owner is not None else None
            if owner is None:
                fail(
                    "epoch",
                    "the epoch the values take effect from",
                    None,
                    "This Feedback drives no sampler, so pass epoch= explicitly",
                )
            epoch = int(owner._unstarted_epoch())
        epoch = check_int("epoch", epoch, minimum=0, maximum=2**62)
        latest = self.history[-1]["epoch"] if self.history else 0
        if epoch < latest:
            fail(
                "epoch",
                f"an epoch >= {latest}, where the latest update takes effect",
                epoch,
                "Updates are kept in epoch order; call reset() to start a new run",
            )
        entry = {"epoch": epoch, "kind": kind, "values": array.tolist()}
        if self.history and self.history[-1]["epoch"] == epoch:
            self.history[-1] = entry  # the later of two updates for one epoch wins
        else:
            self.history.append(entry)
        self.revision += 1

    def reset(self) -> None:
        """Forget every update: the plan is the base plan again."""
        self.history = []
        self.revision += 1

    def _values(self, values: Any, kind: str, name: str = "values") -> np.ndarray:
        if isinstance(values, Mapping):
            if self._keys is None:
                fail(
                    name,
                    "a sequence in class order (a dict needs the sampler built first)",
                    Text("a dict"),
                    kind=TypeError,
                )
            missing = [k for k in self._keys if k not in values]
            unknown = [k for k in values if k not in self._keys]
            if missing or unknown:
                fail(
                    name,
                    f"one value for each class {self._keys[:10]}",
                    Text(f"a dict missing {missing[:5]}, with unknown keys {unknown[:5]}"),
                )
            values = [values[k] for k in self._keys]
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            fail(name, "one number per class", values, kind=TypeError)
        array = np.asarray(values)
        if array.dtype == object or array.dtype.kind not in "iuf" or array.ndim != 1:
            fail(name, "a 1-d sequence of real numbers, one per class", values, kind=TypeError)
        array = array.astype(np.float64)
        if self._keys is not None and array.shape[0] != len(self._keys):
            fail(
                name,
                f"one value per class ({len(self._keys)}, in sorted class order)",
                Text(f"{array.shape[0]} values"),
            )
        if array.shape[0] == 0:
            fail(name, "one value per class", Text("no values"))
        bad = ~np.isfinite(array)
        if kind == "recall":
            bad |= (array < 0) | (array > 1)
            expected = "recalls in [0, 1]"
            fix = (
                "Pass recall as a fraction, not a percentage; a class without validation "
                "samples has no recall (NaN): fill in a value for it"
            )
        else:
            bad |= array < 0
            expected = "finite losses >= 0"
            fix = "Pass each class's mean loss; fill in a value for a class without samples"
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            fail(name, expected, Text(f"{float(array[i])!r} at class {i}"), fix)
        return array

    # -- the plan ------------------------------------------------------------------------------

    def share(self, epoch: int) -> np.ndarray | None:
        """The feedback share per class in effect at ``epoch`` (None before any update)."""
        entry = None
        for item in self.history:
            if item["epoch"] > epoch:
                break
            entry = item
        if entry is None:
            return None
        values = np.asarray(entry["values"], dtype=np.float64)
        difficulty = 1.0 - values if entry["kind"] == "recall" else values
        with np.errstate(over="ignore", under="ignore"):
            raw = np.power(difficulty, self.tau)
        if not np.isfinite(raw).all():  # a huge loss ** tau: the same proportions in logs
            logs = np.where(
                difficulty > 0, self.tau * np.log(np.maximum(difficulty, 1e-300)), -np.inf
            )
            raw = np.exp(logs - logs.max())
        total = raw.sum()
        if total <= 0:
            return np.full(raw.shape[0], 1.0 / raw.shape[0])
        return raw / total

    def _build_plan(self, index: LabelIndex, make_base: Callable[[Any], Plan]) -> Plan:
        """The plan of this strategy on ``index``: the base plan's targets blended with the
        values fed (:func:`~torch_balance.strategies.make_plan` calls it)."""
        base = make_base(self.base)
        self._bind(index)
        return Plan(index, FeedbackRule(self, base.targets, base.length), constant=False)

    def _bind(self, index: LabelIndex) -> None:
        keys = index.keys()
        if self.history and len(self.history[-1]["values"]) != len(keys):
            fail(
                "strategy",
                f"a Feedback fed one value per class ({len(keys)} here)",
                Text(f"a Feedback fed {len(self.history[-1]['values'])} values"),
                "Use a new Feedback for other labels",
            )
        self._keys = keys

    def _attach(self, owner: Any) -> None:
        """Follow ``owner``'s epochs for updates without ``epoch=`` (one sampler at a time)."""
        current = self._owner() if self._owner is not None else None
        if current is not None and current is not owner:
            fail(
                "strategy",
                "a Feedback that drives no other sampler",
                Text(f"one already driving {type(current).__name__}"),
                "Build one Feedback per sampler",
            )
        self._owner = weakref.ref(owner)

    # -- state ---------------------------------------------------------------------------------

    def state(self) -> list[dict[str, Any]]:
        """The fed history, as ``state_dict()['feedback']`` holds it (a copy)."""
        return [dict(entry, values=list(entry["values"])) for entry in self.history]

    def load(self, history: Any, name: str = "state_dict['feedback']") -> None:
        """Replace the history with a saved one (checked as :meth:`update` checks values)."""
        if not isinstance(history, list):
            fail(
                name, "a list of updates from state_dict()", type(history).__name__, kind=TypeError
            )
        entries: list[dict[str, Any]] = []
        latest = 0
        for entry in history:
            if not isinstance(entry, dict) or set(entry) != {"epoch", "kind", "values"}:
                fail(name, "updates {'epoch', 'kind', 'values'} from state_dict()", entry)
            kind = entry["kind"]
            if kind not in KINDS:
                fail(name, "updates of kind 'recall' or 'loss'", kind)
            epoch = check_int(f"{name} epoch", entry["epoch"], minimum=latest, maximum=2**62)
            array = self._values(entry["values"], kind, name)
            entries.append({"epoch": epoch, "kind": kind, "values": array.tolist()})
            latest = epoch
        self.history = entries
        self.revision += 1

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_owner"] = self._owner() if self._owner is not None else None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        owner = state.pop("_owner")
        self.__dict__.update(state)
        self._owner = weakref.ref(owner) if owner is not None else None


class FeedbackRule:
    """The rule of a feedback plan: the base targets blended with the share in effect."""

    def __init__(self, feedback: Feedback, base: Callable[[int], np.ndarray], length: int) -> None:
        self.feedback, self.base, self.length = feedback, base, length

    @property
    def stamp(self) -> int:
        """Changes whenever the feedback does (a :class:`~torch_balance.Plan` then re-reads)."""
        return self.feedback.revision

    def __call__(self, epoch: int) -> np.ndarray:
        base = np.asarray(self.base(epoch), dtype=np.int64)
        share = self.feedback.share(epoch)
        if share is None:
            return base
        mix = self.feedback.mix
        return apportion((1.0 - mix) * base / self.length + mix * share, self.length)


def feedback_of(plan: Any) -> Feedback | None:
    """The :class:`Feedback` a plan follows, or None."""
    rule = getattr(plan, "_rule", None)
    return rule.feedback if isinstance(rule, FeedbackRule) else None


def plan_state(plan: Any) -> dict[str, Any]:
    """What a sampler's state records of its plan's feedback: ``{"feedback": history}``."""
    feedback = feedback_of(plan)
    return {} if feedback is None else {"feedback": feedback.state()}


@contextmanager
def restoring(plan: Any, state: Any) -> Iterator[None]:
    """Load a saved feedback history before a state is checked, and undo it if refused."""
    feedback = feedback_of(plan)
    if feedback is None or not isinstance(state, dict) or "feedback" not in state:
        yield
        return
    before = feedback.state()
    feedback.load(state["feedback"])
    try:
        yield
    except BaseException:
        feedback.load(before)
        raise


# -- measurements, combined across ranks ---------------------------------------------------------


def _sum_across_ranks(tensor: torch.Tensor, sync: bool, group: Any) -> torch.Tensor:
    return all_reduce_sum(tensor, check_group(group)) if sync else tensor


def _integer_ids(name: str, values: torch.Tensor) -> None:
    """Refuse float or complex class ids: ``.long()`` would truncate 2.7 to class 2."""
    if values.dtype.is_floating_point or values.is_complex():
        fail(
            name,
            "integer class ids",
            Text(f"a tensor of dtype {values.dtype}"),
            "Round or cast them first (ids.long()); pass scores as an [N, C] tensor",
            kind=TypeError,
        )


def _class_codes(targets: Any, num_classes: int) -> torch.Tensor:
    ids = torch.as_tensor(targets)
    _integer_ids("targets", ids)
    codes = ids.reshape(-1).long()
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= num_classes):
        fail(
            "targets",
            f"class ids in [0, {num_classes})",
            Text(f"ids from {int(codes.min())} to {int(codes.max())}"),
        )
    return codes


def per_class_recall(
    predictions: Any,
    targets: Any,
    num_classes: int,
    *,
    sync: bool = True,
    process_group: Any = None,
) -> torch.Tensor:
    """Recall of every class, the counts summed over all ranks when ``torch.distributed`` runs.

    Every rank gets the same vector (the recall of the whole validation set, not the mean of
    the ranks' recalls), ready for :meth:`Feedback.update`. A class with no sample gets NaN.

    Args:
        predictions: Predicted class ids (or logits/scores ``[N, C]``, reduced with argmax).
        targets: True class ids ``0 .. num_classes - 1``.
        num_classes: C.
        sync: Sum the counts over ranks with ``all_reduce`` (on the tensors' device) when a
            process group is initialised.
        process_group: The data-parallel group to sum over (a ``ProcessGroup`` or a 1-D
            ``DeviceMesh``); default the default group. Under tensor parallelism name it, or
            each replica's counts are added once per tensor-parallel peer.

    Returns:
        A float64 CPU tensor of C recalls.

    Example:
        >>> per_class_recall(torch.tensor([0, 1, 1, 1]), torch.tensor([0, 0, 1, 1]), 3)
        tensor([0.5000, 1.0000,    nan], dtype=torch.float64)
    """
    num_classes = check_int("num_classes", num_classes, minimum=1)
    predicted = torch.as_tensor(predictions)
    if predicted.dim() == 2:
        predicted = predicted.argmax(1)
    _integer_ids("predictions", predicted)
    codes = _class_codes(targets, num_classes).to(predicted.device)
    if predicted.reshape(-1).shape != codes.shape:
        fail(
            "predictions",
            f"one prediction per target ({codes.numel()})",
            Text(f"{predicted.numel()}"),
        )
    hits = codes[predicted.reshape(-1).long() == codes]
    counts = torch.stack(
        [
            torch.bincount(hits, minlength=num_classes),
            torch.bincount(codes, minlength=num_classes),
        ]
    ).to(torch.float64)
    counts = _sum_across_ranks(counts, sync, process_group).cpu()
    return counts[0] / counts[1]


def per_class_mean(
    values: Any,
    targets: Any,
    num_classes: int,
    *,
    sync: bool = True,
    process_group: Any = None,
) -> torch.Tensor:
    """The mean of per-sample ``values`` (e.g. losses) in every class, over all ranks.

    Sums and counts are added up over ranks with ``all_reduce`` when ``torch.distributed``
    is initialised (over ``process_group`` when given, as in :func:`per_class_recall`), so
    every rank gets the same vector. A class with no sample gets NaN.

    Example:
        >>> per_class_mean(torch.tensor([1.0, 3.0, 0.5]), torch.tensor([0, 0, 1]), 2)
        tensor([2.0000, 0.5000], dtype=torch.float64)
    """
    num_classes = check_int("num_classes", num_classes, minimum=1)
    data = torch.as_tensor(values).detach().reshape(-1)
    codes = _class_codes(targets, num_classes).to(data.device)
    if data.shape != codes.shape:
        fail("values", f"one value per target ({codes.numel()})", Text(f"{data.numel()}"))
    sums = torch.zeros(2, num_classes, dtype=torch.float64, device=data.device)
    sums[0].index_add_(0, codes, data.to(torch.float64))
    sums[1].index_add_(0, codes, torch.ones_like(data, dtype=torch.float64))
    sums = _sum_across_ranks(sums, sync, process_group).cpu()
    return sums[0] / sums[1]
