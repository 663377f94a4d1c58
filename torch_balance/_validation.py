"""Argument checks shared by every public entry point.

All messages have one shape: ``<argument>: expected <what>, got <value>[. <fix>]``.
``TypeError`` is raised for a wrong type and ``ValueError`` for a wrong value.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any, NoReturn

import torch
from torch.utils.data import Dataset

__all__ = [
    "IndexOutOfRange",
    "Text",
    "as_array",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_epoch_size",
    "check_index",
    "check_int",
    "check_map_style",
    "check_real",
    "check_sample_weights",
    "check_seed",
    "check_state_dict",
    "fail",
    "internal",
    "readable_tensor",
    "real_values",
    "refuse_sampler_input",
    "scaled_weights",
    "tensor_values",
]


class Text(str):
    """Already-written text for :func:`fail`'s ``got``: shown as it is, not as a ``repr``."""


def _show(value: Any) -> str:
    if isinstance(value, Text):
        return str(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def fail(
    name: str, expected: str, got: Any, fix: str | None = None, *, kind: type = ValueError
) -> NoReturn:
    """Raise ``kind`` with the house message shape.

    Args:
        name: The argument's name as the user wrote it.
        expected: What a valid value looks like.
        got: The value that was given (shown with ``repr``, shortened), or a :class:`Text`
            that describes it (shown as it is).
        fix: What the user can do instead, if there is something.
        kind: ``ValueError`` (default), ``TypeError``, or a subclass of either.

    Raises:
        ValueError: Or ``kind``, always.
    """
    message = f"{name}: expected {expected}, got {_show(got)}"
    if fix:
        message += f". {fix}"
    raise kind(message)


def internal(condition: bool, message: str) -> None:
    """Check an internal invariant; a failure is a bug in torch_balance, not in the caller."""
    if not condition:
        raise AssertionError(f"torch_balance internal error: {message}. Please report this.")


INT64 = 2**63


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: bool = False,
    fix: str | None = None,
) -> Any:
    """Return ``value`` as a Python ``int`` after checking its type and range.

    Example:
        >>> check_int("num_samples", 5, minimum=1)
        5
        >>> check_int("num_samples", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: num_samples: expected an integer >= 1, got 0
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        what = "an integer or None" if allow_none else "an integer"
        fail(name, what, value, fix, kind=TypeError)
    value = int(value)
    if not -INT64 <= value < INT64:
        fail(name, "an integer that fits in 64 bits", value, fix)
    if minimum is not None and value < minimum:
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        fail(name, f"an integer {bound}", value, fix)
    if maximum is not None and value > maximum:
        bound = f"<= {maximum}" if minimum is None else f"in [{minimum}, {maximum}]"
        fail(name, f"an integer {bound}", value, fix)
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a ``bool``; raise ``TypeError`` otherwise."""
    if not isinstance(value, bool):
        fail(name, "True or False", value, kind=TypeError)
    return value


def check_seed(value: Any) -> int:
    """Seeds are non-negative integers below 2**63 (what ``torch.Generator.manual_seed`` takes)."""
    return int(
        check_int(
            "seed",
            value,
            minimum=0,
            maximum=2**63 - 1,
            fix="Use one fixed non-negative integer, the same on every rank",
        )
    )


def real_values(name: str, values: Any) -> torch.Tensor:
    """A float64 CPU copy of ``values``, a sequence, numpy array or tensor of real numbers (any
    shape; the caller checks it).

    Raises:
        TypeError: A string, a scalar, booleans, complex numbers or anything not a number.

    Example:
        >>> real_values("values", (1, 2.5)).tolist()
        [1.0, 2.5]
    """
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        fail(name, "a 1-d sequence, array or tensor of numbers", values, kind=TypeError)
    if isinstance(values, torch.Tensor):
        if values.dtype == torch.bool or values.is_complex():
            fail(name, "real numbers", Text(f"a tensor of dtype {values.dtype}"), kind=TypeError)
        return readable_tensor(name, values).detach().to("cpu", torch.float64, copy=True)
    import numpy as np

    try:
        array = np.asarray(values, dtype=object if isinstance(values, list) else None)
    except ValueError:  # a ragged nest numpy cannot shape
        fail(name, "a 1-d sequence, array or tensor of numbers", Text("a ragged sequence"))
    if array.dtype == object:
        for i, v in enumerate(array.reshape(-1)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                fail(name, "real numbers", Text(f"{_show(v)} at index {i}"), kind=TypeError)
        array = array.astype(np.float64)
    elif array.dtype.kind not in "iuf":
        fail(name, "real numbers", Text(f"an array of dtype {array.dtype}"), kind=TypeError)
    return torch.from_numpy(np.array(array, dtype=np.float64))  # always a copy


def check_sample_weights(name: str, weights: Any, length: int | None = None) -> torch.Tensor:
    """Per-sample weights as a contiguous float64 CPU tensor, every entry finite and >= 0.

    Args:
        name: The argument's name as the user wrote it.
        weights: A 1-d sequence, numpy array or tensor of real numbers.
        length: The number of samples the weights must cover, or None for any length >= 1.

    Returns:
        The weights as float64 (a new tensor; the caller's object is never kept).

    Raises:
        TypeError: Not a 1-d sequence of real numbers.
        ValueError: Wrong length, a negative, NaN or infinite entry (named by its index), or
            every weight zero.

    Example:
        >>> check_sample_weights("weights", [1, 0.5, 2]).tolist()
        [1.0, 0.5, 2.0]
        >>> check_sample_weights("weights", [1.0, -2.0, 3.0])
        Traceback (most recent call last):
        ...
        ValueError: weights: expected finite weights >= 0, got -2.0 at index 1. ...
    """
    if isinstance(weights, Dataset) or hasattr(weights, "column_names"):
        fail(
            name,
            "one weight per sample (a sequence, numpy array or tensor of numbers)",
            Text(f"a dataset ({type(weights).__name__})"),
            "Weights are per sample, not the data: to balance the classes of a dataset, pass it "
            "to BalancedSampler(dataset); for weights from its labels, labels = "
            "get_labels(dataset); weights = class_weights(labels)[labels]",
            kind=TypeError,
        )
    values = real_values(name, weights)
    if values.dim() != 1:
        fail(name, "a 1-d sequence of weights", Text(f"shape {tuple(values.shape)}"))
    if length is not None and values.numel() != length:
        fail(
            name,
            f"one weight per sample ({length})",
            Text(f"{values.numel()} weights"),
            "Pass a weight for every sample of the dataset, in its order",
        )
    if values.numel() == 0:
        fail(name, "at least one weight", Text("no weights"))
    low, high = (float(v) for v in torch.aminmax(values))  # one pass; NaN fails both tests
    if not (low >= 0 and high < math.inf):
        bad = ~torch.isfinite(values) | (values < 0)
        i = int(bad.nonzero()[0])
        fail(
            name,
            "finite weights >= 0",
            Text(f"{float(values[i])!r} at index {i}"),
            "Replace NaN, infinite and negative weights (a weight of 0 never draws the sample)",
        )
    if not high > 0:
        fail(name, "at least one weight > 0", Text("every weight 0"), "Nothing could be drawn")
    return values


_SCALE_LIMIT = 2.0**400


def scaled_weights(values: torch.Tensor) -> torch.Tensor:
    """Finite weights ``>= 0`` at a scale every draw can sum: times the power of two that
    brings the largest into ``[0.5, 1)`` where it lies outside ``[2**-400, 2**400]``, else
    ``values`` themselves.

    A power of two is exact, so every ratio (and every probability and share) is the one
    asked for; after it, the sum of up to ``2**63`` weights is finite and not subnormal
    (``[1e308] * 3`` no longer sums to ``inf``, nor ``[5e-324] * 3`` to a subnormal).

    Example:
        >>> w = scaled_weights(torch.tensor([1e308, 1e308, 5e307], dtype=torch.float64))
        >>> (w / w[0]).tolist(), 0.5 <= float(w.max()) < 1, float(w.sum()) < 2
        ([1.0, 1.0, 0.5], True, True)
        >>> scaled_weights(torch.tensor([5e-324, 1e-323], dtype=torch.float64)).tolist()
        [0.25, 0.5]
        >>> scaled_weights(torch.tensor([1.0, 3.0], dtype=torch.float64)).tolist()
        [1.0, 3.0]
    """
    if values.numel() == 0:
        return values
    high = float(values.max())
    if high == 0.0 or 1.0 / _SCALE_LIMIT <= high <= _SCALE_LIMIT:
        return values
    shift = -math.frexp(high)[1]  # high * 2**shift in [0.5, 1)
    half = shift // 2  # two steps: 2**shift alone can overflow (subnormal weights)
    return values * 2.0**half * 2.0 ** (shift - half)


def check_map_style(name: str, dataset: Any) -> None:
    """Refuse anything that is not a map-style dataset (``__getitem__`` and ``__len__``)."""
    text = isinstance(dataset, str | bytes)  # indexable, but a string, not a dataset
    if text or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        fail(
            name,
            "a map-style dataset (with __getitem__ and __len__)",
            type(dataset).__name__,
            kind=TypeError,
        )


class IndexOutOfRange(IndexError, ValueError):
    """An item index past either end: a ``ValueError`` in the house message shape, and an
    ``IndexError`` so that ``for item in dataset`` and ``list(dataset)`` (Python's sequence
    protocol, which stops at ``IndexError``) end where the epoch does."""


def check_index(i: Any, length: int) -> int:
    """An item index for a sequence of ``length`` items, negative ones counted from the end.

    Raises:
        TypeError: If ``i`` is not an integer.
        IndexOutOfRange: If ``i`` is outside ``[-length, length)`` (a ``ValueError`` and an
            ``IndexError``).

    Example:
        >>> check_index(-1, 4)
        3
        >>> [x for x in _Items(3)]
        [0, 1, 2]
    """
    if isinstance(i, torch.Tensor):
        if i.dim() != 0 or i.dtype.is_floating_point or i.dtype == torch.bool:
            fail(
                "index",
                "an integer (a 0-d integer tensor at most)",
                Text(f"a tensor of shape {tuple(i.shape)} and dtype {i.dtype}"),
                "Index one item at a time, or wrap the dataset in torch.utils.data.Subset",
                kind=TypeError,
            )
        i = int(i)
    elif isinstance(i, bool) or not isinstance(i, numbers.Integral):
        fail("index", "an integer", i, kind=TypeError)
    i = int(i)
    if not -length <= i < length:
        fail(
            "index",
            f"an integer in [{-length}, {length})",
            i,
            f"This epoch holds {length} items",
            kind=IndexOutOfRange,
        )
    return i + length if i < 0 else i


class _Items:
    """``range(n)`` read item by item through :func:`check_index` (for its example)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __getitem__(self, i: int) -> int:
        return check_index(i, self.n)


def total_memory() -> int:
    """Bytes of physical memory on this machine (0 where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 0


def check_epoch_size(
    name: str, items: int, bytes_per_item: int, fix: str, what: str = "an epoch"
) -> None:
    """Refuse, at construction, an epoch that could never be drawn in this machine's memory.

    Example:
        >>> check_epoch_size("num_samples", 10**6, 16, "Use fewer")
        >>> check_epoch_size("num_samples", 10**15, 16, "Use fewer")
        Traceback (most recent call last):
        ...
        ValueError: num_samples: expected an epoch that fits in memory ...
    """
    need = items * bytes_per_item
    have = total_memory()
    if have and need > have:
        fail(
            name,
            f"{what} that fits in memory ({_size(have)} here)",
            Text(f"{what} of {items:,} items, which needs about {_size(need)}"),
            fix,
        )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def refuse_sampler_input(cls: type, given: Any, kwargs: dict[str, Any]) -> None:
    """A sampler where data belongs: most often a trainer rebuilding a batch sampler."""
    name = cls.__name__
    if "batch_size" in kwargs or "drop_last" in kwargs:
        fail(
            "dataset_or_labels",
            "a dataset or labels",
            Text(
                f"a {type(given).__name__} with batch_size and drop_last: a trainer is rebuilding "
                f"{name} around its own distributed sampler (Lightning does this with "
                "use_distributed_sampler=True, its default)"
            ),
            f"{name} already gives each rank its own whole batches: pass "
            "Trainer(..., use_distributed_sampler=False) (in Fabric, setup_dataloaders(..., "
            "use_distributed_sampler=False)); the trainer still sets its epoch every epoch",
            kind=TypeError,
        )
    fail(
        "dataset_or_labels",
        "a dataset or labels",
        Text(f"a {type(given).__name__}"),
        f"{name} reads labels from a dataset; pass the dataset (or its labels), not a sampler",
        kind=TypeError,
    )


def check_real(
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    open_low: bool = False,
    open_high: bool = False,
    fix: str | None = None,
) -> float:
    """Return ``value`` as a finite Python ``float`` after checking its type and range.

    The range is ``[low, high]``, open at an end where ``open_low`` or ``open_high`` is set.

    Example:
        >>> check_real("beta", 0.99, low=0.0, high=1.0, open_high=True)
        0.99
        >>> check_real("beta", 1.0, low=0.0, high=1.0, open_high=True)
        Traceback (most recent call last):
        ...
        ValueError: beta: expected a finite number in [0, 1), got 1.0
    """
    if isinstance(value, torch.Tensor) and value.dim() == 0 and value.is_floating_point():
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(name, "a number", value, fix, kind=TypeError)
    number = float(value)
    inside = math.isfinite(number)
    inside = inside and (number > low if open_low else number >= low)
    inside = inside and (number < high if open_high else number <= high)
    if not inside:
        left = "(" if open_low or low == -math.inf else "["
        right = ")" if open_high or high == math.inf else "]"
        bounds = f"{left}{low:g}, {high:g}{right}".replace("inf", "∞")
        fail(name, f"a finite number in {bounds}", value, fix)
    return number


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of the strings ``choices``.

    Example:
        >>> check_choice("reduction", "sum", ("mean", "sum", "none"))
        'sum'
        >>> check_choice("reduction", "avg", ("mean", "sum", "none"))
        Traceback (most recent call last):
        ...
        ValueError: reduction: expected one of 'mean', 'sum', 'none', got 'avg'
    """
    wanted = "one of " + ", ".join(repr(c) for c in choices)
    if not isinstance(value, str):
        fail(name, wanted, value, kind=TypeError)
    if value not in choices:
        fail(name, wanted, value)
    return value


def tensor_values(name: str, tensor: torch.Tensor) -> Any:
    """A tensor's values as a numpy array on the CPU (``detach().cpu().numpy()``), after
    :func:`readable_tensor`.

    Example:
        >>> tensor_values("labels", torch.tensor([1, 2])).tolist()
        [1, 2]
    """
    return readable_tensor(name, tensor).detach().cpu().numpy()


def as_array(name: str, value: Any) -> Any:
    """``numpy.asarray(value)``, a tensor's values through :func:`tensor_values`.

    Example:
        >>> as_array("counts", torch.tensor([[1, 2]])).tolist()
        [[1, 2]]
    """
    import numpy as np

    return tensor_values(name, value) if isinstance(value, torch.Tensor) else np.asarray(value)


def readable_tensor(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``, after refusing the tensors whose values cannot be read as an array: on
    the ``meta`` device (a shape without data), or sparse.

    Example:
        >>> readable_tensor("labels", torch.empty(2, device="meta"))
        Traceback (most recent call last):
        ...
        ValueError: labels: expected a tensor with values (on the CPU or a GPU), got a tensor ...
    """
    if tensor.device.type == "meta":
        fail(
            name,
            "a tensor with values (on the CPU or a GPU)",
            Text("a tensor on the meta device"),
            "A meta tensor has a shape but no data: build it on a real device",
        )
    if tensor.layout != torch.strided:
        fail(
            name,
            "a dense tensor",
            Text(f"a tensor of layout {tensor.layout}"),
            "Pass tensor.to_dense()",
            kind=TypeError,
        )
    return tensor


def check_callable(name: str, fn: Any, arguments: int, signature: str) -> None:
    """Refuse ``fn`` unless it is a callable that takes ``arguments`` positional arguments
    (a callable whose signature cannot be read is taken as it is).

    Example:
        >>> check_callable("transforms", lambda image: image, 2, "transforms(image, mask)")
        Traceback (most recent call last):
        ...
        TypeError: transforms: expected a callable transforms(image, mask), got a function that ...
    """
    import inspect

    if not callable(fn):
        fail(name, f"a callable {signature}", fn, kind=TypeError)
    try:
        inspect.signature(fn).bind(*([None] * arguments))
    except TypeError:
        fail(
            name,
            f"a callable {signature}",
            Text(f"a {type(fn).__name__} that cannot take {arguments} positional arguments"),
            kind=TypeError,
        )
    except ValueError:  # a builtin without a signature
        return


def check_state_dict(name: str, state: Any, source: str) -> dict[str, Any]:
    """Refuse ``state`` unless it is a dict (what ``source`` returns); return it.

    Example:
        >>> check_state_dict("state_dict", [1], "ResampledDataset.state_dict()")
        Traceback (most recent call last):
        ...
        TypeError: state_dict: expected a dict from ResampledDataset.state_dict(), got a list
    """
    if not isinstance(state, dict):
        fail(name, f"a dict from {source}", Text(f"a {type(state).__name__}"), kind=TypeError)
    return state
