"""The encoder pass: :func:`embed` runs an encoder over a dataset once, optionally cached.

:func:`embed` returns the embeddings and labels of a dataset; :func:`load_or_embed` adds a
cache file, refused when the dataset length, labels, encoder weights or input shape no longer
match. The device and module checks shared by the smote package live here too.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from torch_balance._progress import progress_bar
from torch_balance._validation import (
    Text,
    check_bool,
    check_int,
    check_map_style,
    fail,
    internal,
    readable_tensor,
)
from torch_balance.labels import as_label_array, get_labels

__all__ = ["embed"]


def check_device(device: Any) -> torch.device | None:
    """``device`` as a ``torch.device`` (None stays None).

    Example:
        >>> check_device("cpu")
        device(type='cpu')
    """
    if device is None:
        return None
    if not isinstance(device, str | torch.device):
        fail("device", "None, a string such as 'cuda' or a torch.device", device, kind=TypeError)
    try:
        chosen = torch.device(device)
    except RuntimeError:
        fail("device", "a device name such as 'cpu', 'cuda' or 'cuda:1'", device)
    if chosen.type == "meta":
        fail("device", "a device that computes ('cpu', 'cuda', ...)", device, "Not 'meta'")
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (chosen.index or 0) >= count:
            fail("device", f"a CUDA device this machine has ({count} here)", device)
    return chosen


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); the CPU for a module without any.

    Example:
        >>> module_device(torch.nn.Linear(2, 2))
        device(type='cpu')
    """
    for parameter in module.parameters():
        return parameter.device
    for buffer in module.buffers():
        return buffer.device
    return torch.device("cpu")


def check_module(name: str, module: Any) -> torch.nn.Module:
    """``module`` if it is a ``torch.nn.Module``; ``TypeError`` naming ``name`` otherwise.

    Example:
        >>> check_module("encoder", "resnet")
        Traceback (most recent call last):
        ...
        TypeError: encoder: expected a torch.nn.Module, got 'str'
    """
    if not isinstance(module, torch.nn.Module):
        fail(name, "a torch.nn.Module", type(module).__name__, kind=TypeError)
    return module


def _collate(items: list[Any]) -> Any:
    """torch's ``default_collate``, its failure on items that do not batch named."""
    try:
        return default_collate(items)
    except (RuntimeError, TypeError) as error:
        fail(
            "dataset",
            "items that batch together (inputs of one shape, labels of one kind)",
            Text(f"items that do not ({error})"),
            "Resize or pad the inputs in the dataset's transform",
            kind=TypeError,
        )


def _batch_parts(batch: Any) -> tuple[Any, Any]:
    """(inputs, labels or None) of one collated batch."""
    if isinstance(batch, list | tuple):
        if len(batch) == 0:
            fail("dataset", "items (input, label) or bare inputs", "an empty tuple item")
        return batch[0], batch[1] if len(batch) > 1 else None
    return batch, None


def _to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=True)
    return inputs


def _cheap_labels(dataset: Any) -> np.ndarray | None:
    """The labels if :func:`get_labels` reads them without loading samples, else None.

    Where get_labels would scan the dataset (it warns first), the encoder pass collects the
    labels from its own batches instead, so the samples are loaded once, not twice.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "error", message="get_labels: no label attribute known", category=UserWarning
        )
        try:
            return get_labels(dataset, progress=False)
        except (TypeError, ValueError, UserWarning):
            return None


def _embed(
    dataset: Any,
    encoder: torch.nn.Module,
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device | None,
    progress: bool,
) -> tuple[torch.Tensor, np.ndarray, tuple[int, ...]]:
    """The encoder pass; also returns the shape of one input (for the cache and the decoder)."""
    check_map_style("dataset", dataset)
    total = len(dataset)
    if total == 0:
        fail("dataset", "at least one sample", "an empty dataset")
    labels = _cheap_labels(dataset)
    run_on = device if device is not None else module_device(encoder)
    # A DataLoader draws its workers' base seed from the global RNG unless given a generator.
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        generator=torch.Generator(),
        collate_fn=_collate,
    )
    out: torch.Tensor | None = None
    input_shape: tuple[int, ...] = ()
    batch_labels: list[Any] = []
    start = 0
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            for batch in progress_bar(loader, desc="embed", enabled=progress, leave=False):
                inputs, targets = _batch_parts(batch)
                rows = len(inputs)
                if out is None and isinstance(inputs, torch.Tensor):
                    input_shape = tuple(inputs.shape[1:])
                result = encoder(_to_device(inputs, run_on))
                if not isinstance(result, torch.Tensor):
                    fail(
                        "encoder",
                        "a module returning one tensor",
                        type(result).__name__,
                        "Wrap it so that it returns only the embedding tensor",
                        kind=TypeError,
                    )
                readable_tensor("encoder", result)
                if result.is_complex() or result.dtype == torch.bool:
                    fail(
                        "encoder",
                        "real-valued outputs",
                        Text(f"outputs of dtype {result.dtype}"),
                        kind=TypeError,
                    )
                if result.ndim != 2:
                    fail(
                        "encoder",
                        "2-D outputs (batch x features)",
                        Text(f"outputs of shape {tuple(result.shape)}"),
                        "Flatten them: torch.nn.Sequential(encoder, torch.nn.Flatten()), or "
                        "pool first (e.g. torch.nn.AdaptiveAvgPool2d(1) then Flatten)",
                    )
                if result.shape[0] != rows:
                    fail(
                        "encoder",
                        f"one output row per input of the batch ({rows})",
                        Text(f"{result.shape[0]} rows (output shape {tuple(result.shape)})"),
                        "The encoder must keep the batch dimension first",
                    )
                finite = torch.isfinite(result).all(dim=1)
                if not bool(finite.all()):
                    bad = (torch.nonzero(~finite).flatten().cpu() + start)[:10].tolist()
                    fail(
                        "encoder",
                        "finite embeddings",
                        Text(f"NaN or inf in the embeddings of samples {bad}"),
                        "Check those inputs and the encoder's numerical stability",
                    )
                if out is None:
                    out = torch.empty(total, result.shape[1], dtype=torch.float32)
                elif result.shape[1] != out.shape[1]:
                    fail(
                        "encoder",
                        f"the same embedding width for every batch ({out.shape[1]})",
                        result.shape[1],
                    )
                out[start : start + rows] = result.detach().to("cpu", torch.float32)
                start += rows
                if labels is None and targets is not None:
                    batch_labels.extend(
                        targets.tolist() if isinstance(targets, torch.Tensor) else list(targets)
                    )
    finally:
        encoder.train(was_training)
    internal(out is not None and start == total, "embed saw fewer rows than len(dataset)")
    if labels is None:
        if len(batch_labels) != total:
            fail(
                "dataset",
                "items (input, label), or labels get_labels can read",
                Text(f"{type(dataset).__name__} whose items carry no label"),
                "Give it .targets, or return (input, label) from __getitem__",
                kind=TypeError,
            )
        labels = as_label_array(batch_labels)
    if labels.shape[0] != total:
        fail("dataset", f"one label per sample ({total})", f"{labels.shape[0]} labels")
    assert out is not None  # for mypy; checked above
    return out, labels, input_shape


def embed(
    dataset: Any,
    encoder: torch.nn.Module,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | np.ndarray]:
    """Run ``encoder`` over ``dataset`` once and return its embeddings and labels.

    The encoder runs in eval mode under ``torch.no_grad()``; its previous mode is restored
    afterwards, even on error. Batches are read in order (no shuffle), so row ``i`` is sample
    ``i``. Use the dataset's evaluation transforms: random augmentation makes the embeddings
    (and a cache of them) depend on the draw.

    Args:
        dataset: A map-style dataset whose items are ``(input, label, ...)`` or bare inputs.
        encoder: A module mapping a batch of inputs to a ``[batch, d]`` tensor.
        batch_size: Inputs per forward pass.
        num_workers: DataLoader workers reading the dataset.
        device: Where the encoder runs (it is not moved); default the device of its
            parameters, the CPU for a module without any.
        progress: Show a tqdm progress bar (only when stderr is a terminal).

    Returns:
        ``(embeddings, labels)``: a float32 ``Tensor[N, d]`` on the CPU and a 1-D CPU tensor
        of N labels (int64 for integer labels, bool for booleans), read by
        :func:`~torch_balance.get_labels` when it can, else from the batches. String labels,
        which a tensor cannot hold, come as a 1-D numpy object array.

    Raises:
        TypeError: For a dataset without ``__getitem__``/``__len__``, an encoder that is not
            a module or returns no tensor, or items without labels that cannot be read.
        ValueError: For outputs that are not 2-D, have another row count than the batch, or
            hold NaN/inf (the message names the samples).

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> images = torch.arange(24, dtype=torch.float32).reshape(6, 1, 2, 2)
        >>> data = TensorDataset(images, torch.tensor([0, 0, 0, 0, 1, 1]))
        >>> X, y = embed(data, torch.nn.Flatten(), batch_size=4, progress=False)
        >>> tuple(X.shape), y.dtype, y.tolist()
        ((6, 4), torch.int64, [0, 0, 0, 0, 1, 1])
    """
    check_module("encoder", encoder)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    num_workers = check_int("num_workers", num_workers, minimum=0)
    check_bool("progress", progress)
    embeddings, labels, _ = _embed(
        dataset,
        encoder,
        batch_size=batch_size,
        num_workers=num_workers,
        device=check_device(device),
        progress=progress,
    )
    return embeddings, label_tensor(labels)


def label_tensor(labels: np.ndarray) -> torch.Tensor | np.ndarray:
    """Labels as a CPU tensor (int64 for integers, bool for booleans), like the embeddings;
    string labels, which no tensor holds, stay a numpy array.

    Example:
        >>> label_tensor(np.array([2, 0], dtype=np.int32))
        tensor([2, 0])
        >>> label_tensor(np.array(["a", "b"], dtype=object)).tolist()
        ['a', 'b']
    """
    if labels.dtype.kind == "i" or (labels.dtype.kind == "u" and int(labels.max()) < 2**63):
        return torch.from_numpy(labels.astype(np.int64))
    if labels.dtype.kind == "b":
        return torch.from_numpy(labels.copy())
    return labels


def _digest_state(module: torch.nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(type(module).__qualname__.encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        if isinstance(tensor, torch.Tensor):
            flat = tensor.detach().cpu().contiguous()
            digest.update(f"{flat.dtype}{tuple(flat.shape)}".encode())
            digest.update(flat.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(tensor).encode())
    return digest.hexdigest()


def _digest_labels(labels: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    if labels.dtype.kind in "biu":
        digest.update(labels.dtype.str.encode())
        digest.update(np.ascontiguousarray(labels).tobytes())
    else:
        digest.update(repr(labels.tolist()).encode())
    return digest.hexdigest()


def _first_input_shape(dataset: Any) -> tuple[int, ...] | None:
    item = dataset[0]
    inputs = item[0] if isinstance(item, list | tuple) else item
    shape = getattr(inputs, "shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


def _fingerprint(
    dataset: Any, encoder: torch.nn.Module, labels: np.ndarray | None
) -> dict[str, Any]:
    return {
        "dataset length": len(dataset),
        "labels": None if labels is None else _digest_labels(labels),
        "encoder state_dict": _digest_state(encoder),
        "input shape": _first_input_shape(dataset),
    }


_CACHE_KEYS = ("fingerprint", "embeddings", "labels", "input_shape")


def _read_cache(path: str) -> dict[str, Any]:
    """A cache file written by :func:`load_or_embed`, or a ValueError that says what to do."""
    fix = f"Delete {path!r} to recompute the embeddings, or pass another cache path"
    try:
        stored = torch.load(path, weights_only=True)
    except Exception as error:  # garbage, truncated, a directory, another program's file
        fail(
            "cache",
            "a file of embeddings written by SMOTEDataset",
            Text(f"{path!r}, which cannot be read ({type(error).__name__})"),
            fix,
        )
    if not isinstance(stored, dict) or any(key not in stored for key in _CACHE_KEYS):
        fail(
            "cache",
            "a file of embeddings written by SMOTEDataset",
            Text(f"{path!r}, which holds something else"),
            fix,
        )
    if not isinstance(stored["fingerprint"], dict) or not isinstance(
        stored["embeddings"], torch.Tensor
    ):
        fail("cache", "a file of embeddings written by SMOTEDataset", Text(repr(path)), fix)
    embeddings, labels, shape = stored["embeddings"], stored["labels"], stored["input_shape"]
    if embeddings.dim() != 2 or not embeddings.dtype.is_floating_point:
        what = f"embeddings of shape {tuple(embeddings.shape)} and dtype {embeddings.dtype}"
        fail("cache", "a 2-D float tensor of embeddings", Text(f"{path!r} with {what}"), fix)
    if not (isinstance(labels, torch.Tensor) and labels.dim() == 1) and not isinstance(
        labels, list
    ):
        what = type(labels).__name__
        fail("cache", "labels as a 1-D tensor or a list", Text(f"{path!r} with {what}"), fix)
    if len(labels) != embeddings.shape[0]:
        what = f"{len(labels)} labels for {embeddings.shape[0]} embeddings"
        fail("cache", "one label per embedding", Text(f"{path!r} with {what}"), fix)
    if not isinstance(shape, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        fail("cache", "an input_shape of integers >= 0", Text(f"{path!r} with {shape!r}"), fix)
    return stored


def load_or_embed(
    dataset: Any,
    encoder: torch.nn.Module,
    cache: str | os.PathLike | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, np.ndarray, tuple[int, ...]]:
    """The encoder pass through a cache file: read when it matches, else computed and written.

    Args:
        dataset: As for :func:`embed`.
        encoder: As for :func:`embed`.
        cache: The file, or None for no cache.
        **kwargs: ``batch_size``, ``num_workers``, ``device`` (a ``torch.device`` or None)
            and ``progress``, already checked.

    Returns:
        ``(embeddings, labels, input shape)``; the input shape is ``()`` for non-tensor inputs.

    Raises:
        ValueError: For a cache made for another dataset length, labels, encoder state or
            input shape (delete it or pass another path).

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.zeros(4, 1, 3), torch.tensor([0, 0, 1, 1]))
        >>> X, y, shape = load_or_embed(
        ...     data, torch.nn.Flatten(), None,
        ...     batch_size=2, num_workers=0, device=None, progress=False,
        ... )
        >>> tuple(X.shape), y.tolist(), shape
        ((4, 3), [0, 0, 1, 1], (1, 3))
    """
    if cache is None:
        return _embed(dataset, encoder, **kwargs)
    path = os.fspath(cache)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):  # say so now, not after the whole encoder pass
        fail(
            "cache",
            "a file path in an existing directory",
            Text(f"{path!r}, whose directory {folder!r} does not exist"),
            "Create the directory first, or pass another cache path",
        )
    if os.path.exists(path):
        stored = _read_cache(path)
        now = _fingerprint(dataset, encoder, _cheap_labels(dataset))
        for key, value in now.items():
            then = stored["fingerprint"].get(key)
            if key == "input shape" and value is not None:
                value = list(value)
            if value is not None and then != value:
                fail(
                    "cache",
                    f"a file made for this dataset and encoder ({key}: {value})",
                    Text(f"{path!r}, made for {key}: {then}"),
                    f"Delete {path!r} to recompute the embeddings, or pass another cache path",
                )
        raw = stored["labels"]
        labels = as_label_array(raw.numpy() if isinstance(raw, torch.Tensor) else raw, "cache")
        return stored["embeddings"], labels, tuple(stored["input_shape"])
    embeddings, labels, shape = _embed(dataset, encoder, **kwargs)
    fingerprint = _fingerprint(dataset, encoder, labels)
    if fingerprint["input shape"] is not None:
        fingerprint["input shape"] = list(fingerprint["input shape"])
    torch.save(
        {
            "fingerprint": fingerprint,
            "embeddings": embeddings,
            "labels": torch.from_numpy(labels) if labels.dtype.kind in "biu" else labels.tolist(),
            "input_shape": list(shape),
        },
        path,
    )
    return embeddings, labels, shape
