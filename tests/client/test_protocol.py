"""Retries, Retry-After, error mapping, event-stream resumption and checksum refusal, on mock
transports (no service)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from shrink_client import (
    Artifact,
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    Retry,
    Unavailable,
    ValidationError,
)
from shrink_client import aio as aio_module
from shrink_client import client as client_module
from shrink_client._protocol import CHUNK, SSEDecoder
from shrink_client.errors import ChecksumMismatch

JOB = {"id": "job_1", "kind": "compress", "state": "queued", "model_id": "mdl_1", "created_at": "2026-01-01T00:00:00Z"}


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    return slept


def _client(handler, **kwargs) -> Client:
    return Client("http://shrink.test", "shk_test", transport=httpx.MockTransport(handler), **kwargs)


def test_429_is_retried_after_the_servers_retry_after_with_the_same_idempotency_key(sleeps: list[float]) -> None:
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) == 1:
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"error": {"code": "rate_limited", "message": "slow down"}})
        return httpx.Response(202, json=JOB)

    job = _client(handler).submit("mdl_1", recipe=[{"op": "quantize"}])
    assert job.id == "job_1" and sleeps == [7.0]
    assert len(keys) == 2 and keys[0] == keys[1]


def test_a_submit_meeting_its_own_first_request_in_flight_waits_and_gets_its_reply(sleeps: list[float]) -> None:
    """After a lost answer, the retry can reach the service while the first request with that key
    still runs: 409 idempotency_request_in_flight, then the stored reply."""
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) == 1:
            return httpx.Response(409, headers={"Retry-After": "2"},
                                  json={"error": {"code": "idempotency_request_in_flight", "message": "in flight"}})
        return httpx.Response(202, json=JOB)

    assert _client(handler).submit("mdl_1", recipe=[{"op": "quantize"}]).id == "job_1"
    assert sleeps == [2.0] and keys[0] == keys[1]


def test_other_conflicts_are_not_retried(sleeps: list[float]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"error": {"code": "model_in_use", "message": "jobs refer to it"}})

    with pytest.raises(Conflict):
        _client(handler).delete_model("mdl_1")
    assert sleeps == []


def test_delete_job_sends_delete(sleeps: list[float]) -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        return httpx.Response(204)

    _client(handler).delete_job("job_1")
    assert seen == [("DELETE", "/v1/jobs/job_1")]


def test_attempts_are_bounded_and_the_last_answer_is_raised_typed(sleeps: list[float]) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, json={"error": {"code": "unavailable", "message": "down for a moment", "detail": {}}})

    with pytest.raises(Unavailable) as raised:
        _client(handler, retry=Retry(attempts=3, backoff=0.01)).get_job("job_1")
    assert len(calls) == 3 and len(sleeps) == 2
    assert raised.value.code == "unavailable" and raised.value.status == 503


def test_connection_errors_are_retried_then_reported(sleeps: list[float]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ConnectionFailed):
        _client(handler, retry=Retry(attempts=2, backoff=0.01)).get_job("job_1")
    assert len(sleeps) == 1


def test_a_422_is_not_retried_and_carries_code_and_field(sleeps: list[float]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"error": {"code": "spec_invalid", "message": "recipe[0].per_chanel: unknown",
                                                   "detail": {"field": "recipe[0].per_chanel"}}})

    with pytest.raises(ValidationError) as raised:
        _client(handler).submit("mdl_1", recipe=[{"op": "quantize", "per_chanel": True}])
    assert raised.value.code == "spec_invalid" and raised.value.detail["field"] == "recipe[0].per_chanel"
    assert sleeps == []


def _sse(*events: tuple[int | None, str, dict]) -> bytes:
    out = ""
    for event_id, kind, data in events:
        out += (f"id: {event_id}\n" if event_id is not None else "") + f"event: {kind}\ndata: {json.dumps(data)}\n\n"
    return out.encode()


def test_a_dropped_event_stream_resumes_from_the_last_event_id(sleeps: list[float]) -> None:
    seen_last_ids: list[str | None] = []

    def dropping() -> Iterator[bytes]:
        yield _sse((1, "state", {"state": "running"}), (2, "progress", {"stage": "step 1/1", "fraction": 0.5, "message": ""}))
        raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        seen_last_ids.append(request.headers.get("Last-Event-ID"))
        if len(seen_last_ids) == 1:
            return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=dropping())
        return httpx.Response(200, headers={"Content-Type": "text/event-stream"},
                              content=_sse((3, "state", {"state": "succeeded"}), (None, "end", {})))

    events = list(_client(handler).events("job_1"))
    assert seen_last_ids == [None, "2"]
    assert [(e.id, e.type) for e in events] == [(1, "state"), (2, "progress"), (3, "state")]
    assert events[1].fraction == 0.5 and events[2].state == "succeeded"


def test_sse_decoder_ignores_keep_alive_comments_and_joins_data_lines() -> None:
    decoder = SSEDecoder()
    lines = [": keep-alive", "", "id: 4", "event: log", "data: {\"a\":", "data: 1}", ""]
    assert [decoder.feed(line) for line in lines][-1] == ("log", "4", '{"a":\n1}')


def test_a_download_whose_sha256_differs_is_refused_and_removed(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"not what was recorded")

    artifact = Artifact(id="art_1", kind="model", format="onnx", filename="model.onnx", size_bytes=21, sha256="0" * 64)
    with pytest.raises(ChecksumMismatch):
        _client(handler).download_artifact(artifact, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_upload_streams_the_file_in_chunks_with_its_length(tmp_path: Path) -> None:
    file = tmp_path / "big.onnx"
    file.write_bytes(b"\1" * (2 * CHUNK + 10))
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["headers"] = dict(request.headers)
        seen["size"] = len(request.read())
        return httpx.Response(201, json={"id": "mdl_1", "name": "big", "filename": "big.onnx", "format": "onnx",
                                         "size_bytes": 10, "sha256": "0" * 64, "created_at": "2026-01-01T00:00:00Z"})

    progress: list[tuple[int, int]] = []
    _client(handler).upload_model(file, progress=lambda done, total: progress.append((done, total)))
    headers = seen["headers"]
    assert seen["size"] == file.stat().st_size
    assert headers["content-length"] == str(file.stat().st_size) and "transfer-encoding" not in headers
    assert headers["content-type"] == "application/octet-stream" and headers["idempotency-key"]
    # Read chunk by chunk as it is sent, never whole.
    assert [done for done, _ in progress] == [CHUNK, 2 * CHUNK, 2 * CHUNK + 10]


def test_the_async_event_stream_resumes_too(monkeypatch: pytest.MonkeyPatch) -> None:
    seen_last_ids: list[str | None] = []

    async def no_sleep(_: float) -> None:
        return None

    monkeypatch.setattr(aio_module.asyncio, "sleep", no_sleep)

    async def dropping() -> AsyncIterator[bytes]:
        yield _sse((5, "log", {"event": "job.pass.started"}))
        raise httpx.ReadError("connection reset")

    async def handler(request: httpx.Request) -> httpx.Response:
        seen_last_ids.append(request.headers.get("Last-Event-ID"))
        if len(seen_last_ids) == 1:
            return httpx.Response(200, content=dropping())
        return httpx.Response(200, content=_sse((6, "state", {"state": "failed", "error": {"code": "x", "message": "y"}}), (None, "end", {})))

    async def collect() -> list:
        async with AsyncClient("http://shrink.test", "shk_test", transport=httpx.MockTransport(handler)) as client:
            return [e async for e in client.events("job_1")]

    events = asyncio.run(collect())
    assert seen_last_ids == [None, "5"]
    assert [type(e).__name__ for e in events] == ["LogEvent", "StateEvent"] and events[1].error == {"code": "x", "message": "y"}


def test_register_adds_the_client_commands_beside_an_apps_own() -> None:
    import typer
    from shrink_client.cli import register
    from typer.testing import CliRunner

    server = typer.Typer()

    @server.command()
    def migrate() -> None:
        """Apply migrations."""

    register(server)
    out = CliRunner().invoke(server, ["--help"]).stdout
    for command in ("migrate", "compress", "models", "datasets", "jobs", "artifacts"):
        assert command in out
    assert "--output" in CliRunner().invoke(server, ["artifacts", "download", "--help"]).stdout
