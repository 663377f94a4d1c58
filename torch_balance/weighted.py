"""Per-sample weights: :class:`WeightedSampler`, the distributed weighted sampler.

One weight per sample (difficulty, domain, source quality, a running loss) instead of a plan
per class. Every rank draws the same global epoch from ``(seed, epoch)`` and the weights, and
keeps its share with ``DistributedSampler``'s rules, so a rank can draw a sample held by
any other, unlike sharding first and weighting within each shard.

The functional core is three pure kernels of ``(weights, num_samples, generator)``, in
:mod:`torch_balance.draws.weighted`; the weights' bookkeeping (the epoch's weights, newer ones
waiting, digests, the reports that ``update_weights`` combines) is
:mod:`torch_balance._weight_book`.

* :func:`iid_draws`: i.i.d. draws with ``P(i) = w_i / sum(w)``, sorted (the caller shuffles).
  ``K`` sorted uniforms are the normalised partial sums of ``K + 1`` exponentials (the
  order statistics of uniforms, Devroye, *Non-Uniform Random Variate Generation*, 1986,
  V.2), looked up in the float64 cumulative sum of the weights by one ``searchsorted`` of
  sorted queries, which reads the table nearly in order. No limit on the number of samples.
* :func:`successive_draws`: ``K`` draws without replacement with the distribution of
  ``torch.multinomial(replacement=False)`` (successive sampling: each draw picks among the
  samples not yet drawn in proportion to their weights), by exponential keys: the ``K``
  smallest ``E_i / w_i`` in increasing order (Efraimidis and Spirakis, "Weighted random
  sampling with a reservoir", Information Processing Letters 97(5), 2006).
* :class:`ExactLayout`: the exact mode. Sample ``i`` is due ``s_i = K w_i / sum(w)`` copies
  per epoch; it gets ``floor(s_i)`` and one more when a point of a unit-spaced comb falls in
  its segment of length ``s_i - floor(s_i)`` on a circle where the segments lie in a random
  order fixed for the run (systematic sampling, Madow 1949). The comb turns by the golden
  ratio each epoch, a low-discrepancy sequence, so each sample's running count stays within
  a few copies of its share (the error grows at most like ``log(epochs)``) and its mean
  converges to ``s_i``. Every epoch has exactly ``K`` indices and every count is the floor or
  the ceiling of the share.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from torch_balance._collective import all_gather_int, all_gather_varying, distributed
from torch_balance._epoch import Pass, SamplerShell
from torch_balance._rng import ORDER, Stream, SubStream, generator
from torch_balance._threads import Early, helper_allowed
from torch_balance._validation import (
    Text,
    check_bool,
    check_epoch_size,
    check_int,
    check_sample_weights,
    fail,
    scaled_weights,
)
from torch_balance._weight_book import (
    REDUCE,
    Reduce,
    WeightBook,
    check_update,
    combine_reports,
    weights_digest,
)
from torch_balance.draws import repeat_values
from torch_balance.draws.weighted import (
    ExactLayout,
    WeightLookup,
    chunk_size,
    iid_chunk,
    index_dtype,
    successive_draws,
)
from torch_balance.sharding import iter_shard_chunks

__all__ = ["WeightedSampler", "weights_digest"]

# Peak bytes per index of the epoch while it is drawn: uniforms (float64), the draws and the
# order (int32 or int64).
WEIGHTED_EPOCH_BYTES = 24


class WeightedSampler(SamplerShell):
    """Draw samples in proportion to per-sample weights, one global draw per epoch, sharded.

    ``torch.utils.data.WeightedRandomSampler``'s meaning, for DDP: every rank draws the same
    global epoch (the seed and the weights must be the same on every rank, and are checked)
    and keeps positions ``rank, rank + R, ...`` with ``DistributedSampler``'s padding and
    ``drop_last`` rules, so any rank can draw any sample. No 2**24 limit.

    Three ways to draw an epoch of ``K = num_samples`` indices:

    * ``replacement=True`` (default): i.i.d. draws, ``P(i) = w_i / sum(w)``, as
      ``WeightedRandomSampler`` (the same distribution, another random stream).
    * ``replacement=False``: no sample twice, in the sense of
      ``torch.multinomial(replacement=False)`` (successive sampling); needs at least ``K``
      positive weights.
    * ``exact=True``: sample ``i`` gets ``floor(s_i)`` or ``ceil(s_i)`` copies of its share
      ``s_i = K w_i / sum(w)``, the low-variance choice: the remainders are spread over the
      epochs so that each sample's running count stays within a few copies of
      ``epochs * s_i`` (see :class:`ExactLayout`). ``exact`` is a separate flag because it
      changes how counts are drawn, not whether a sample may repeat: with
      ``replacement=False`` it needs every share ``<= 1`` (at most one copy each).

    Weights that change during training: :meth:`set_weights` (the same weights on every
    rank) or :meth:`update_weights` (each rank reports what it measured; the library combines
    the reports across ranks). New weights are used from the next epoch on; an epoch partly
    handed out keeps the weights it was drawn with. When ``torch.distributed`` is initialised
    with more than one rank, :meth:`set_epoch` all-gathers a digest of the weights and raises
    if the ranks differ (a collective: every rank calls ``set_epoch``, as every trainer does).

    Checkpoints: :meth:`state_dict` holds the epoch, the position and a digest of the weights
    the epoch is drawn with, never the weights themselves (a ``StatefulDataLoader`` saves it at
    every checkpoint). Save :meth:`weights_state_dict` next to it when weights change during
    training and restore it with :meth:`load_weights_state_dict` before
    :meth:`load_state_dict`, which refuses a state saved for other weights.

    Args:
        weights: One finite weight ``>= 0`` per sample (sequence, numpy array or tensor),
            not all zero. Copied; later changes to your object do not reach the sampler.
        num_samples: Indices per global epoch ``K``; default ``len(weights)`` (with
            ``replacement=False``, the number of positive weights). Fixed for the run. The
            attribute ``num_samples`` is this rank's count, as in ``DistributedSampler``;
            ``K`` is :attr:`global_length`.
        replacement: Allow a sample more than once per epoch.
        exact: Floor-or-ceiling counts of the shares instead of random draws.
        seed: Shared seed; must be the same on every rank.
        num_replicas: Number of ranks; default from ``torch.distributed`` when each epoch
            starts (1 without a process group).
        rank: This rank; default likewise (0 without a process group).
        process_group: The data-parallel group (a ``ProcessGroup`` or a 1-D ``DeviceMesh``)
            whose ranks share the epoch; default the default group. Name it under tensor,
            context or pipeline parallelism, where the default group holds every process.
        drop_last: Drop the tail so that it divides evenly among ranks, instead of padding.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For negative, NaN, infinite or all-zero weights (naming the index), a
            ``num_samples`` that cannot be drawn, and other invalid values.

    Example:
        >>> sampler = WeightedSampler([1.0, 0.0, 3.0], num_samples=8, exact=True, seed=0)
        >>> len(sampler), sorted(sampler)
        (8, [0, 0, 2, 2, 2, 2, 2, 2])
        >>> sampler.set_weights([1.0, 1.0, 0.0])           # used from the next epoch on
        >>> sorted(sampler)
        [0, 0, 0, 0, 1, 1, 1, 1]
    """

    def __init__(
        self,
        weights: Any,
        num_samples: int | None = None,
        *,
        replacement: bool = True,
        exact: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        process_group: Any = None,
        drop_last: bool = False,
    ) -> None:
        self._open(seed, num_replicas, rank, drop_last, process_group)
        self._unchecked = False  # weights set by hand, not yet compared across ranks
        self.replacement = check_bool("replacement", replacement)
        self.exact = check_bool("exact", exact)
        values = check_sample_weights("weights", weights)
        self.num_weights = values.shape[0]
        if num_samples is None:
            num_samples = self.num_weights if replacement else int((values > 0).sum())
        self._global_length: int = check_int(
            "num_samples", num_samples, minimum=1, fix="Ask for at least one index per epoch"
        )
        check_epoch_size(
            "num_samples",
            self._global_length,
            WEIGHTED_EPOCH_BYTES,
            "Ask for a shorter epoch (num_samples)",
        )
        self._check_drawable("weights", values)
        self._book = WeightBook(values)
        self._ready()

    # -- weights ---------------------------------------------------------------------------

    def _check_drawable(self, name: str, values: torch.Tensor) -> None:
        """Refuse weights this sampler's ``num_samples`` cannot be drawn from."""
        if self.replacement:
            return
        k = self._global_length
        positive = int((values > 0).sum())
        if not self.exact and k > positive:
            fail(
                name,
                f"at least num_samples={k} positive weights to draw without replacement",
                Text(f"{positive} positive weights"),
                "Use replacement=True, a smaller num_samples, or give more samples a weight",
            )
        if self.exact:
            values = scaled_weights(values)
            top = int(torch.argmax(values))
            share = k * float(values[top]) / float(values.sum())
            most = float(values.sum()) / float(values[top])
            if share > 1 + 1e-9:
                fail(
                    name,
                    "every share num_samples * w_i / sum(w) <= 1 with exact=True and "
                    "replacement=False",
                    Text(f"a share of {share:.4g} copies at index {top}"),
                    f"Use replacement=True, or num_samples <= {most:.6g}",
                )

    @property
    def weights(self) -> torch.Tensor:
        """The weights the next pass draws with (or the pass under way); do not modify it in
        place: pass new weights to :meth:`set_weights`."""
        self._promote()
        return self._book.current

    def _mid_epoch(self) -> bool:
        """An epoch is partly handed out, or its pass has started."""
        return self._state.mid_epoch()

    def _promote(self) -> None:
        """At an epoch's start, weights set while the previous epoch was under way apply."""
        self._book.promote(self._mid_epoch())

    def set_weights(self, weights: Any) -> None:
        """New weights, used from the next epoch on (an epoch under way keeps its weights).

        Call it with the same weights on every rank (:meth:`update_weights` does that for
        you); :meth:`set_epoch` checks.

        Args:
            weights: One finite weight ``>= 0`` per sample, not all zero.

        Raises:
            TypeError, ValueError: As for the constructor's ``weights``, and for weights
                that ``num_samples`` cannot be drawn from without replacement.
        """
        values = check_sample_weights("weights", weights, self.num_weights)
        self._install(values)
        self._unchecked = True

    def _install(self, values: torch.Tensor) -> None:
        self._check_drawable("weights", values)
        self._book.offer(values)
        self._promote()

    def update_weights(
        self, indices: Any, values: Any, *, reduce: Reduce = "mean", momentum: float = 1.0
    ) -> torch.Tensor:
        """Combine what every rank measured into new weights, the same on every rank.

        Each rank reports ``values[j]`` for sample ``indices[j]`` (a per-sample loss, say) for
        the samples it saw. With ``torch.distributed`` initialised on more than one rank the
        reports are all-gathered (sizes first, then padded tensors; on the GPU for NCCL), so
        this is a collective: every rank must call it, each with its own reports (possibly
        none). Without a process group it uses this process's reports.

        A sample reported more than once (by two ranks, or twice by one: padding repeats
        samples) gets one value by ``reduce``; then ``w_i <- (1 - momentum) * w_i +
        momentum * value`` (``momentum=1``: the value replaces the weight). Samples nobody
        reported keep their weight. The result goes through :meth:`set_weights`: used from
        the next epoch on.

        Args:
            indices: Sample indices (1-D integers in ``[0, len(weights))``).
            values: One finite value ``>= 0`` per index, or one number for all of them.
            reduce: ``"mean"``, ``"sum"``, ``"max"`` or ``"min"`` of repeated reports.
            momentum: In ``(0, 1]``: how far each reported weight moves to its value.

        Returns:
            The new weights (float64).

        Raises:
            TypeError, ValueError: For malformed reports (on every rank, naming the rank
                whose reports were refused), or if the new weights are all zero.

        Example:
            >>> sampler = WeightedSampler([1.0, 1.0, 1.0, 1.0], seed=0)
            >>> sampler.update_weights([0, 2, 2], [4.0, 1.0, 3.0]).tolist()
            [4.0, 1.0, 2.0, 1.0]
            >>> sampler.update_weights([1], [3.0], momentum=0.5).tolist()
            [4.0, 2.0, 2.0, 1.0]
        """
        if not isinstance(reduce, str) or reduce not in REDUCE:
            fail("reduce", "'mean', 'sum', 'max' or 'min'", reduce)
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
            fail("momentum", "a number in (0, 1]", momentum, kind=TypeError)
        if not 0.0 < float(momentum) <= 1.0:
            fail("momentum", "a number in (0, 1]", momentum, "1 replaces the weight")
        error: Exception | None = None
        try:
            index, value = check_update(self.num_weights, indices, values)
        except (TypeError, ValueError) as raised:
            error = raised
            index = torch.zeros(0, dtype=torch.int64)
            value = torch.zeros(0, dtype=torch.float64)
        group = self._group
        if distributed(group):
            # -1: this rank's reports were refused; every rank raises instead of hanging. The
            # digest of the weights the reports update travels with the sizes: ranks that
            # disagree are told here, in a call every rank makes.
            size = torch.tensor([index.shape[0] if error is None else -1], dtype=torch.int64)
            gathered = all_gather_int(torch.cat([size, self._digest_tensor()]), group)
            self._refuse_differing([part[1:] for part in gathered])
            sizes = [int(part[0]) for part in gathered]
            refused = [r for r, s in enumerate(sizes) if s < 0]
            if refused and error is None:
                fail(
                    "update_weights",
                    "valid reports from every rank",
                    Text(f"reports refused on rank(s) {refused}"),
                    "See the error raised on those ranks",
                )
            if error is None:
                index = torch.cat(all_gather_varying(index, sizes, group))
                value = torch.cat(all_gather_varying(value, sizes, group))
        if error is not None:
            raise error
        unique, combined = combine_reports(index, value, reduce)
        new = self._book.latest().clone()
        if unique.shape[0]:
            at = torch.from_numpy(unique)
            old = new.index_select(0, at)
            mixed = torch.from_numpy(np.ascontiguousarray(combined, dtype=np.float64))
            if momentum != 1.0:
                mixed = old * (1.0 - float(momentum)) + mixed * float(momentum)
            new.index_copy_(0, at, mixed)
        values_checked = check_sample_weights("weights after update_weights", new)
        self._install(values_checked)
        return values_checked

    def _shards_itself(self) -> bool:
        """Whether this sampler splits the epoch across ranks itself (so every rank runs its
        passes and its collectives): not under a trainer that shards prepared loaders."""
        return self._ranks()[0] > 1

    def _digest_tensor(self) -> torch.Tensor:
        digest = self._book.latest_digest()
        return torch.tensor(
            np.frombuffer(bytes.fromhex(digest), dtype=np.int64).copy(), dtype=torch.int64
        )

    def check_weights_agree(self) -> None:
        """Check that every rank holds the same weights (a collective: every rank calls it).

        :meth:`update_weights` checks as part of its own exchange, and a pass checks at its
        start after :meth:`set_weights` or :meth:`load_weights_state_dict` (every rank starts
        its pass in step); :meth:`set_epoch` never runs a collective.

        Raises:
            ValueError: On every rank, naming the ranks whose weights differ from rank 0's.
        """
        if distributed(self._group):
            self._refuse_differing(all_gather_int(self._digest_tensor(), self._group))
        self._unchecked = False

    def _refuse_differing(self, parts: list[torch.Tensor]) -> None:
        differ = [r for r, part in enumerate(parts) if not torch.equal(part, parts[0])]
        if differ:
            fail(
                "weights",
                "the same weights on every rank",
                Text(f"weights on rank(s) {differ} that differ from rank 0's (digests differ)"),
                "Change weights with update_weights (every rank calls it with its own "
                "reports) or call set_weights with the same tensor on every rank",
            )

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch of the next pass (no collective: trainers call it on whatever they
        find, not always on every rank in step)."""
        self._state.set_epoch(epoch)
        self._promote()

    # -- checkpoints -----------------------------------------------------------------------

    def weights_state_dict(self) -> dict[str, Any]:
        """The weights a checkpoint needs, to save next to :meth:`state_dict`.

        ``"weights"`` are those the epoch the state describes is drawn with; ``"next"`` the
        newer weights set while it was under way (None if none).
        """
        self._promote()
        return {
            "weights": self._book.current.clone(),
            "next": None if self._book.next is None else self._book.next.clone(),
        }

    def load_weights_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`weights_state_dict` (call it before :meth:`load_state_dict`)."""
        if not isinstance(state, dict) or "weights" not in state:
            fail(
                "state",
                "a dict from weights_state_dict()",
                Text(type(state).__name__),
                kind=TypeError,
            )
        values = check_sample_weights("state['weights']", state["weights"], self.num_weights)
        self._check_drawable("state['weights']", values)
        later = None
        if state.get("next") is not None:
            later = check_sample_weights("state['next']", state["next"], self.num_weights)
            self._check_drawable("state['next']", later)
        self._book.restore(values, later)
        self._unchecked = True

    def _num_indices(self) -> int:
        return self.num_weights

    def _fingerprint(self) -> str:
        return f"{self.num_weights} samples"

    def _own_settings(self, epoch: int) -> dict[str, Any]:
        return {
            "weights": self._book.current_digest(),
            "num_samples": self._global_length,
            "replacement": self.replacement,
            "exact": self.exact,
        }

    def state_dict(self) -> dict[str, Any]:
        """Where this rank stands: epoch, items handed out, and the digest of the weights that
        epoch is drawn with (the weights themselves: :meth:`weights_state_dict`)."""
        self._promote()
        return super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`.

        Raises:
            ValueError: If the state was saved for other weights (restore them first with
                :meth:`load_weights_state_dict` or :meth:`set_weights`), another seed,
                ``num_samples``, mode, world size or rank.
        """
        if isinstance(state_dict, dict) and state_dict.get("kind") == type(self).__name__:
            saved = state_dict.get("weights")
            if saved != self._book.current_digest():
                fail(
                    "state_dict['weights']",
                    "a state saved for this sampler's weights",
                    Text(f"a state saved for other weights (digest {saved})"),
                    "Restore the weights saved with the checkpoint first: "
                    "load_weights_state_dict(...) or set_weights(...)",
                )
        super().load_state_dict(state_dict)
        self._promote()

    # -- drawing ---------------------------------------------------------------------------

    def _exact_layout(self) -> ExactLayout:
        book = self._book
        if book.layout is None:
            book.layout = ExactLayout(
                book.current, self._global_length, self.seed, at_most_one=not self.replacement
            )
        return book.layout

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = generator(self.seed, Stream.WEIGHTED, epoch, ORDER)
        k = self._global_length
        return torch.randperm(k, generator=g, dtype=index_dtype(k))

    def _draw(self, epoch: int, helper: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, order)`` without replacement or in exact mode: the epoch is
        ``values[order]``."""
        k = self._global_length
        if not self.exact:
            g = generator(self.seed, Stream.WEIGHTED_KEYS, epoch)
            drawn = successive_draws(self._book.current, k, g)
            return drawn, torch.arange(k, dtype=index_dtype(k))
        order = Early(self._permutation, epoch, helper=helper)
        values = repeat_values(self._exact_layout().copies(epoch))
        return values, order.result()

    def _iid(self, epoch: int) -> tuple[Callable[[int], torch.Tensor], int]:
        """``(chunk, size)``: chunk ``c`` of the i.i.d. epoch is ``chunk(c)``."""
        k = self._global_length
        size = chunk_size(k)
        lookup = WeightLookup(self._book.current)
        seed = self.seed

        def chunk(c: int) -> torch.Tensor:
            g = generator(seed, Stream.WEIGHTED, epoch, SubStream.CHUNK, c)
            return iid_chunk(lookup, min(size, k - c * size), g)

        return chunk, size

    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor:
        """The global epoch (before sharding) as one tensor, in iteration order."""
        self._promote()
        epoch = self._epoch_arg(epoch)
        if self.replacement and not self.exact:
            chunk, size = self._iid(epoch)
            return torch.cat([chunk(c) for c in range(-(-self._global_length // size))])
        values, order = self._draw(epoch)
        return values.index_select(0, order)

    def sample_counts(self, epoch: int | None = None) -> torch.Tensor:
        """How many times each sample appears in the global epoch (before padding)."""
        return torch.bincount(self.epoch_indices(epoch).long(), minlength=self.num_weights)

    def __iter__(self) -> Iterator[int]:
        """Yield this rank's indices of the current epoch."""
        self._promote()
        if self._unchecked and self._shards_itself():
            self.check_weights_agree()  # every rank starts its pass in step
        return super().__iter__()

    def _source(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._draw(epoch, helper=helper_allowed(self._global_length))

    def _chunks(self, current: Pass, world: int, rank: int) -> Iterator[list[Any]]:
        if not self.replacement or self.exact:
            return super()._chunks(current, world, rank)
        chunk, size = self._iid(current.epoch)
        k = self._global_length
        return iter_shard_chunks(chunk, size, k, world, rank, self.drop_last, current.start)

    def extra_repr(self) -> str:
        """The settings shown by ``repr()``."""
        mode = "exact" if self.exact else "i.i.d." if self.replacement else "successive"
        return (
            f"num_weights={self.num_weights}, num_samples={self._global_length}, "
            f"replacement={self.replacement}, mode={mode!r}"
        )
