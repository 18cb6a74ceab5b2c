"""The SDK against the real service (the embedded default, one stack for the module): upload,
submit, events, wait, report, download_best with its sha256; the async client; a POST retried
after a lost answer makes one job; API errors as typed exceptions with the API's code."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
import pytest
from shrink_client import AsyncClient, Client, NotFound, StateEvent, ValidationError

from bench.stack import ServiceStack
from tests.client.conftest import FAST_BENCH, RECIPE


@pytest.fixture(scope="module")
def client(shared_stack: ServiceStack, api_key: str) -> Client:
    with Client(shared_stack.base, api_key) as c:
        yield c


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_upload_submit_events_wait_report_and_download_best(client: Client, model_file: Path, tmp_path: Path) -> None:
    sent: list[tuple[int, int]] = []
    model = client.upload_model(model_file, name="tiny", progress=lambda done, total: sent.append((done, total)))
    assert model.id.startswith("mdl_") and model.format == "onnx" and model.sha256 == _sha256(model_file)
    assert sent[-1] == (model_file.stat().st_size, model_file.stat().st_size)

    job = client.submit(model, recipe=RECIPE, benchmark=FAST_BENCH, labels={"team": "sdk"})
    assert job.state == "queued" and job.labels == {"team": "sdk"}
    states = [e.state for e in job.events() if isinstance(e, StateEvent)]
    assert states[0] == "queued" and "running" in states and states[-1] == "succeeded"

    job.wait(timeout=120)
    assert job.succeeded and job.best_candidate_id, job
    report = job.report()
    assert report["best_candidate_id"] == job.best_candidate_id and report["candidates"]

    path = job.download_best(tmp_path / "out")
    best = next(a for a in job.artifacts() if a.kind == "model" and a.best)
    assert path == tmp_path / "out" / best.filename and _sha256(path) == best.sha256
    assert path.stat().st_size == best.size_bytes

    assert model.id in [m.id for m in client.models()]
    assert job.id in [j.id for j in client.jobs(model=model)]


def test_async_client_does_the_same(shared_stack: ServiceStack, api_key: str, model_file: Path, tmp_path: Path) -> None:
    async def road() -> tuple[Path, str]:
        async with AsyncClient(shared_stack.base, api_key) as client:
            model = await client.upload_model(model_file)
            job = await client.submit(model, recipe=RECIPE, benchmark=FAST_BENCH)
            await job.wait(timeout=120)
            assert job.succeeded, job
            assert (await job.report())["best_candidate_id"] == job.best_candidate_id
            path = await job.download_best(tmp_path)
            best = next(a for a in await job.artifacts() if a.best)
            assert [m.id async for m in client.models()].count(model.id) == 1
            return path, best.sha256

    path, sha256 = asyncio.run(road())
    assert _sha256(path) == sha256


class LoseFirstSubmitAnswer(httpx.BaseTransport):
    """The first POST /v1/jobs reaches the server, but its answer is lost: the client sees 503."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.keys: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.real.handle_request(request)
        if request.method == "POST" and request.url.path == "/v1/jobs":
            self.keys.append(request.headers["Idempotency-Key"])
            if len(self.keys) == 1:
                response.read()
                response.close()
                return httpx.Response(503, headers={"Retry-After": "0"})
        return response


def test_a_submit_retried_after_a_lost_answer_makes_one_job(shared_stack: ServiceStack, api_key: str, model_file: Path) -> None:
    transport = LoseFirstSubmitAnswer()
    with Client(shared_stack.base, api_key, transport=transport) as client:
        model = client.upload_model(model_file, name="idempotent")
        job = client.submit(model, recipe=RECIPE, benchmark=FAST_BENCH)
        assert len(transport.keys) == 2 and transport.keys[0] == transport.keys[1]
        assert [j.id for j in client.jobs(model=model)] == [job.id]
        job.wait(timeout=120)


def test_api_errors_raise_typed_exceptions_with_the_apis_code(client: Client, model_file: Path) -> None:
    with pytest.raises(NotFound) as missing:
        client.get_job("job_aaaaaaaaaaaaaaaaaaaa")
    assert missing.value.status == 404 and missing.value.code == "job_not_found"

    model = client.upload_model(model_file)
    with pytest.raises(ValidationError) as bad:
        client.submit(model, recipe=[{"op": "quantize", "method": "dynamic", "per_chanel": True}])
    assert bad.value.status == 422 and bad.value.code == "spec_invalid"
    assert "per_chanel" in bad.value.detail["field"]

    client.delete_model(model)
    with pytest.raises(NotFound):
        client.get_model(model.id)
