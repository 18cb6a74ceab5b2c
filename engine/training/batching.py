"""Batches of a job's dataset as the model's named input tensors: text tokenized with the
checkpoint's own tokenizer, arrays cast to the model's input dtypes, shuffled text grouped by
length."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.data import Dataset
from engine.errors import DatasetMismatch

if TYPE_CHECKING:
    from torch import Tensor

    from engine.formats.torch_model import TorchModel

# Shuffled text rows are sorted by length within groups of this many batches (the Hugging Face
# Trainer's group_by_length): a batch is padded to its longest row, and random batches of 32
# docstring sentences ran 1.71x their real tokens, grouped ones 1.03x. The groups and the batch
# order stay random.
LENGTH_GROUP_BATCHES = 50


@lru_cache(maxsize=4)
def _tokenizer(folder: str) -> Any:
    from engine.formats import hf

    return hf.load_tokenizer(Path(folder))


def check_feedable(dataset: Dataset, tm: TorchModel) -> None:
    """Raises ``DatasetMismatch`` unless ``dataset`` can feed every input ``tm`` needs."""
    if dataset.texts is not None:
        if tm.kind != "hf":
            raise DatasetMismatch(
                "a text dataset needs a Hugging Face checkpoint with its tokenizer; for an ONNX model "
                "send an .npz with one array per model input"
            )
        return
    missing = [n for n in tm.input_names if n not in dataset.arrays]
    if tm.kind == "hf":
        missing = [n for n in missing if n != "token_type_ids"]  # optional for BERT-like models
    if missing:
        raise DatasetMismatch(
            f"the dataset lacks arrays for the model inputs {missing}",
            detail={"missing": missing, "dataset_arrays": sorted(dataset.arrays)},
        )


def has_class_labels(dataset: Dataset) -> bool:
    """Whether the dataset's labels are one integer class per row."""
    return (
        dataset.labels is not None
        and dataset.labels.dtype.kind in "iub"
        and dataset.labels.ndim == 1
    )


def token_lengths(dataset: Dataset, tm: TorchModel, max_length: int) -> np.ndarray:
    """Tokens per text row (cut at ``max_length``) under ``tm``'s tokenizer."""
    assert dataset.texts is not None
    encoded = _tokenizer(str(tm.source.path))(dataset.texts, truncation=True, max_length=max_length)
    return np.array([len(ids) for ids in encoded["input_ids"]])


def batch_rows(
    rows: int, batch_size: int, *, shuffle: bool, seed: int, lengths: np.ndarray | None = None
) -> list[np.ndarray]:
    """Row indices of each batch: in order, shuffled, or (with ``lengths``) shuffled and grouped
    by length."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(rows) if shuffle else np.arange(rows)
    if not shuffle or lengths is None:
        return [order[start : start + batch_size] for start in range(0, rows, batch_size)]
    group = batch_size * LENGTH_GROUP_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, rows, group):
        chunk = order[start : start + group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def indexed_batches(
    dataset: Dataset,
    tm: TorchModel,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    max_length: int = 64,
    device: str = "cpu",
) -> Iterator[tuple[np.ndarray, dict[str, Tensor], Tensor | None]]:
    """Row indices, named input tensors and labels for ``tm``, ``batch_size`` rows at a time.

    Text rows are tokenized with the checkpoint's own tokenizer, padded to the longest row of the
    batch and cut at ``max_length`` (shuffled text rows are grouped by length, see
    ``LENGTH_GROUP_BATCHES``); arrays are cast to the model's input dtypes.
    """
    import torch

    check_feedable(dataset, tm)
    lengths = (
        token_lengths(dataset, tm, max_length) if shuffle and dataset.texts is not None else None
    )
    dtypes = {spec["name"]: spec.get("dtype", "float32") for spec in tm.inputs}
    for rows in batch_rows(len(dataset), batch_size, shuffle=shuffle, seed=seed, lengths=lengths):
        feeds: dict[str, Tensor] = {}
        if dataset.texts is not None:
            tokenizer = _tokenizer(str(tm.source.path))
            encoded = tokenizer(
                [dataset.texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            feeds = {k: v for k, v in encoded.items() if k in tm.input_names}
        else:
            for name in tm.input_names:
                if name not in dataset.arrays:
                    continue
                arr = dataset.arrays[name][rows].astype(np.dtype(dtypes[name]), copy=False)
                feeds[name] = torch.from_numpy(np.ascontiguousarray(arr))
        feeds = {k: v.to(device) for k, v in feeds.items()}
        labels = None
        if dataset.labels is not None:
            labels = torch.from_numpy(np.ascontiguousarray(dataset.labels[rows])).to(device)
        yield rows, feeds, labels


def torch_batches(
    dataset: Dataset, tm: TorchModel, batch_size: int, **options: Any
) -> Iterator[tuple[dict[str, Tensor], Tensor | None]]:
    """``indexed_batches`` without the row indices: (feeds, labels) per batch."""
    for _, feeds, labels in indexed_batches(dataset, tm, batch_size, **options):
        yield feeds, labels
