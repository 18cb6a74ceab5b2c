"""Hostile uploads: broken multipart framing, hostile .jsonl, HF checkpoints whose config.json is
not an object, broken parquet, and decompression bombs each get a 4xx with a stable code, do
bounded work, leave nothing behind and name no server path. The engine's side is tested directly,
then each refusal over real HTTP."""

from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest

from bench.stack import ServiceStack
from core.catalog.service import _refusal
from engine.errors import ArchiveInvalid, EngineError, ModelFormatUnsupported
from engine.formats import archive
from engine.formats.detect import open_model

MiB = 1024 * 1024
BOMB_BYTES = 300 * 1000 * 1000  # zeros: about 300 KB deflated, far past 200 times that


def _safetensors(header: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header


SAFETENSORS_EMPTY = _safetensors(b"{}      ")
DEEP = b"[" * 100_000 + b"]" * 100_000  # past Python's recursion limit


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _zeros_zip(path: Path, size: int, name: str = "weights.bin") -> Path:
    """``size`` zeros deflated into one member, written in 1 MiB pieces (never all in memory)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open(name, "w", force_zip64=True) as out:
        block = b"\0" * MiB
        for start in range(0, size, MiB):
            out.write(block[: min(MiB, size - start)])
    return path


@pytest.fixture(scope="module")
def bomb_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _zeros_zip(tmp_path_factory.mktemp("bomb") / "bomb.zip", BOMB_BYTES)


def _files_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


# --- archives: the engine's side -------------------------------------------------------------


def test_the_unpacked_cap_is_200_times_the_archive_with_a_64_mib_floor() -> None:
    assert archive.unpacked_cap(1000) == 64 * MiB
    assert archive.unpacked_cap(2 * MiB) == 400 * MiB
    assert archive.unpacked_cap(10**12) == archive.MAX_TOTAL_BYTES


def test_zip_bomb_is_refused_from_its_index_before_anything_is_written(bomb_zip: Path, tmp_path: Path) -> None:
    assert bomb_zip.stat().st_size < 2 * MiB
    with pytest.raises(ArchiveInvalid) as refused:
        archive.unpack(bomb_zip, tmp_path / "out")
    assert refused.value.code == "archive_too_large" and refused.value.detail["limit_bytes"] == 64 * MiB
    assert _files_under(tmp_path / "out") == 0
    with pytest.raises(ArchiveInvalid, match="limit"):
        archive.member_names(bomb_zip)


def test_tar_gz_bomb_is_refused_before_its_stream_is_unpacked(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tar.gz"
    size = 100 * MiB
    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        info = tarfile.TarInfo("model/weights.bin")
        info.size = size
        tf.addfile(info, io.BytesIO(bytes(size)))
    with pytest.raises(ArchiveInvalid) as refused:
        archive.unpack(path, tmp_path / "out")
    assert refused.value.code == "archive_too_large"
    assert _files_under(tmp_path / "out") == 0


def _lie_about_sizes(data: bytes, declared: int) -> bytes:
    """The zip with every member's uncompressed size in the central directory (and in the local
    header) replaced by ``declared``: an index that lies."""
    out = bytearray(data)
    for match in re.finditer(rb"PK\x01\x02", data):  # central directory entries
        out[match.start() + 24 : match.start() + 28] = declared.to_bytes(4, "little")
    for match in re.finditer(rb"PK\x03\x04", data):  # local headers
        out[match.start() + 22 : match.start() + 26] = declared.to_bytes(4, "little")
    return bytes(out)


def test_zip_whose_index_lies_still_unpacks_no_byte_past_the_cap(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(4):
            zf.writestr(f"part{i}.bin", bytes(8 * MiB))
    path = tmp_path / "liar.zip"
    path.write_bytes(_lie_about_sizes(buf.getvalue(), declared=MiB))
    cap = 6 * MiB
    with zipfile.ZipFile(path) as zf:
        assert sum(i.file_size for i in zf.infolist()) == 4 * MiB  # under the cap, as far as the index says
    with pytest.raises(ArchiveInvalid):
        archive.unpack(path, tmp_path / "out", max_total_bytes=cap)
    assert _files_under(tmp_path / "out") <= cap


def test_extraction_counts_real_bytes_whatever_the_member_streams_yield(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "small.zip"
    path.write_bytes(_zip({"a.bin": b"x", "b.bin": b"y"}))
    # A reader that yields far more than the index declares (zipfile bounds members by their
    # declared size today; the running count must not depend on it).
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, info, *a, **k: io.BytesIO(bytes(5 * MiB)))
    cap = 3 * MiB
    with pytest.raises(ArchiveInvalid) as refused:
        archive.unpack(path, tmp_path / "out", max_total_bytes=cap)
    assert refused.value.code == "archive_too_large"
    assert _files_under(tmp_path / "out") == cap


def test_damaged_archives_are_archive_invalid_naming_no_path(tmp_path: Path) -> None:
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as tf:
        info = tarfile.TarInfo("model.onnx")
        info.size = 100_000
        tf.addfile(info, io.BytesIO(bytes(range(256)) * 390 + bytes(160)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.onnx", bytes(range(256)) * 400)
    zipped = bytearray(buf.getvalue())
    zipped[45:60] = b"\xff" * 15  # inside the member's deflated data
    for name, data in (("cut.tar.gz", tar.getvalue()[:-200]), ("damaged.zip", bytes(zipped))):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ArchiveInvalid) as refused:
            archive.unpack(path, tmp_path / name.replace(".", "-"))
        assert refused.value.code == "archive_invalid" and "/" not in refused.value.message, refused.value.message


# --- HF checkpoints: the engine's side -------------------------------------------------------


HF_CONFIGS = {
    "list": b'[{"model_type": "bert"}]',
    "string": b'"bert"',
    "number": b"12",
    "deep": DEEP,
    "invalid-json": b'{"model_type": ',
    "invalid-utf8": b'{"model_type": "b\xffrt"}',
}


@pytest.mark.parametrize("config", HF_CONFIGS.values(), ids=HF_CONFIGS.keys())
def test_hf_checkpoint_whose_config_is_not_a_json_object_is_unsupported(tmp_path: Path, config: bytes) -> None:
    path = tmp_path / "ckpt.zip"
    path.write_bytes(_zip({"model/config.json": config, "model/model.safetensors": SAFETENSORS_EMPTY}))
    with pytest.raises(ModelFormatUnsupported, match="config.json") as refused:
        open_model(path, tmp_path / "work")
    assert refused.value.user_error


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ({"config.json": b'{"model_type": "bert"}', "model.safetensors": _safetensors(b"[]")}, "model.safetensors"),
        ({"config.json": b'{"model_type": "bert"}', "model.safetensors": _safetensors(b'{"w": {"shape": 3}}')}, "'w'"),
        ({"config.json": b'{"model_type": "bert", "auto_map": ["x.Y"]}', "model.safetensors": SAFETENSORS_EMPTY}, "auto_map"),
    ],
    ids=["header-is-a-list", "shape-is-not-a-list", "auto-map-is-a-list"],
)
def test_hf_checkpoint_with_malformed_json_elsewhere_is_refused(tmp_path: Path, members: dict[str, bytes], match: str) -> None:
    path = tmp_path / "ckpt.zip"
    path.write_bytes(_zip(members))
    with pytest.raises(EngineError, match=match) as refused:
        open_model(path, tmp_path / "work")
    assert refused.value.user_error and refused.value.code in ("model_format_unsupported", "model_format_unsafe")


def test_unknown_architecture_message_names_no_server_path(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.zip"
    path.write_bytes(_zip({"config.json": b'{"hidden_size": 8}', "model.safetensors": SAFETENSORS_EMPTY}))
    with pytest.raises(ModelFormatUnsupported) as refused:
        open_model(path, tmp_path / "work")
    assert str(tmp_path) not in refused.value.message and "/" not in refused.value.message


# --- the service's mapping of engine failures ------------------------------------------------


def test_engine_refusals_map_to_4xx_and_internal_failures_name_no_path() -> None:
    too_large = _refusal({"code": "archive_too_large", "message": "too big", "detail": {"limit_bytes": 1}, "user_error": True})
    assert (too_large.status, too_large.code, too_large.detail) == (413, "archive_too_large", {"limit_bytes": 1})
    unlisted = _refusal({"code": "some_new_refusal", "message": "no", "user_error": True})
    assert (unlisted.status, unlisted.code) == (400, "some_new_refusal")
    internal = _refusal({"code": "engine_internal", "message": "KeyError: '/srv/shrink/work/shrink-inspect-x/model'",
                         "detail": {"path": "/srv"}, "user_error": False})
    assert internal.status == 500 and "/" not in internal.message and internal.detail == {}


# --- over real HTTP --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(shared_stack: ServiceStack) -> httpx.Client:
    return shared_stack.new_tenant()


def _refused(stack: ServiceStack, client: httpx.Client, response: httpx.Response, status: int, code: str) -> dict:
    """The error body, after checking the status, the code, that nothing was recorded or left in
    the spool, that no server path is named, and that the API is still healthy."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert str(stack.tmp) not in response.text and "/tmp/" not in response.text and "/work/" not in response.text
    assert client.get("/v1/models").json()["items"] == [] and client.get("/v1/datasets").json()["items"] == []
    spool = stack.tmp / "var" / "work" / "uploads"
    assert not spool.exists() or not any(spool.iterdir())
    assert httpx.get(f"{stack.base}/readyz").status_code == 200
    return error


MULTIPART = {
    "boundary-never-appears": b"this body never mentions its boundary " * 200,
    "other-boundary": b"--OTHER\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc\r\n--OTHER--\r\n",
    "never-closed": b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.onnx\"\r\n\r\n" + b"\x08" * 70_000,
}


@pytest.mark.parametrize("body", MULTIPART.values(), ids=MULTIPART.keys())
def test_multipart_whose_boundary_is_missing_is_400_upload_malformed(shared_stack: ServiceStack, client: httpx.Client, body: bytes) -> None:
    response = client.post("/v1/models", content=body, headers={"Content-Type": "multipart/form-data; boundary=XYZ"})
    error = _refused(shared_stack, client, response, 400, "upload_malformed")
    assert "boundary" in error["message"]


JSONL = {
    "invalid-utf8": b'{"text": "fine"}\n{"text": "caf\xe9"}\n',
    "ragged-labels": b'{"text": "a", "label": 1}\n{"text": "b"}\n',
    "mixed-labels": b'{"text": "a", "label": 1}\n{"text": "b", "label": [1, 2]}\n',
    "deep-line": b'{"text": "a"}\n' + DEEP + b"\n",
}


@pytest.mark.parametrize("body", JSONL.values(), ids=JSONL.keys())
def test_hostile_jsonl_is_422_dataset_invalid(shared_stack: ServiceStack, client: httpx.Client, body: bytes) -> None:
    response = client.post("/v1/datasets", content=body, headers={"Content-Type": "application/octet-stream"})
    error = _refused(shared_stack, client, response, 422, "dataset_invalid")
    assert error["detail"]["line"] in (1, 2)


def test_broken_parquet_is_422_and_names_no_server_path(shared_stack: ServiceStack, client: httpx.Client) -> None:
    response = client.post("/v1/datasets", content=b"PAR1" + b"\0" * 100,
                           headers={"Content-Type": "application/octet-stream"})
    error = _refused(shared_stack, client, response, 422, "dataset_invalid")
    assert "the uploaded parquet file" in error["message"]
    assert "/" not in json.dumps(error), error


def test_hf_checkpoint_whose_config_is_a_list_is_415(shared_stack: ServiceStack, client: httpx.Client) -> None:
    for config in (HF_CONFIGS["list"], HF_CONFIGS["deep"]):
        payload = _zip({"model/config.json": config, "model/model.safetensors": SAFETENSORS_EMPTY})
        response = client.post("/v1/models", content=payload, headers={"Content-Type": "application/octet-stream"})
        error = _refused(shared_stack, client, response, 415, "model_format_unsupported")
        assert "config.json" in error["message"]


def test_zip_bomb_is_413_archive_too_large(shared_stack: ServiceStack, client: httpx.Client, bomb_zip: Path) -> None:
    response = shared_stack.upload(client, bomb_zip)
    error = _refused(shared_stack, client, response, 413, "archive_too_large")
    assert error["detail"]["limit_bytes"] == 64 * MiB
