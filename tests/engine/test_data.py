"""Datasets users upload: validation at upload, the deterministic split, text tokenization."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from bench import materials
from engine import data, training
from engine.data import Dataset, load_dataset
from engine.errors import DatasetInvalid, DatasetMismatch
from engine.formats.torch_model import TorchModel
from engine.model import ModelFile


def test_split_is_deterministic_and_stratified_by_class():
    labels = np.array([0] * 80 + [1] * 15 + [2] * 5)
    ds = Dataset("npz", {"x": np.arange(100, dtype=np.float32)[:, None]}, labels=labels)
    train, val = ds.split(0.2, seed=7)
    again_train, again_val = ds.split(0.2, seed=7)
    _, other_val = ds.split(0.2, seed=8)

    assert len(train) == 80 and len(val) == 20
    assert np.array_equal(val.arrays["x"], again_val.arrays["x"]) and np.array_equal(
        train.labels, again_train.labels
    )
    assert not np.array_equal(val.arrays["x"], other_val.arrays["x"])
    assert sorted(np.bincount(val.labels).tolist()) == [1, 3, 16]  # every class, in proportion
    assert set(train.arrays["x"][:, 0]) | set(val.arrays["x"][:, 0]) == set(range(100))


def test_split_without_labels_holds_out_the_requested_share():
    ds = Dataset("jsonl", texts=[f"row {i}" for i in range(50)])
    train, val = ds.split(0.1, seed=0)
    assert (len(train), len(val)) == (45, 5)
    assert not set(train.texts) & set(val.texts)


def test_npz_with_an_object_array_is_refused_from_its_header_without_unpickling(
    tmp_path, monkeypatch
):
    path = tmp_path / "evil.npz"
    np.savez(
        path, image=np.zeros((2, 3), np.float32), meta=np.array([{"a": 1}, None], dtype=object)
    )

    def no_unpickling(*args, **kwargs):
        raise AssertionError("the loader unpickled user data")

    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    with pytest.raises(DatasetInvalid, match="meta"):
        load_dataset(path)


def test_npz_too_large_for_memory_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.npz"
    np.savez_compressed(path, image=np.zeros((4000, 64), np.float32))  # 1 MiB decoded, tiny on disk
    monkeypatch.setattr(data, "MAX_DATASET_BYTES", 512 * 1024)
    with pytest.raises(DatasetInvalid, match="bytes"):
        load_dataset(path)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"image": np.array([[0.0], [np.nan]], np.float32)}, "NaN"),
        ({"image": np.zeros((3, 2), np.float32), "labels": np.array([0, -1, 2])}, "negative"),
        (
            {"image": np.zeros((3, 2), np.float32), "labels": np.array([0, 1])},
            "same number of rows",
        ),
    ],
)
def test_npz_with_unusable_values_is_refused_with_the_reason(tmp_path, arrays, message):
    path = tmp_path / "ds.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetInvalid, match=message):
        load_dataset(path)


def test_stored_npz_members_are_mapped_in_place_and_equal_what_numpy_reads(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3, 5)).astype(np.float32)
    f = np.asfortranarray(rng.standard_normal((64, 7)))
    path = tmp_path / "d.npz"
    np.savez(path, x=x, f=f, labels=np.arange(64) % 3)
    ds = load_dataset(path)
    assert isinstance(ds.arrays["x"], np.memmap) and list(ds.arrays) == ["x", "f"]
    assert np.array_equal(ds.arrays["x"], x) and np.array_equal(ds.arrays["f"], f)
    assert np.array_equal(ds.labels, np.arange(64) % 3)
    ds.arrays["x"][0] = 0  # copy-on-write: the engine may write, the stored file does not change
    assert np.array_equal(np.load(path)["x"], x)


def test_npz_mixing_stored_and_compressed_members_keeps_their_order(tmp_path):
    import zipfile

    path = tmp_path / "mixed.npz"
    a, b = np.ones((4, 2), np.float32), np.arange(8, dtype=np.int64).reshape(4, 2)
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr, kind in (("b", b, zipfile.ZIP_DEFLATED), ("a", a, zipfile.ZIP_STORED)):
            zf.writestr(zipfile.ZipInfo(f"{name}.npy"), _npy_bytes(arr), compress_type=kind)
    ds = load_dataset(path)
    assert list(ds.arrays) == ["b", "a"]
    assert np.array_equal(ds.arrays["a"], a) and np.array_equal(ds.arrays["b"], b)


@pytest.mark.parametrize("cut", ["data", "directory"])
def test_npz_member_shorter_than_its_header_is_refused(tmp_path, cut):
    import zipfile

    path = tmp_path / "short.npz"
    if cut == "data":  # a valid zip whose member holds fewer bytes than its .npy header declares
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("x.npy", _npy_bytes(np.zeros((1000, 10), np.float32))[:-400])
    else:  # the data cut out of the file, the zip directory kept: offsets point past the end
        np.savez(path, x=np.zeros((1000, 10), np.float32))
        raw = path.read_bytes()
        path.write_bytes(raw[:2000] + raw[-200:])
    with pytest.raises(DatasetInvalid):
        load_dataset(path)


def test_a_nan_in_the_last_block_of_a_large_array_is_found():
    from engine.formats import npz

    arr = np.zeros((1000, 64), np.float32)
    assert npz.all_finite(arr, block_bytes=1024)
    arr[-1, -1] = np.nan
    assert not npz.all_finite(arr, block_bytes=1024)


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, arr)
    return buffer.getvalue()


def test_jsonl_line_longer_than_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_JSONL_LINE", 100)
    path = tmp_path / "ds.jsonl"
    path.write_text(json.dumps({"text": "short"}) + "\n" + json.dumps({"text": "x" * 500}) + "\n")
    with pytest.raises(DatasetInvalid, match="line 2"):
        load_dataset(path)


def test_text_rows_are_tokenized_with_the_checkpoints_own_tokenizer():
    from engine.formats import hf

    folder = materials.minilm_folder()
    tm = TorchModel(
        module=None,
        kind="hf",
        inputs=[
            {"name": n, "shape": ["batch", "sequence"], "dtype": "int64"}
            for n in hf.input_names(folder)
        ],
        outputs=[],
        source=ModelFile(folder, "hf"),
    )
    texts = ["A short sentence.", "A much longer sentence " + "with many words " * 20]
    batches = list(
        training.torch_batches(
            Dataset("jsonl", texts=texts), tm, 8, shuffle=False, seed=0, max_length=16
        )
    )
    assert len(batches) == 1
    feeds, labels = batches[0]
    assert labels is None and feeds["input_ids"].shape == (2, 16)
    expected = hf.load_tokenizer(folder)(texts[0])["input_ids"]
    assert feeds["input_ids"][0, : len(expected)].tolist() == expected
    assert feeds["attention_mask"][0].sum().item() == len(expected)


def test_text_dataset_does_not_feed_an_onnx_model(tmp_path):
    tm = TorchModel(
        module=None,
        kind="fx",
        inputs=[{"name": "image", "shape": [], "dtype": "float32"}],
        outputs=[],
        source=ModelFile(Path("m.onnx"), "onnx"),
    )
    with pytest.raises(DatasetMismatch, match="tokenizer"):
        next(training.torch_batches(Dataset("jsonl", texts=["a"]), tm, 1, shuffle=False, seed=0))


DEEP = "[" * 100_000 + "]" * 100_000  # past Python's recursion limit: json raises RecursionError


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"text": "fine"}\n{"text": "caf\xe9"}\n', "line 2 is not UTF-8"),
        (b'{"text": "a", "label": 1}\n{"text": "b"}\n', "line 1 has one, line 2 has not"),
        (b'{"text": "a"}\n{"text": "b", "label": 1}\n', "line 2 has one, line 1 has not"),
        (b'{"text": "a", "label": 1}\n{"text": "b", "label": [1, 2]}\n', "line 2 is a list of 2 numbers"),
        (b'{"text": "a", "label": [1]}\n{"text": "b", "label": [1, 2]}\n', "line 2 is a list of 2 numbers"),
        (b'{"text": "a", "label": true}\n{"text": "b", "label": 3}\n', "line 2 is a number"),
        (b'{"text": "a", "label": 1}\n{"text": "b", "label": "2"}\n', 'line 2 must be a number'),
        (b'{"text": "a", "label": 1}\n{"text": "b", "label": [[1], [2]]}\n', "flat list of numbers"),
        (b'{"text": "a"}\n' + DEEP.encode() + b"\n", "line 2 is nested too deeply"),
        (b'{"text": "a", "label": ' + DEEP.encode() + b"}\n", "line 1 is nested too deeply"),
    ],
    ids=["invalid-utf8", "label-missing-later", "label-missing-first", "number-then-list", "lists-of-two-lengths",
         "boolean-then-number", "number-then-string", "nested-list", "deep-line", "deep-label"],
)
def test_hostile_jsonl_is_refused_as_dataset_invalid_naming_the_line(tmp_path, content, message):
    path = tmp_path / "ds.jsonl"
    path.write_bytes(content)
    with pytest.raises(DatasetInvalid, match=message) as refused:
        load_dataset(path)
    assert refused.value.code == "dataset_invalid" and refused.value.user_error


def test_jsonl_labels_may_mix_integers_and_floats_as_targets(tmp_path):
    path = tmp_path / "ds.jsonl"
    path.write_bytes(b'{"text": "a", "label": [1, 2]}\n{"text": "b", "label": [2.5, 3]}\n')
    ds = load_dataset(path)
    assert ds.labels.shape == (2, 2) and ds.labels.dtype == np.float64


@pytest.mark.parametrize(
    "content",
    [b"PAR1" + b"\0" * 100, b"PAR1 not a footer PAR1", b"PAR1" + b"\xff" * 64 + b"\xff\xff\xff\x7fPAR1"],
    ids=["no-footer", "short", "footer-claims-2gb"],
)
def test_broken_parquet_error_names_no_server_path(tmp_path, content):
    path = tmp_path / "work" / "upload-abc123"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(DatasetInvalid) as refused:
        load_dataset(path)
    message = refused.value.message
    assert "the uploaded parquet file" in message
    assert "/" not in message and path.name not in message, message
