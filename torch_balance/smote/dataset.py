"""The dataset a classifier head is retrained on: real embeddings plus SMOTE'd ones.

:class:`SMOTEDataset` runs the encoder once (:func:`~torch_balance.smote.embed.embed`, with an
optional cache), fits a :class:`~torch_balance.smote.smote.SMOTE` once (the neighbour tables)
and draws each epoch's synthetic rows with :meth:`SMOTE.draw
<torch_balance.smote.smote.SMOTE.draw>`, into shared memory for DataLoader workers.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from torch_balance._epoch import check_epoch
from torch_balance._shared_epoch import SameDrawWatch, SharedEpoch
from torch_balance._validation import (
    Text,
    check_bool,
    check_index,
    check_int,
    check_seed,
    fail,
    internal,
)
from torch_balance.labels import LabelIndex
from torch_balance.smote.embed import check_module, load_or_embed, module_device
from torch_balance.smote.smote import SMOTE

__all__ = ["SMOTEDataset"]


class SMOTEDataset(Dataset):
    """Real embeddings plus SMOTE'd ones: the dataset a classifier head is retrained on.

    The encoder runs once (:func:`~torch_balance.embed`); the neighbour tables are built once
    (:meth:`SMOTE.fit`); each epoch's synthetic rows are drawn from ``(seed, epoch)``
    (:meth:`SMOTE.draw`). Item ``i`` is ``(embedding, label)``:
    the real rows first (row ``i`` is sample ``i`` of ``dataset``), then the synthetic rows
    grouped by class. This is classifier re-training (cRT, Kang et al., ICLR 2020) with SMOTE
    in feature space instead of re-sampling; shuffle with the DataLoader.

    ``set_epoch(e)`` redraws the synthetic rows in the main process into shared memory, so
    DataLoader workers, persistent ones included, read the new rows. Nothing of the encoder
    is kept: the dataset pickles cheaply.

    Args:
        dataset: A map-style dataset of ``(input, label)`` items (or inputs with labels that
            :func:`~torch_balance.get_labels` reads).
        encoder: The frozen backbone, mapping inputs to ``[batch, d]``.
        sampling_strategy: As for :class:`SMOTE`.
        k_neighbors: As for :class:`SMOTE`.
        seed: The seed; epoch ``e`` is a pure function of ``(seed, e)``.
        resampler: An imbalanced-learn over-sampler to use instead (see :class:`SMOTE`).
        decoder: Optional module mapping embeddings back to inputs (as in DeepSMOTE); each
            draw's synthetic rows are decoded into :attr:`synthetic_inputs`, which must have
            the inputs' shape.
        cache: A file for the embeddings: written the first time, read afterwards, refused
            (``ValueError``) when the dataset length, labels, encoder weights or input shape
            no longer match.
        batch_size: For the encoder (and decoder) passes.
        num_workers: DataLoader workers for the encoder pass.
        device: Where the encoder, the neighbour search and the decoder run.
        chunk_size: As for :class:`SMOTE`.
        progress: Show a progress bar during the encoder pass (only when stderr is a
            terminal).

    Attributes:
        embeddings: The real rows, float32 ``[N, d]``.
        synthetic: This epoch's synthetic rows ``[M, d]``.
        is_synthetic: Bool tensor, True for the synthetic items.
        synthetic_inputs: The decoded synthetic rows, or None without a decoder.
        smote: The :class:`SMOTE` object; its ``base_indices_``, ``neighbor_indices_`` and
            ``steps_`` describe this epoch's synthetic rows.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> images = torch.arange(32, dtype=torch.float32).reshape(8, 2, 2) % 7
        >>> base = TensorDataset(images, torch.tensor([0, 0, 0, 0, 0, 1, 1, 1]))
        >>> ds = SMOTEDataset(base, torch.nn.Flatten(), k_neighbors=2, progress=False)
        >>> len(ds), ds.is_synthetic.sum().item(), ds[9][1]
        (10, 2, 1)
        >>> before = ds.synthetic.clone()
        >>> ds.set_epoch(1)
        >>> bool(torch.equal(before, ds.synthetic))
        False
    """

    def __init__(
        self,
        dataset: Any,
        encoder: torch.nn.Module,
        *,
        sampling_strategy: Any = "auto",
        k_neighbors: int = 5,
        seed: int = 0,
        resampler: Any = None,
        decoder: torch.nn.Module | None = None,
        cache: str | os.PathLike | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        device: str | torch.device | None = None,
        chunk_size: int | None = None,
        progress: bool = True,
    ) -> None:
        check_module("encoder", encoder)
        if decoder is not None:
            check_module("decoder", decoder)
        if cache is not None and not isinstance(cache, str | os.PathLike):
            fail("cache", "None or a file path", cache, kind=TypeError)
        self.seed = check_seed(seed)
        self.smote = SMOTE(
            sampling_strategy,
            k_neighbors,
            random_state=self.seed,
            device=device,
            chunk_size=chunk_size,
            resampler=resampler,
        )
        # Checked before the encoder pass, which may take long.
        self._device = self.smote.check_params().device
        self._batch_size = check_int("batch_size", batch_size, minimum=1)
        embeddings, labels, shape = load_or_embed(
            dataset,
            encoder,
            cache,
            batch_size=self._batch_size,
            num_workers=check_int("num_workers", num_workers, minimum=0),
            device=self._device,
            progress=check_bool("progress", progress),
        )
        self.embeddings: torch.Tensor = embeddings.share_memory_()
        self.index = LabelIndex(labels)
        self.input_shape: tuple[int, ...] = shape
        self._decoder = decoder
        self.smote.fit(self.embeddings, self.index.labels)  # the neighbour tables, once
        self._epoch = SharedEpoch()
        self._watch = SameDrawWatch()
        self._valid = torch.ones(1, dtype=torch.bool).share_memory_()
        self.synthetic_inputs: torch.Tensor | None = None
        self._store(*self.smote.draw(0))

    def _decode(self, rows: torch.Tensor) -> torch.Tensor:
        decoder = self._decoder
        internal(decoder is not None, "decode without a decoder")
        assert decoder is not None  # for mypy
        device = self._device or module_device(decoder)
        parts = []
        was_training = decoder.training
        decoder.eval()
        try:
            with torch.no_grad():
                for lo in range(0, rows.shape[0], self._batch_size):
                    out = decoder(rows[lo : lo + self._batch_size].to(device))
                    expected = (min(self._batch_size, rows.shape[0] - lo), *self.input_shape)
                    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
                        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)
                        fail(
                            "decoder",
                            f"outputs of the inputs' shape (batch, *{self.input_shape}) = "
                            f"{expected}",
                            Text(f"outputs of shape {got}"),
                            "Make the decoder end with a reshape to the input shape, e.g. "
                            f"torch.nn.Unflatten(1, {self.input_shape})",
                        )
                    parts.append(out.detach().to("cpu", torch.float32))
        finally:
            decoder.train(was_training)
        if not parts:
            return torch.empty(0, *self.input_shape)
        return torch.cat(parts)

    def _store(self, rows: torch.Tensor, codes: torch.Tensor) -> None:
        decoded = self._decode(rows) if self._decoder is not None else None
        same = (
            hasattr(self, "synthetic")
            and self.synthetic.shape == rows.shape
            and (decoded is None or self.synthetic_inputs is not None)
        )
        if same:
            self.synthetic.copy_(rows)
            self._codes.copy_(codes)
            if decoded is not None and self.synthetic_inputs is not None:
                self.synthetic_inputs.copy_(decoded)
            return
        if hasattr(self, "synthetic"):
            # Workers that still hold the old buffers must not read them silently.
            self._valid.fill_(False)
            self._valid = torch.ones(1, dtype=torch.bool).share_memory_()
        self.synthetic: torch.Tensor = rows.float().contiguous().share_memory_()
        self._codes: torch.Tensor = codes.clone().share_memory_()
        self.synthetic_inputs = None if decoded is None else decoded.share_memory_()

    @property
    def epoch(self) -> int:
        """The epoch the synthetic rows are drawn for (shared with DataLoader workers)."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Redraw the synthetic rows for ``epoch`` (a pure function of seed and epoch)."""
        epoch = check_epoch(epoch)
        self._watch.reset()
        if epoch != self.epoch:
            self._store(*self.smote.draw(epoch))
            self._epoch.set(epoch)

    @property
    def is_synthetic(self) -> torch.Tensor:
        """True for the synthetic items of this epoch."""
        flags = torch.zeros(len(self), dtype=torch.bool)
        flags[self.embeddings.shape[0] :] = True
        return flags

    @property
    def labels(self) -> np.ndarray:
        """The label of every item of this epoch."""
        synthetic = self.index.classes[self._codes.numpy()].astype(self.index.labels.dtype)
        return np.concatenate([self.index.labels, synthetic])

    def __len__(self) -> int:
        """The number of real plus synthetic rows."""
        return int(self.embeddings.shape[0] + self.synthetic.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        """Item ``i`` as ``(embedding, label)``: real rows first, then this epoch's synthetic."""
        i = check_index(i, len(self))
        self._watch.read("SMOTEDataset", len(self), self._epoch)
        n = self.embeddings.shape[0]
        if not bool(self._valid[0]):
            raise RuntimeError(
                "SMOTEDataset: the number of synthetic rows changed at set_epoch, and this "
                "worker still holds the old rows. Use persistent_workers=False with a "
                "resampler whose output size varies (e.g. KMeansSMOTE)"
            )
        if i < n:
            label = self.index.labels[i]
            row = self.embeddings[i]
        else:
            label = self.index.classes[int(self._codes[i - n])]
            # a copy: the buffer is rewritten in place at the next set_epoch, and an item
            # kept from this epoch must not change with it
            row = self.synthetic[i - n].clone()
        return row, label.item() if hasattr(label, "item") else label

    def __repr__(self) -> str:
        return (
            f"SMOTEDataset(real={self.embeddings.shape[0]}, synthetic={self.synthetic.shape[0]}, "
            f"dim={self.embeddings.shape[1]}, classes={self.index.num_classes}, "
            f"seed={self.seed}, epoch={self.epoch})"
        )
