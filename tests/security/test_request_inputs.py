"""No request field reaches a 500, and request work is bounded: text that is not Unicode, oversized
specs and bodies, damaged cursors, malformed webhook URLs and Last-Event-IDs are each a 4xx with a
stable code, answered before anything is stored; the OpenAPI lists those answers. In-process, on
SQLite and the real PostgreSQL."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from core import capabilities
from core.db import session_scope
from core.errors import ValidationFailed
from core.jobs.events import add_event
from core.jobs.schemas import MAX_SPEC_BODY_BYTES
from core.models import Job, StoredModel, utcnow
from core.tenants import service as tenants
from core.webhooks import check_webhook_url
from engine.bench.config import BenchmarkConfig

STEP = {"op": "quantize", "method": "dynamic"}

# The registry as the engine publishes it, cut to one pass; its benchmark schema is the engine's own.
REGISTRY = {
    "ops": {"quantize": {"default": "dynamic", "methods": ["dynamic"]}},
    "passes": [{"op": "quantize", "method": "dynamic", "name": "quantize.dynamic", "formats": ["onnx"],
                "needs_dataset": False, "config_schema": {"type": "object"}}],
    "benchmark_schema": BenchmarkConfig.model_json_schema(),
}


@pytest.fixture
def api(db_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app in-process with one tenant, one stored ONNX model and a finished job; nothing is
    sent to a broker."""
    from api.app import create_app
    from api.routers import jobs as jobs_router

    monkeypatch.setattr(capabilities, "_cached", REGISTRY)
    monkeypatch.setattr(jobs_router, "enqueue_job", lambda job_id, queue: None)
    with session_scope() as session:
        tenant = tenants.create_tenant(session, "team")
        _, key = tenants.create_api_key(session, tenant.id)
        session.add(StoredModel(id="mdl_a", tenant_id=tenant.id, name="m", format="onnx", size_bytes=1,
                                sha256="0" * 64, storage_key="k", info={}))
        session.flush()
        session.add(Job(id="job_done", tenant_id=tenant.id, model_id="mdl_a", state="succeeded", enqueued_at=utcnow()))
        session.flush()
        add_event(session, "job_done", "state", {"state": "succeeded"})
    client = TestClient(create_app(), raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"})
    yield client, {"model": "mdl_a", "job": "job_done"}


def _error(response: Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text[:2000]
    body = response.json()["error"]
    assert body["code"] == code and body["message"], body
    if field is not None:
        assert body["detail"]["field"] == field, body
    return body


def _post_json(client: TestClient, path: str, text: str) -> Response:
    """A JSON body as written, so that it may hold escapes such as a lone surrogate."""
    return client.post(path, content=text.encode(), headers={"Content-Type": "application/json"})


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


LONE_SURROGATE = "\\ud800"  # JSON's escape for a lone surrogate, as the client writes it


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (f'"labels": {{"team": "{LONE_SURROGATE}"}}', "labels.team"),
        (f'"labels": {{"{LONE_SURROGATE}": "x"}}', None),
        (f'"webhook_url": "https://example.com/{LONE_SURROGATE}"', "webhook_url"),
        (f'"benchmark": {{"runtime": "{LONE_SURROGATE}"}}', "benchmark.runtime"),
        (f'"dataset_id": "ds_{LONE_SURROGATE}"', "dataset_id"),
    ],
    ids=["label-value", "label-key", "webhook-url", "benchmark-setting", "dataset-id"],
)
@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/benchmarks"])
def test_a_lone_surrogate_in_a_spec_is_spec_invalid_and_nothing_is_stored(
    api: tuple[TestClient, dict[str, str]], route: str, extra: str, field: str | None
) -> None:
    client, ids = api
    recipe = ', "recipe": [{"op": "quantize", "method": "dynamic"}]' if route == "/v1/jobs" else ""
    response = _post_json(client, route, f'{{"model_id": "{ids["model"]}"{recipe}, {extra}}}')
    body = _error(response, 422, "spec_invalid", field)
    assert "Unicode" in body["message"]
    listed = client.get("/v1/jobs")
    assert listed.status_code == 200 and [j["id"] for j in listed.json()["items"]] == [ids["job"]]


def test_a_lone_surrogate_deep_in_a_recipe_step_names_its_path(api: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = api
    response = _post_json(client, "/v1/jobs", f'{{"model_id": "{ids["model"]}", "recipe": '
                                              f'[{{"op": "quantize", "method": "dynamic", "nodes_to_exclude": ["a", "{LONE_SURROGATE}"]}}]}}')
    _error(response, 422, "spec_invalid", "recipe[0].nodes_to_exclude[1]")
    assert client.get(f"/v1/jobs/{ids['job']}").status_code == 200


@pytest.mark.parametrize(
    ("spec", "code", "field"),
    [
        ({"labels": {"k" * 65: "v"}}, "validation_error", None),
        ({"labels": {"k": "v" * 257}}, "validation_error", "labels.k"),
        ({"recipe": [{**STEP, "nodes_to_exclude": ["n" * 1025]}]}, "spec_invalid", "recipe[0].nodes_to_exclude[0]"),
        ({"recipe": [{**STEP, "nodes_to_exclude": ["n"] * 4097}]}, "spec_invalid", "recipe[0].nodes_to_exclude"),
    ],
    ids=["label-key", "label-value", "option-text", "option-list"],
)
def test_spec_sizes_are_bounded(api: tuple[TestClient, dict[str, str]], spec: dict[str, Any], code: str, field: str | None) -> None:
    client, ids = api
    _error(client.post("/v1/jobs", json={"model_id": ids["model"], "recipe": [STEP], **spec}), 422, code, field)
    assert [j["id"] for j in client.get("/v1/jobs").json()["items"]] == [ids["job"]]


def test_a_long_batch_sizes_list_is_refused_fast_without_echoing_it(api: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = api
    batch_sizes = [5000] * 150_000  # each one also past the engine's largest batch size
    started = time.monotonic()
    response = client.post("/v1/jobs", json={"model_id": ids["model"], "recipe": [STEP], "benchmark": {"batch_sizes": batch_sizes}})
    elapsed = time.monotonic() - started
    _error(response, 422, "spec_invalid", "benchmark.batch_sizes")
    assert len(response.content) < 4096 and elapsed < 3, (len(response.content), elapsed)


def test_an_error_never_echoes_a_whole_field(api: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = api
    # Within every bound of the spec, yet the registry's schema refuses it and says why.
    response = client.post("/v1/jobs", json={"model_id": ids["model"], "recipe": [STEP],
                                             "benchmark": {"batch_sizes": [1] * 16}})
    _error(response, 422, "spec_invalid", "benchmark.batch_sizes")
    response = client.post("/v1/jobs", json={"model_id": ids["model"], "recipe": [STEP], "unknown": "x" * 100_000,
                                             "x" * 100_000: 1})
    _error(response, 422, "validation_error")
    assert len(response.content) < 8192


@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/benchmarks"])
def test_a_spec_body_over_the_limit_is_413_before_it_is_parsed(api: tuple[TestClient, dict[str, str]], route: str) -> None:
    client, ids = api
    body = json.dumps({"model_id": ids["model"], "recipe": [STEP], "benchmark": {"batch_sizes": [1] * 1_000_000}}).encode()
    assert len(body) > MAX_SPEC_BODY_BYTES
    started = time.monotonic()
    response = client.post(route, content=body, headers={"Content-Type": "application/json"})
    assert time.monotonic() - started < 3
    _error(response, 413, "body_too_large")
    assert len(response.content) < 1024
    # Sent in chunks, without a Content-Length, it is stopped all the same.
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
    _error(client.post(route, content=chunks, headers={"Content-Type": "application/json"}), 413, "body_too_large")
    assert [j["id"] for j in client.get("/v1/jobs").json()["items"]] == [ids["job"]]


@pytest.mark.parametrize(
    "payload",
    [["2024-01-01T00:00:00", "job_x"], ["0001-01-01T00:00:00+14:00", "job_x"], ["2024-01-01T00:00:00+00:00", "\ud800"]],
    ids=["naive-datetime", "before-year-1-in-utc", "id-not-text"],
)
@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/models", "/v1/datasets"])
def test_a_cursor_that_is_not_ours_is_invalid_cursor(api: tuple[TestClient, dict[str, str]], route: str, payload: Any) -> None:
    client, _ = api
    _error(client.get(route, params={"cursor": _cursor(payload)}), 400, "invalid_cursor", "cursor")
    assert client.get(route).status_code == 200


@pytest.mark.parametrize(
    "url",
    ["http://example.com:99999/hook", f"http://{'a' * 64}.example.com/hook", "http://[::1/hook"],
    ids=["port-past-65535", "label-of-64", "unclosed-ipv6"],
)
def test_a_malformed_webhook_url_is_refused_naming_it(api: tuple[TestClient, dict[str, str]], url: str) -> None:
    client, ids = api
    response = client.post("/v1/jobs", json={"model_id": ids["model"], "recipe": [STEP], "webhook_url": url})
    _error(response, 422, "webhook_url_refused", "webhook_url")
    assert [j["id"] for j in client.get("/v1/jobs").json()["items"]] == [ids["job"]]


def test_webhooks_to_multicast_broadcast_and_reserved_addresses_are_refused() -> None:
    multicast = ["224.0.0.1", "239.255.255.250", "[ff0e::1]"]
    embedded = ["[2002:7f00:1::]", "[::ffff:10.0.0.1]"]  # 127.0.0.1 as 6to4, 10.0.0.1 mapped into IPv6
    for host in [*multicast, *embedded, "255.255.255.255", "240.0.0.1"]:
        with pytest.raises(ValidationFailed) as caught:
            check_webhook_url(f"http://{host}/hook")
        assert caught.value.code == "webhook_url_refused" and caught.value.detail == {"field": "webhook_url"}, host
    check_webhook_url("http://8.8.8.8/hook")  # a public unicast address is taken


def test_a_last_event_id_that_is_not_an_event_id_is_400(api: tuple[TestClient, dict[str, str]]) -> None:
    client, ids = api
    for value in (str(2**63), "99999999999999999999999", "-1", "abc", "1.5", b"\xb2"):  # b"\xb2": a superscript two
        response = client.get(f"/v1/jobs/{ids['job']}/events", headers={"Last-Event-ID": value})
        _error(response, 400, "invalid_last_event_id", "Last-Event-ID")
    # The largest event id there can be resumes after every event; 0 replays them all.
    response = client.get(f"/v1/jobs/{ids['job']}/events", headers={"Last-Event-ID": str(2**63 - 1)})
    assert response.status_code == 200 and response.text == "event: end\ndata: {}\n\n"
    replay = client.get(f"/v1/jobs/{ids['job']}/events", headers={"Last-Event-ID": "0"})
    assert "event: state" in replay.text and replay.text.endswith("event: end\ndata: {}\n\n")


def test_openapi_lists_400_on_list_routes_409_where_idempotency_keys_are_taken_and_413_on_spec_routes() -> None:
    from api.app import create_app

    document = create_app().openapi()
    checked = {"cursor": 0, "idempotency": 0, "spec": 0}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            names = {p["name"] for p in operation.get("parameters", [])}
            statuses = set(operation["responses"])
            where = f"{method.upper()} {path}"
            if "cursor" in names:
                checked["cursor"] += 1
                assert "400" in statuses, where
            if "Idempotency-Key" in names:
                checked["idempotency"] += 1
                assert "409" in statuses, where
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                checked["spec"] += 1
                assert {"413", "422"} <= statuses, where
    assert checked == {"cursor": 3, "idempotency": 5, "spec": 3}  # spec: the job and benchmark specs, the console sign-in
