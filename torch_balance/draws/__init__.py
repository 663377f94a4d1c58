"""Pure kernels: (labels grouped by class, plan, seed, epoch) -> sample indices.

Nothing here carries randomness between calls. Every random choice comes from a
``torch.Generator`` made by :func:`~torch_balance._rng.generator` from integers (seed, a
:class:`~torch_balance._rng.Stream` tag, and the epoch or walk position), so an epoch is a
pure function of its inputs and the global RNGs are never touched.

Without replacement, class c with ``n`` samples asked for ``k`` of them gets every sample
``k // n`` times plus ``r = k % n`` *extra* distinct samples. The extras walk through one
permutation of the class per *cycle*: each epoch takes the next ``r`` positions, so across
epochs every sample is used once before any is used again. An epoch that reaches the end of
a cycle takes what is left and tops up, still without duplicates, from the start of the same
permutation; the next epoch opens a new cycle with a fresh permutation.

The package: :mod:`~torch_balance.draws.walk` (the plain reference walk and the shuffle),
:mod:`~torch_balance.draws.fast` (the walk cache, the next order, the helper thread; the same
epochs), :mod:`~torch_balance.draws.weights` (members by per-sample weight),
:mod:`~torch_balance.draws.epoch` (:class:`EpochDraw`: the weights-or-walk choice and the
thread policy that samplers, batch samplers and dataset wrappers share),
:mod:`~torch_balance.draws.batches`, :mod:`~torch_balance.draws.repeat` and
:mod:`~torch_balance.draws.weighted` (``WeightedSampler``'s kernels),
:mod:`~torch_balance.draws.rare_class`, :mod:`~torch_balance.draws.mixtures` (source
shares, the joined epoch, a stream's source choices) and
:mod:`~torch_balance.draws.permute` (a keyed random-access permutation: which samples of a
class a stream reader's share gives the extra copies, computed at those samples alone). The
stateful helpers in ``fast`` keep caches between epochs, never randomness: each epoch is the
same without them.
"""

from __future__ import annotations

from torch_balance._rng import generator
from torch_balance.draws.batches import class_balanced_grid, class_sequence, stratified_order
from torch_balance.draws.epoch import EpochDraw
from torch_balance.draws.fast import (
    NextOrder,
    WalkCache,
    draw_epoch,
    pending_walks,
    shuffled_epoch,
)
from torch_balance.draws.mixtures import join_sources, source_choices, temperature_shares
from torch_balance.draws.permute import permute, permute_reference
from torch_balance.draws.repeat import repeat_copies, repeat_values
from torch_balance.draws.walk import draw_walks, shuffle_order, walk_orders, walk_state
from torch_balance.draws.weights import draw_within_class, group_sample_weights

__all__ = [
    "EpochDraw",
    "NextOrder",
    "WalkCache",
    "class_balanced_grid",
    "class_sequence",
    "draw_epoch",
    "draw_walks",
    "draw_within_class",
    "generator",
    "group_sample_weights",
    "join_sources",
    "pending_walks",
    "permute",
    "permute_reference",
    "repeat_copies",
    "repeat_values",
    "shuffle_order",
    "shuffled_epoch",
    "source_choices",
    "stratified_order",
    "temperature_shares",
    "walk_orders",
    "walk_state",
]
