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

from engine.errors import DatasetInvalid
from engine.formats import npz
from engine.formats.redact import path_free

LABELS = "labels"
TEXT = "text"
MAX_JSONL_LINE = 1 << 20
# Upload-time bounds: a dataset is held in the worker's memory while a job trains on it.
MAX_ROWS = 5_000_000
MAX_ARRAYS = 64
MAX_DATASET_BYTES = 4 << 30  # decoded arrays, all together
MAX_TEXT_CHARS = 100_000


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
        """A deterministic train/validation split: the same seed gives the same rows.

        With class labels the split is stratified (each class keeps its share in both parts, so a
        small validation set still sees every class); otherwise rows are drawn at random."""
        n = len(self)
        n_val = max(1, int(round(n * validation_fraction))) if n > 1 else 0
        rng = np.random.default_rng(seed)
        classes = self.class_labels()
        if classes is not None and n_val > 0:
            val = _stratified_pick(classes, n_val, rng)
        else:
            val = rng.permutation(n)[:n_val]
        is_val = np.zeros(n, dtype=bool)
        is_val[val] = True
        return self.take(np.flatnonzero(~is_val)), self.take(np.flatnonzero(is_val))

    def class_labels(self) -> np.ndarray | None:
        """The labels when they are class ids (1-D integers), else None."""
        if self.labels is not None and self.labels.ndim == 1 and self.labels.dtype.kind in "iub":
            return self.labels
        return None

    def describe(self) -> dict[str, Any]:
        classes = self.class_labels()
        return {
            "num_classes": int(classes.max()) + 1 if classes is not None and len(classes) else None,
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


def _stratified_pick(classes: np.ndarray, n_val: int, rng: np.random.Generator) -> np.ndarray:
    """``n_val`` row indices, each class represented in proportion (largest remainders)."""
    values, counts = np.unique(classes, return_counts=True)
    exact = counts * (n_val / len(classes))
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take), kind="stable")[: n_val - int(take.sum())]:
        take[i] += 1
    picks = []
    for value, k in zip(values, take, strict=True):
        rows = np.flatnonzero(classes == value)
        picks.append(rng.permutation(rows)[: min(k, len(rows))])
    return np.concatenate(picks) if picks else np.zeros(0, dtype=int)


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
    _validate(ds)
    return ds


def _validate(ds: Dataset) -> None:
    """Upload-time checks every format shares: rows, sizes, finite numbers, usable labels."""
    rows = len(ds)
    if rows == 0:
        raise DatasetInvalid("the dataset has no rows")
    if rows > MAX_ROWS:
        raise DatasetInvalid(f"the dataset has {rows} rows; at most {MAX_ROWS} are accepted", detail={"rows": rows})
    if len(ds.arrays) > MAX_ARRAYS:
        raise DatasetInvalid(f"the dataset has {len(ds.arrays)} arrays; at most {MAX_ARRAYS} are accepted")
    total = sum(a.nbytes for a in ds.arrays.values()) + (ds.labels.nbytes if ds.labels is not None else 0)
    if total > MAX_DATASET_BYTES:
        raise DatasetInvalid(
            f"the dataset holds {total} bytes of arrays; at most {MAX_DATASET_BYTES} are accepted",
            detail={"bytes": total},
        )
    for name, arr in [*ds.arrays.items(), *([(LABELS, ds.labels)] if ds.labels is not None else [])]:
        if not npz.all_finite(arr):
            raise DatasetInvalid(f"array {name!r} holds NaN or infinite values", detail={"array": name})
    if ds.labels is not None:
        if len(ds.labels) != rows:
            raise DatasetInvalid(
                f"there are {len(ds.labels)} labels for {rows} rows", detail={"labels": len(ds.labels), "rows": rows}
            )
        if ds.labels.ndim > 2:
            raise DatasetInvalid("labels must be one value per row (class ids) or one vector per row (targets)")
        if ds.labels.dtype.kind in "iu" and ds.labels.ndim == 1 and ds.labels.min() < 0:
            raise DatasetInvalid("class labels must be integers from 0 (negative label found)")
    if ds.texts is not None:
        longest = max((len(t) for t in ds.texts), default=0)
        if longest > MAX_TEXT_CHARS:
            raise DatasetInvalid(
                f"a text row has {longest} characters; at most {MAX_TEXT_CHARS} are accepted",
                detail={"characters": longest},
            )


def _check_rows(arrays: dict[str, np.ndarray]) -> None:
    rows = {k: v.shape[0] if v.ndim else 0 for k, v in arrays.items()}
    if len(set(rows.values())) > 1:
        raise DatasetInvalid("every array must have the same number of rows (first dimension)", detail={"rows": rows})
    if any(v.ndim == 0 for v in arrays.values()):
        raise DatasetInvalid("arrays need a first (row) dimension")


def _check_npz_headers(path: Path) -> list[npz.Header]:
    """Shapes and dtypes from each member's .npy header, before any array is read: refuses
    object arrays (pickles) and arrays too large for memory without decompressing them."""
    total = 0
    with zipfile.ZipFile(path) as zf:
        if len(zf.infolist()) > MAX_ARRAYS + 1:
            raise DatasetInvalid(f"the .npz holds {len(zf.infolist())} arrays; at most {MAX_ARRAYS} are accepted")
    try:
        headers = npz.read_headers(path)
    except ValueError as exc:
        raise DatasetInvalid(str(exc)) from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:  # members cut short or out of the file
        raise DatasetInvalid(f"the .npz cannot be read: {path_free(exc, 'the uploaded .npz')}") from None
    for info, shape, dtype, _, _ in headers:
        name = info.filename.removesuffix(".npy")
        if dtype.hasobject or dtype.kind not in "biuf":
            raise DatasetInvalid(
                f"array {name!r} has dtype {dtype}; only numeric and boolean arrays are accepted",
                detail={"array": name, "dtype": str(dtype)},
            )
        total += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if total > MAX_DATASET_BYTES:
            raise DatasetInvalid(
                f"the .npz arrays hold more than {MAX_DATASET_BYTES} bytes", detail={"bytes_at_least": total}
            )
    return headers


def _load_npz(path: Path) -> Dataset:
    headers = _check_npz_headers(path)
    try:
        arrays = npz.load_arrays(path, headers)
    except ValueError as exc:  # object arrays need pickle: refused
        raise DatasetInvalid(
            f"the .npz cannot be read without pickle ({path_free(exc, 'the uploaded .npz')}); store numeric arrays only"
        ) from None
    except Exception as exc:
        raise DatasetInvalid(f"the .npz cannot be read: {path_free(exc, 'the uploaded .npz')}") from None
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
    labels = _JsonlLabels()
    with open(path, "rb") as fh:
        for number, raw in enumerate(iter(lambda: fh.readline(MAX_JSONL_LINE + 1), b""), 1):
            if len(raw) > MAX_JSONL_LINE:
                raise DatasetInvalid(f"line {number} is longer than {MAX_JSONL_LINE} bytes", detail={"line": number})
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DatasetInvalid(f"line {number} is not UTF-8 text", detail={"line": number}) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise DatasetInvalid(f"line {number} is not JSON", detail={"line": number}) from None
            except RecursionError:  # "[[[[...": deeper than Python's json can follow
                raise DatasetInvalid(f"line {number} is nested too deeply", detail={"line": number}) from None
            if not isinstance(row, dict) or not isinstance(row.get(TEXT), str):
                raise DatasetInvalid(f'line {number} needs a string field "text"', detail={"line": number})
            texts.append(row[TEXT])
            labels.add(number, row)
    return Dataset(format="jsonl", texts=texts, labels=labels.array())


class _JsonlLabels:
    """The "label" of each line: on every line or on none, and of one kind throughout (numbers,
    booleans, or flat lists of numbers of one length), so that they make one numeric array."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.first: tuple[int, bool, str] | None = None  # line, has a label, its kind

    def add(self, number: int, row: dict[str, Any]) -> None:
        has = "label" in row
        kind = _label_kind(row["label"], number) if has else ""
        if self.first is None:
            self.first = (number, has, kind)
        first_line, first_has, first_kind = self.first
        if has != first_has:
            which = (number, first_line) if has else (first_line, number)
            raise DatasetInvalid(
                f'either every line has a "label" or none has: line {which[0]} has one, line {which[1]} has not',
                detail={"line": number},
            )
        if kind != first_kind:
            raise DatasetInvalid(
                f'"label" on line {number} is {kind}, on line {first_line} {first_kind}: use one kind for every line',
                detail={"line": number},
            )
        if has:
            self.values.append(row["label"])

    def array(self) -> np.ndarray | None:
        if not self.values:
            return None
        labels = np.asarray(self.values)
        if labels.dtype.kind not in "biuf":  # integers past 64 bits
            raise DatasetInvalid('"label" values must be numbers that fit 64 bits (class ids or regression targets)')
        return labels


def _label_kind(value: Any, number: int) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return f"a list of {len(value)} numbers"
    raise DatasetInvalid(
        f'"label" on line {number} must be a number (a class id or a target) or a flat list of numbers',
        detail={"line": number},
    )


def _load_parquet(path: Path) -> Dataset:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow names the file by its path: not the user's business
        raise DatasetInvalid(
            f"the uploaded parquet file cannot be read: {path_free(exc, 'the uploaded parquet file')}"
        ) from None
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


def onnx_feeds(dataset: Dataset, inputs: list[dict[str, Any]], rows: np.ndarray | slice) -> dict[str, np.ndarray]:
    """The rows of a dataset as an onnxruntime feed, cast to the input dtypes."""
    feeds = {}
    for spec in inputs:
        arr = dataset.arrays[spec["name"]][rows]
        feeds[spec["name"]] = arr.astype(np.dtype(spec["dtype"]), copy=False)
    return feeds
