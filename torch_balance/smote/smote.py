"""SMOTE in torch, with imbalanced-learn's semantics, as an imbalanced-learn sampler.

:class:`SMOTE` over-samples embeddings with imbalanced-learn's semantics (same per-class
counts, same ``sampling_strategy`` rules, same output layout) but in torch, on the CPU or a
GPU, with the exact chunked nearest-neighbour search of :mod:`torch_balance.smote.neighbors`.
It is an imbalanced-learn over-sampler (``get_params``, ``clone``, ``imblearn.pipeline``).
``SMOTE(resampler=...)`` applies any imbalanced-learn over-sampler (``BorderlineSMOTE``,
``SVMSMOTE``, ``ADASYN``, ``KMeansSMOTE``, ...) through the same interface.

How a synthetic row is made (Chawla et al., JAIR 2002): for class c needing m new rows, draw a
base sample x uniformly from class c, one of its k nearest same-class neighbours x_nn
uniformly (exact Euclidean distance, the base itself excluded by index, so duplicates of the
base still count as neighbours), and u ~ U[0, 1); the new row is x + u * (x_nn - x). All draws
come, on the CPU, from one ``torch.Generator`` seeded from (random_state, epoch), so a CUDA run
draws exactly what a CPU run draws.

The functional core is :mod:`torch_balance.smote.core`: ``new_counts`` (the plan),
``neighbor_tables`` and ``synthesize`` (one draw); the class is the estimator shell around
them.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from torch_balance._epoch import check_epoch
from torch_balance._imblearn import kept_random_state
from torch_balance._validation import Text, check_int, fail
from torch_balance.labels import LabelIndex
from torch_balance.smote.core import (
    Draw,
    SMOTEParams,
    as_matrix,
    neighbor_tables,
    new_counts,
    synthesize,
)
from torch_balance.smote.embed import check_device
from torch_balance.smote.variants import check_resampler

# imbalanced-learn's import moves Python's global `random` state; it is put back.
with kept_random_state():
    from imblearn.over_sampling.base import BaseOverSampler
    from sklearn.exceptions import NotFittedError

__all__ = ["SMOTE"]


def _check_strategy(sampling_strategy: Any) -> Any:
    if isinstance(sampling_strategy, bool) or not (
        # A list gets imbalanced-learn's ValueError (lists are for cleaning methods).
        isinstance(sampling_strategy, str | numbers.Real | Mapping | list)
        or callable(sampling_strategy)
    ):
        fail(
            "sampling_strategy",
            "a string, a float (binary only), a dict {class: count} or a callable",
            sampling_strategy,
            "See imbalanced-learn's SMOTE for the meaning of each",
            kind=TypeError,
        )
    return sampling_strategy


_Fitted = tuple[SMOTEParams, torch.Tensor, LabelIndex, np.ndarray, dict[int, torch.Tensor] | None]


class SMOTE(BaseOverSampler):
    """SMOTE over-sampling of embeddings in torch, with imbalanced-learn's semantics.

    ``fit_resample`` gives the same per-class counts as
    ``imblearn.over_sampling.SMOTE(sampling_strategy=..., k_neighbors=...)`` and the same
    layout: the original rows first, then the synthetic rows grouped by class in sorted class
    order. Each synthetic row is ``x + u * (x_nn - x)`` for a base ``x`` drawn uniformly from
    its class, ``x_nn`` drawn uniformly from the base's ``k_neighbors`` nearest same-class
    samples (exact Euclidean, the base excluded) and ``u ~ U[0, 1)``. Only the neighbours of
    the drawn bases are searched.

    It is an imbalanced-learn over-sampler: the constructor only stores its parameters
    (``get_params``, ``set_params`` and ``sklearn.base.clone`` work), they are checked by
    ``fit`` and ``fit_resample``, and it fits in an ``imblearn.pipeline.Pipeline``. To redraw
    new rows every epoch from one neighbour search, ``fit(X, y)`` once, then ``draw(epoch)``.

    With ``resampler=`` any imbalanced-learn over-sampler (``BorderlineSMOTE``,
    ``SVMSMOTE``, ``ADASYN``, ``KMeansSMOTE``, ``RandomOverSampler(shrinkage=...)``) runs
    instead, on numpy copies, configured by its own parameters (its ``random_state`` and
    those of nested estimators are replaced by ones drawn from ``random_state`` and the epoch).

    Args:
        sampling_strategy: imbalanced-learn's ``sampling_strategy``: ``"auto"``,
            ``"minority"``, ``"not minority"``, ``"not majority"``, ``"all"``, a float
            (binary problems), a dict ``{class: target count}`` or a callable
            ``y -> dict``.
        k_neighbors: Neighbours per base sample; every class that gets new rows needs more
            than ``k_neighbors`` samples.
        random_state: An integer seed in ``[0, 2**63)``, or None, which means seed 0: every
            draw is a pure function of the seed (and the epoch), so a None never reads
            numpy's global RNG and the output is reproducible anyway. A
            ``numpy.random.RandomState`` is refused (it cannot be replayed per epoch).
        device: Where the neighbour search and the interpolation run; default the device of
            a tensor ``X``, the CPU for numpy.
        chunk_size: Query rows per block of the neighbour search (extra memory about
            ``chunk_size * class size * 4`` bytes); default keeps a block near 64 MiB. The
            result does not depend on it.
        resampler: An imbalanced-learn over-sampler to use instead of the native SMOTE. Set
            its ``sampling_strategy`` and neighbours on it; leave this class's at default.

    Attributes:
        sampling_strategy_: ``{class: number of new rows}`` after ``fit`` or
            ``fit_resample`` (with a resampler: after a draw, the resampler's own).
        n_features_in_: The number of columns of ``X``.
        classes_: The sorted classes; ``classes_[codes]`` labels the rows of :meth:`draw`.
        base_indices_: For each synthetic row of the last draw, the index in ``X`` of its
            base sample.
        neighbor_indices_: For each synthetic row, the index in ``X`` of its neighbour.
        steps_: For each synthetic row, its ``u``. These three are None with a resampler.

    Example:
        >>> X = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0],
        ...                   [5.0, 5.0], [6.0, 5.0], [5.0, 6.0]])
        >>> y = torch.tensor([0, 0, 0, 0, 1, 1, 1])
        >>> smote = SMOTE(k_neighbors=2, random_state=0)
        >>> X_res, y_res = smote.fit_resample(X, y)
        >>> tuple(X_res.shape), y_res.tolist()
        ((8, 2), [0, 0, 0, 0, 1, 1, 1, 1])
        >>> base, nn, u = smote.base_indices_[0], smote.neighbor_indices_[0], smote.steps_[0]
        >>> bool(torch.allclose(X_res[7], X[base] + u * (X[nn] - X[base])))
        True
        >>> smote.get_params()["k_neighbors"]
        2
    """

    # Parameters are checked by check_params, with torch_balance's message shape.
    _parameter_constraints: ClassVar[dict] = {}
    _fitted: _Fitted | None = None  # what fit keeps for draw

    def __init__(
        self,
        sampling_strategy: Any = "auto",
        k_neighbors: int = 5,
        *,
        random_state: int | None = None,
        device: str | torch.device | None = None,
        chunk_size: int | None = None,
        resampler: Any = None,
    ) -> None:
        self.sampling_strategy = sampling_strategy
        self.k_neighbors = k_neighbors
        self.random_state = random_state
        self.device = device
        self.chunk_size = chunk_size
        self.resampler = resampler

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        # Dense float tensors or arrays only, finite values, no pandas or sparse input.
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.input_tags.string = False
        tags.input_tags.dataframe = False
        return tags

    def check_params(self) -> SMOTEParams:
        """The constructor parameters, checked (``fit`` and ``fit_resample`` call it first).

        Returns:
            The checked parameters, ``random_state`` as the integer seed.

        Raises:
            TypeError: For a parameter of the wrong type.
            ValueError: For a parameter of the wrong value, or ``sampling_strategy`` or
                ``k_neighbors`` changed while a ``resampler`` is given.

        Example:
            >>> SMOTE(k_neighbors=0).check_params()
            Traceback (most recent call last):
            ...
            ValueError: k_neighbors: expected an integer >= 1, got 0. SMOTE needs at least one ...
        """
        sampling_strategy = _check_strategy(self.sampling_strategy)
        k_neighbors = check_int(
            "k_neighbors", self.k_neighbors, minimum=1, fix="SMOTE needs at least one neighbour"
        )
        seed = check_int(
            "random_state",
            self.random_state,
            minimum=0,
            maximum=2**63 - 1,
            allow_none=True,
            fix="Use one fixed non-negative integer (None means 0), the same on every rank",
        )
        device = check_device(self.device)
        chunk_size = check_int("chunk_size", self.chunk_size, minimum=1, allow_none=True)
        resampler = check_resampler(self.resampler, self.sampling_strategy, self.k_neighbors)
        return SMOTEParams(
            sampling_strategy,
            k_neighbors,
            0 if seed is None else seed,
            device,
            chunk_size,
            resampler,
        )

    def _start(self, X: Any, y: Any) -> tuple[SMOTEParams, torch.Tensor, LabelIndex, np.ndarray]:
        """Check everything, set the fitted attributes every fit sets; return the plan."""
        params = self.check_params()
        tensor = as_matrix(X)
        index = LabelIndex(y)
        if len(index) != tensor.shape[0]:
            fail("y", f"one label per row of X ({tensor.shape[0]})", f"{len(index)} labels")
        if params.resampler is None:
            new = new_counts(index, params.sampling_strategy, params.k_neighbors)
            self.sampling_strategy_ = {
                c: int(m) for c, m in zip(index.keys(), new.tolist(), strict=True)
            }
        else:
            new = np.zeros(index.num_classes, dtype=np.int64)
        self.n_features_in_ = int(tensor.shape[1])
        self.classes_ = index.classes
        return params, tensor, index, new

    def _record(self, draw: Draw) -> None:
        self.base_indices_ = draw.base
        self.neighbor_indices_ = draw.neighbor
        self.steps_ = draw.steps
        if draw.planned is not None:
            self.sampling_strategy_ = draw.planned

    def fit(self, X: Any, y: Any, **params: Any) -> SMOTE:
        """Check the data and build the neighbour tables once, for :meth:`draw`.

        ``X`` is kept (not copied) until the next ``fit``; the tables hold ``k_neighbors``
        indices per row of every class that gets new rows.

        Args:
            X: ``[N, d]`` floating torch tensor or numpy array, finite.
            y: N class labels (tensor, array or sequence).
            **params: Accepted for scikit-learn's signature; must be empty.

        Returns:
            ``self``.

        Raises:
            TypeError: As for :meth:`fit_resample`.
            ValueError: As for :meth:`fit_resample`.

        Example:
            >>> X = torch.tensor([[0.0], [1.0], [2.0], [3.0], [9.0], [8.0], [7.0]])
            >>> smote = SMOTE(k_neighbors=2, random_state=3).fit(X, [0, 0, 0, 0, 1, 1, 1])
            >>> smote.sampling_strategy_
            {0: 0, 1: 1}
        """
        if params:
            fail("fit", "no keyword arguments besides X and y", sorted(params), kind=TypeError)
        checked, tensor, index, new = self._start(X, y)
        tables = (
            None if checked.resampler is not None else neighbor_tables(tensor, index, new, checked)
        )
        self._fitted = (checked, tensor, index, new, tables)
        return self

    def draw(self, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The synthetic rows of ``epoch`` from the data of the last :meth:`fit`.

        A pure function of ``(random_state, epoch)``: epoch 0 gives exactly the synthetic
        rows ``fit_resample`` appends. It uses the parameters as they were at ``fit`` (call
        ``fit`` again after ``set_params``). Sets ``base_indices_``, ``neighbor_indices_`` and
        ``steps_`` (and, with a resampler, ``sampling_strategy_``).

        Args:
            epoch: An integer in ``[0, 2**62]``.

        Returns:
            ``(rows, codes)``: the synthetic rows ``[M, d]`` (``X``'s device and dtype),
            grouped by class in sorted class order, and their int64 class positions;
            ``classes_[codes]`` are their labels.

        Raises:
            sklearn.exceptions.NotFittedError: Before :meth:`fit` (``fit_resample`` keeps no
                data to draw from).

        Example:
            >>> X = torch.tensor([[0.0], [1.0], [2.0], [3.0], [9.0], [8.0], [7.0]])
            >>> smote = SMOTE(k_neighbors=2).fit(X, [0, 0, 0, 0, 1, 1, 1])
            >>> rows, codes = smote.draw(epoch=4)
            >>> tuple(rows.shape), smote.classes_[codes.numpy()].tolist()
            ((1, 1), [1])
            >>> X_res, _ = SMOTE(k_neighbors=2).fit_resample(X, [0, 0, 0, 0, 1, 1, 1])
            >>> bool(torch.equal(smote.draw(0)[0], X_res[7:]))
            True
        """
        epoch = check_epoch(epoch)
        fitted = self._fitted
        if fitted is None:
            fail(
                "SMOTE.draw",
                "a SMOTE fitted with fit(X, y)",
                Text("one without data to draw from"),
                "Call fit(X, y) first (fit_resample keeps no data)",
                kind=NotFittedError,
            )
        params, tensor, index, new, tables = fitted
        draw = synthesize(tensor, index, new, params, epoch, tables)
        self._record(draw)
        return draw.rows, draw.codes

    def fit_resample(self, X: Any, y: Any, **params: Any) -> tuple[Any, Any]:
        """Over-sample ``(X, y)``; return ``(X_res, y_res)`` of the same kinds as given.

        Keeps no data: a later :meth:`draw` needs :meth:`fit`.

        Args:
            X: ``[N, d]`` floating torch tensor or numpy array, finite.
            y: N class labels (tensor, array or sequence).
            **params: Accepted for imbalanced-learn's signature; must be empty.

        Returns:
            ``(X_res, y_res)``: the N original rows, then the synthetic rows grouped by class
            in sorted class order. A tensor ``X`` gives a tensor on its device and dtype; a
            tensor ``y`` gives a tensor, anything else a numpy array.

        Raises:
            TypeError: For a parameter of the wrong type, a non-floating or non-array ``X``
                or float labels.
            ValueError: For a ``sampling_strategy`` imbalanced-learn rejects (same cases),
                a class with ``k_neighbors`` or fewer samples that gets new rows, NaN/inf in
                ``X``, or ``len(X) != len(y)``.

        Example:
            >>> X = np.array([[0.0], [1.0], [2.0], [3.0], [9.0], [8.0], [7.0]])
            >>> X_res, y_res = SMOTE(k_neighbors=2).fit_resample(X, [0, 0, 0, 0, 1, 1, 1])
            >>> X_res.shape, y_res.tolist()
            ((8, 1), [0, 0, 0, 0, 1, 1, 1, 1])
        """
        if params:
            fail(
                "fit_resample",
                "no keyword arguments besides X and y",
                sorted(params),
                kind=TypeError,
            )
        self._fitted = None
        checked, tensor, index, new = self._start(X, y)
        n = tensor.shape[0]
        if checked.resampler is None:
            # The output is allocated once; the synthetic rows are written into its tail.
            X_res = tensor.new_empty(n + int(new.sum()), tensor.shape[1])
            X_res[:n] = tensor
            draw = synthesize(tensor, index, new, checked, 0, out=X_res[n:])
        else:
            draw = synthesize(tensor, index, new, checked, 0)
            X_res = torch.cat([tensor, draw.rows])
        self._record(draw)
        new_labels = index.classes[draw.codes.numpy()]
        if isinstance(y, torch.Tensor):
            y_res: Any = torch.cat([y, torch.as_tensor(new_labels, dtype=y.dtype, device=y.device)])
        else:
            y_res = np.concatenate([index.labels, new_labels.astype(index.labels.dtype)])
        return (X_res.numpy() if isinstance(X, np.ndarray) else X_res), y_res

    def _fit_resample(self, X: Any, y: Any, **params: Any) -> tuple[Any, Any]:
        # imbalanced-learn's abstract hook; fit_resample above is the whole implementation.
        return self.fit_resample(X, y, **params)
