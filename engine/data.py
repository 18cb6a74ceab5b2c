"""Datasets users upload: ``.npz`` (named arrays), ``.jsonl`` (text, optional label), ``.parquet``.

Nothing here unpickles: ``.npz`` is read with ``allow_pickle=False`` and object arrays are refused.
A dataset's arrays are keyed by the model input they feed; ``labels`` is the optional target.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import DatasetInvalid, DatasetMismatch

LABELS = "labels"
TEXT = "text"
MAX_JSONL_LINE = 1 << 20


@dataclass
class Dataset:
    """Rows of named arrays, or of texts; with optional labels."""

    format: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    texts: list[str] | None = None
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        if self.texts is not None:
            return len(self.texts)
        return len(next(iter(self.arrays.values()))) if self.arrays else 0

    def take(self, index: np.ndarray | slice) -> Dataset:
        idx = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        return Dataset(
            format=self.format,
            arrays={k: v[idx] for k, v in self.arrays.items()},
            texts=[self.texts[i] for i in idx] if self.texts is not None else None,
            labels=self.labels[idx] if self.labels is not None else None,
        )

    def split(self, validation_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
        """A deterministic train/validation split: the same seed gives the same rows."""
        n = len(self)
        order = np.random.default_rng(seed).permutation(n)
        n_val = max(1, int(round(n * validation_fraction))) if n > 1 else 0
        return self.take(np.sort(order[n_val:])), self.take(np.sort(order[:n_val]))

    def describe(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "rows": len(self),
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in self.arrays.items()},
            "has_labels": self.labels is not None,
            "has_text": self.texts is not None,
            "labels": (
                {"shape": list(self.labels.shape), "dtype": str(self.labels.dtype)}
                if self.labels is not None
                else None
            ),
        }


def _detect(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(4)
        if head == b"PAR1":
            return "parquet"
        if head == b"PK\x03\x04":
            try:
                with zipfile.ZipFile(path) as zf:
                    names = zf.namelist()
            except zipfile.BadZipFile:
                raise DatasetInvalid("the dataset looks like a zip but is damaged") from None
            if names and all(n.endswith(".npy") for n in names):
                return "npz"
            raise DatasetInvalid("a zip dataset must be an .npz (only .npy members)")
        fh.seek(0)
        first = fh.readline(MAX_JSONL_LINE).strip()
    if first.startswith(b"{"):
        return "jsonl"
    raise DatasetInvalid("unknown dataset format: send .npz (named arrays), .jsonl (text) or .parquet")


def load_dataset(path: Path) -> Dataset:
    fmt = _detect(path)
    ds = {"npz": _load_npz, "jsonl": _load_jsonl, "parquet": _load_parquet}[fmt](path)
    if len(ds) == 0:
        raise DatasetInvalid("the dataset has no rows")
    return ds


def _check_rows(arrays: dict[str, np.ndarray]) -> None:
    rows = {k: v.shape[0] if v.ndim else 0 for k, v in arrays.items()}
    if len(set(rows.values())) > 1:
        raise DatasetInvalid("every array must have the same number of rows (first dimension)", detail={"rows": rows})
    if any(v.ndim == 0 for v in arrays.values()):
        raise DatasetInvalid("arrays need a first (row) dimension")


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:  # object arrays need pickle: refused
        raise DatasetInvalid(f"the .npz cannot be read without pickle ({exc}); store numeric arrays only") from None
    except Exception as exc:
        raise DatasetInvalid(f"the .npz cannot be read: {exc}") from None
    if not arrays:
        raise DatasetInvalid("the .npz holds no arrays")
    for k, v in arrays.items():
        if v.dtype.kind not in "biuf":
            raise DatasetInvalid(f"array {k!r} has dtype {v.dtype}; only numeric and boolean arrays are accepted")
    _check_rows(arrays)
    labels = arrays.pop(LABELS, None)
    return Dataset(format="npz", arrays=arrays, labels=labels)


def _load_jsonl(path: Path) -> Dataset:
    texts: list[str] = []
    labels: list[Any] = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise DatasetInvalid(f"line {number} is not JSON", detail={"line": number}) from None
            if not isinstance(row, dict) or not isinstance(row.get(TEXT), str):
                raise DatasetInvalid(f'line {number} needs a string field "text"', detail={"line": number})
            texts.append(row[TEXT])
            if "label" in row:
                labels.append(row["label"])
    if labels and len(labels) != len(texts):
        raise DatasetInvalid('either every line has a "label" or none has')
    label_array = None
    if labels:
        label_array = np.asarray(labels)
        if label_array.dtype.kind not in "biuf":
            raise DatasetInvalid('"label" values must be numbers (class ids or regression targets)')
    return Dataset(format="jsonl", texts=texts, labels=label_array)


def _load_parquet(path: Path) -> Dataset:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DatasetInvalid(f"the .parquet cannot be read: {exc}") from None
    arrays: dict[str, np.ndarray] = {}
    texts = None
    for name in table.column_names:
        column = table.column(name)
        if name == TEXT and (column.type == "string" or str(column.type) in ("string", "large_string")):
            texts = [str(x) for x in column.to_pylist()]
            continue
        values = column.to_pylist()
        try:
            arr = np.asarray(values)
        except ValueError:
            raise DatasetInvalid(f"column {name!r} has rows of different shapes") from None
        if arr.dtype.kind not in "biuf":
            raise DatasetInvalid(f"column {name!r} is not numeric")
        arrays[name] = arr
    labels = arrays.pop(LABELS, None) if LABELS in arrays else arrays.pop("label", None)
    if texts is not None:
        return Dataset(format="parquet", texts=texts, labels=labels)
    _check_rows(arrays | ({LABELS: labels} if labels is not None else {}))
    return Dataset(format="parquet", arrays=arrays, labels=labels)


def inspect_dataset(path: Path) -> dict[str, Any]:
    return load_dataset(path).describe()


def check_matches(dataset_info: dict[str, Any], model_info: dict[str, Any]) -> None:
    """Submit-time check that a dataset can feed a model (names, ranks, fixed dimensions)."""
    if dataset_info.get("has_text"):
        if model_info.get("format") != "hf" or not model_info.get("has_tokenizer"):
            raise DatasetMismatch(
                "a text dataset needs a Hugging Face checkpoint with its tokenizer; for an ONNX model "
                "send an .npz with one array per model input"
            )
        return
    arrays = dataset_info.get("arrays", {})
    expected = {i["name"]: i for i in model_info.get("inputs", [])}
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise DatasetMismatch(
            f"the dataset's arrays must be the model's inputs: missing {missing}, unexpected {extra}",
            detail={"missing": missing, "unexpected": extra, "model_inputs": sorted(expected)},
        )
    for name, spec in expected.items():
        shape = arrays[name]["shape"]
        want = spec["shape"]
        if len(shape) != len(want):
            raise DatasetMismatch(
                f"array {name!r} has rank {len(shape)}; the model input has rank {len(want)}",
                detail={"input": name, "dataset_shape": shape, "model_shape": want},
            )
        for i, (got, exp) in enumerate(zip(shape, want, strict=True)):
            if i > 0 and isinstance(exp, int) and exp > 0 and got != exp:
                raise DatasetMismatch(
                    f"array {name!r} has dimension {i} = {got}; the model wants {exp}",
                    detail={"input": name, "dataset_shape": shape, "model_shape": want},
                )


def onnx_feeds(dataset: Dataset, inputs: list[dict[str, Any]], rows: np.ndarray | slice) -> dict[str, np.ndarray]:
    """The rows of a dataset as an onnxruntime feed, cast to the input dtypes."""
    feeds = {}
    for spec in inputs:
        arr = dataset.arrays[spec["name"]][rows]
        feeds[spec["name"]] = arr.astype(np.dtype(spec["dtype"]), copy=False)
    return feeds
