"""Both storage backends through one interface; S3 against moto's server over real HTTP."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from core.errors import NotFound
from core.settings import Settings
from core.storage import ChecksumMismatch, LocalStorage, S3Storage, Storage, sha256_file


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    endpoint = request.getfixturevalue("moto_endpoint")
    settings = Settings(
        storage_backend="s3", s3_endpoint_url=endpoint, s3_bucket=f"b-{os.urandom(4).hex()}",
        s3_access_key_id="testing", s3_secret_access_key="testing",
        s3_multipart_threshold_bytes=5 * 1024 * 1024,  # small, so 20 MiB goes multipart
    )
    s3 = S3Storage(settings)
    s3.ensure_bucket()
    return s3


def _file(path: Path, size: int) -> tuple[Path, str]:
    path.write_bytes(os.urandom(size))
    return path, sha256_file(path)


def test_roundtrip_with_verified_checksum(storage: Storage, tmp_path: Path) -> None:
    src, digest = _file(tmp_path / "big.bin", 20 * 1024 * 1024 + 123)
    storage.put_file("tenants/t/jobs/j/model.onnx", src, sha256=digest)
    assert storage.exists("tenants/t/jobs/j/model.onnx")
    out = storage.get_file("tenants/t/jobs/j/model.onnx", tmp_path / "out.bin", sha256=digest)
    assert sha256_file(out) == digest
    streamed = hashlib.sha256(b"".join(storage.iter_bytes("tenants/t/jobs/j/model.onnx"))).hexdigest()
    assert streamed == digest
    storage.check()


def test_corrupted_download_is_refused(storage: Storage, tmp_path: Path) -> None:
    src, digest = _file(tmp_path / "a.bin", 1000)
    storage.put_file("k/a", src, sha256=digest)
    with pytest.raises(ChecksumMismatch):
        storage.get_file("k/a", tmp_path / "b.bin", sha256="0" * 64)
    assert not (tmp_path / "b.bin").exists()


def test_delete_prefix_removes_only_that_prefix(storage: Storage, tmp_path: Path) -> None:
    src, digest = _file(tmp_path / "a.bin", 10)
    for key in ("tenants/t/jobs/j1/a", "tenants/t/jobs/j1/b", "tenants/t/jobs/j2/a"):
        storage.put_file(key, src, sha256=digest)
    storage.delete_prefix("tenants/t/jobs/j1/")
    assert not storage.exists("tenants/t/jobs/j1/a") and not storage.exists("tenants/t/jobs/j1/b")
    assert storage.exists("tenants/t/jobs/j2/a")
    with pytest.raises(NotFound):
        storage.get_file("tenants/t/jobs/j1/a", tmp_path / "x")


def test_s3_presigned_url_downloads_with_a_plain_http_client(moto_endpoint: str, tmp_path: Path) -> None:
    settings = Settings(storage_backend="s3", s3_endpoint_url=moto_endpoint, s3_bucket="presign-test",
                        s3_access_key_id="testing", s3_secret_access_key="testing")
    s3 = S3Storage(settings)
    s3.ensure_bucket()
    src, digest = _file(tmp_path / "m.onnx", 4096)
    s3.put_file("tenants/t/jobs/j/m.onnx", src, sha256=digest)
    url = s3.presigned_url("tenants/t/jobs/j/m.onnx", filename="m.onnx")
    assert url and "Signature" in url or "X-Amz-Signature" in url
    response = httpx.get(url)
    assert response.status_code == 200 and hashlib.sha256(response.content).hexdigest() == digest


def test_local_keys_cannot_escape_the_root(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    with pytest.raises(ValueError):
        store.exists("../../etc/passwd")


def test_presigned_urls_name_the_public_endpoint_when_set(moto_endpoint: str) -> None:
    settings = Settings(storage_backend="s3", s3_endpoint_url=moto_endpoint, s3_public_endpoint_url="https://files.example.com",
                        s3_bucket="b", s3_access_key_id="testing", s3_secret_access_key="testing")
    url = S3Storage(settings).presigned_url("tenants/t/a", filename="a")
    assert url is not None and url.startswith("https://files.example.com/b/tenants/t/a?")


def test_local_storage_stores_a_file_on_the_same_disk_without_copying_it(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    src, digest = _file(tmp_path / "upload.bin", 1024 * 1024)
    store.put_file("tenants/t/datasets/d/data", src, sha256=digest)
    stored = store.get_file("tenants/t/datasets/d/data", tmp_path / "back.bin", sha256=digest)
    assert os.stat(src).st_ino == os.stat(tmp_path / "store" / "tenants/t/datasets/d/data").st_ino  # a link, no copy
    src.unlink()  # the caller's spooled file goes; the stored object stays
    assert sha256_file(tmp_path / "store" / "tenants/t/datasets/d/data") == digest == sha256_file(stored)
