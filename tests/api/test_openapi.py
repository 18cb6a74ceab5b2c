"""The OpenAPI document (docs/architecture.md, the API contract): bearer authentication as a
security scheme, recipe steps typed from the engine's capabilities, summaries and examples; the
docs pages served with their assets from Shrink itself; and a client generated from the document
(openapi-python-client) submitting a recipe job. In-process, on SQLite."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from bench.stack import free_port
from core.capabilities import get_capabilities
from core.db import session_scope
from core.errors import Unavailable
from core.models import StoredModel
from core.tenants import service as tenants

OPEN_ROUTES = {"/healthz", "/readyz"}  # /metrics is left out of the document
# The console's sign-in and sign-out need no key; reading the session needs its cookie.
SESSION_ROUTES = {"POST /v1/session": None, "DELETE /v1/session": None, "GET /v1/session": [{"session": []}]}


@pytest.fixture
def app(db_env: dict[str, str]) -> Any:
    from api.app import create_app

    return create_app()


@pytest.fixture
def key(db_env: dict[str, str]) -> str:
    """An API key of a tenant with one stored ONNX model, ``mdl_a``."""
    with session_scope() as session:
        tenant = tenants.create_tenant(session, "team")
        _, key = tenants.create_api_key(session, tenant.id)
        session.add(StoredModel(id="mdl_a", tenant_id=tenant.id, name="m", format="onnx", size_bytes=1,
                                sha256="0" * 64, storage_key="k", info={}))
    return key


@pytest.fixture
def document(app: Any, key: str) -> dict[str, Any]:
    response = TestClient(app, headers={"Authorization": f"Bearer {key}"}).get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield f"{method.upper()} {path}", operation


def _steps_validator(document: dict[str, Any]) -> Draft202012Validator:
    """A validator of one recipe step against the document's own schemas."""
    schema = {"$ref": "#/components/schemas/RecipeStep", "components": document["components"]}
    return Draft202012Validator(schema)


pytestmark = pytest.mark.parametrize("db_env", ["sqlite"], indirect=True)


def test_every_route_but_health_and_readiness_requires_the_bearer_scheme(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    cookie = document["components"]["securitySchemes"]["session"]
    assert cookie["type"] == "apiKey" and cookie["in"] == "cookie" and cookie["name"] == "shrink_session"
    for where, operation in _operations(document):
        if where.split(" ")[1] in OPEN_ROUTES:
            assert "security" not in operation, where
        elif where in SESSION_ROUTES:
            assert operation.get("security") == SESSION_ROUTES[where], where
        else:
            # Either one: an API key, or the web console's session cookie.
            assert operation.get("security") == [{"bearer": []}, {"session": []}], where
    assert "/metrics" not in document["paths"]


def test_the_401_codes_are_the_services_own(app: Any, key: str) -> None:
    client = TestClient(app)
    for headers, code in (({}, "missing_api_key"), ({"Authorization": "Basic abc"}, "invalid_api_key"),
                          ({"Authorization": "Bearer "}, "invalid_api_key"),
                          ({"Authorization": "Bearer shk_nope_nope"}, "invalid_api_key")):
        response = client.get("/v1/jobs", headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == code, (headers, response.text)
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get("/healthz").status_code == 200


def recipe_array(job_spec: dict[str, Any]) -> dict[str, Any]:
    """The recipe's array schema (the recipe is an array, or null for a goal job)."""
    recipe = job_spec["properties"]["recipe"]
    return next(b for b in [recipe, *recipe.get("anyOf", [])] if b.get("type") == "array")


def test_recipe_steps_are_one_of_every_registered_pass_each_requiring_its_op(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert recipe_array(schemas["JobSpec"])["items"] == {"$ref": "#/components/schemas/RecipeStep"}
    capabilities = get_capabilities()
    alternatives = [schemas[ref["$ref"].rsplit("/", 1)[1]] for ref in schemas["RecipeStep"]["oneOf"]]
    pinned = {(s["properties"]["op"]["const"], s["properties"]["method"]["const"]) for s in alternatives}
    assert pinned == {(p["op"], p["method"]) for p in capabilities["passes"]}
    assert len(alternatives) == len(capabilities["passes"])
    for step in alternatives:
        assert "op" in step["required"], step["title"]
        op, method = step["properties"]["op"]["const"], step["properties"]["method"]["const"]
        # A step without a method is the op's default: only that schema lets method out.
        assert ("method" in step["required"]) is (method != capabilities["ops"][op]["default"]), step["title"]


def test_each_step_matches_exactly_the_pass_it_selects(document: dict[str, Any]) -> None:
    validator = _steps_validator(document)
    assert validator.is_valid({"op": "quantize"})  # quantize's default, auto
    assert validator.is_valid({"op": "quantize", "method": "dynamic", "per_channel": False})
    assert validator.is_valid({"op": "prune", "method": "structured", "ratio": 0.3})
    for wrong in ({"method": "dynamic"}, {"op": "quantize", "method": "nope"},
                  {"op": "quantize", "method": "dynamic", "per_chanel": False}, {"op": "teleport"}):
        assert not validator.is_valid(wrong), wrong


def test_the_goal_is_typed(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    goal = schemas["JobSpec"]["properties"]["goal"]
    assert {"$ref": "#/components/schemas/GoalSpec"} in goal["anyOf"]
    assert set(schemas["GoalSpec"]["properties"]) == {"metric", "max_drop", "objective", "batch_size", "budget_minutes", "methods"}
    assert schemas["GoalSpec"]["additionalProperties"] is False


def test_without_the_engine_the_document_keeps_plain_steps(app: Any, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from api import openapi

    def unavailable() -> dict[str, Any]:
        raise Unavailable("the engine did not list its capabilities")

    monkeypatch.setattr(openapi, "get_capabilities", unavailable)
    response = TestClient(app, raise_server_exceptions=False).get("/openapi.json", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    recipe = recipe_array(response.json()["components"]["schemas"]["JobSpec"])
    assert recipe["items"] == {"type": "object", "additionalProperties": True}
    # Once the engine answers again, the next build types the steps.
    monkeypatch.setattr(openapi, "get_capabilities", get_capabilities)
    monkeypatch.setattr(app, "_untyped_until", 0.0)
    assert "RecipeStep" in app.openapi()["components"]["schemas"]


def test_every_route_says_what_it_does_and_the_submits_carry_examples(document: dict[str, Any]) -> None:
    for where, operation in _operations(document):
        # FastAPI's own summary is the function's name in title case (operationId: name, path, method).
        method, path = where.split(" ")
        name = operation["operationId"].removesuffix(re.sub(r"\W", "_", path) + "_" + method.lower())
        assert operation.get("summary") not in (None, name.replace("_", " ").title()), where
    validator = _steps_validator(document)
    for path in ("/v1/jobs", "/v1/benchmarks"):
        examples = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
        assert examples, path
        for example in examples.values():
            for step in example["value"].get("recipe", []):
                assert validator.is_valid(step), step
    recipe_examples = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert any(example["value"].get("recipe") for example in recipe_examples.values())


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_their_own_assets(app: Any, key: str, page: str) -> None:
    client = TestClient(app)
    assert client.get(page).status_code == 401  # the docs need a key like the routes they describe
    client.headers["Authorization"] = f"Bearer {key}"
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.search(r"https?://", html), "the page names another host"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "http" not in csp and "*" not in csp
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    for tag in re.findall(r"<(?:script|style)(?![^>]*\bsrc=)[^>]*>", html):
        assert f'nonce="{nonce}"' in tag, tag  # every inline script and style is allowed by the nonce
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/static/docs/") for a in assets), assets
    types = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
    for asset in assets:
        answer = client.get(asset)
        assert answer.status_code == 200 and answer.content, asset
        assert types[Path(asset).suffix] in answer.headers["content-type"], (asset, answer.headers["content-type"])
    assert client.get("/openapi.json").status_code == 200  # the page's document, with the same key
    assert TestClient(app).get("/openapi.json").status_code == 401
    assert client.get(page).headers["content-security-policy"] != csp  # a fresh nonce per page


@pytest.fixture
def served(app: Any) -> Iterator[str]:
    """The app over real HTTP (a browser applies the Content-Security-Policy header)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_render_in_headless_chromium_under_their_policy(served: str, key: str, page: str) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is needed for this test: apt-get install -y chromium"
    # Signed in as the console signs in: the session cookie opens the pages and their document.
    signed_in = httpx.post(f"{served}/v1/session", json={"api_key": key})
    assert signed_in.status_code == 200, signed_in.text
    cookie = signed_in.cookies["shrink_session"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "shrink_session", "value": cookie, "url": served}])
            tab = context.new_page()
            tab.goto(served + page)
            # The summaries come from /openapi.json, drawn by the page's own scripts and styles.
            summary = "Submit a job: compress a stored model with a recipe, then benchmark it"
            tab.get_by_text(summary).first.wait_for(state="attached", timeout=20000)
            assert "Something went wrong" not in tab.content()
        finally:
            browser.close()


def test_a_generated_client_submits_a_typed_recipe(
    app: Any, key: str, document: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.routers import jobs as jobs_router

    queued: list[str] = []
    monkeypatch.setattr(jobs_router, "enqueue_job", lambda job_id, queue: queued.append(job_id))
    assert importlib.util.find_spec("openapi_python_client"), (
        "openapi-python-client 0.29.1 is needed, installed without its dependencies (pyproject.toml, dev)"
    )
    spec_file = tmp_path / "openapi.json"
    spec_file.write_text(json.dumps(document))
    package = "shrink_generated_client"
    bin_dir = str(Path(sys.executable).parent)  # its post-generation hooks run ruff from here
    generated = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec_file),
         "--output-path", str(tmp_path / package), "--meta", "none"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"},
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        client_module = importlib.import_module(package)
        models = importlib.import_module(f"{package}.models")
        create_job = importlib.import_module(f"{package}.api.jobs.create_job_v1_jobs_post")

        step = models.QuantizeDynamicStep(op="quantize", method="dynamic", per_channel=False)
        spec = models.JobSpec(model_id="mdl_a", recipe=[step, models.QuantizeAutoStep(op="quantize")])
        recipe = spec.to_dict()["recipe"]
        assert recipe[0]["method"] == "dynamic" and recipe[0]["per_channel"] is False
        assert recipe[1]["op"] == "quantize" and "method" not in recipe[1]
        # Parsing picks the pass a step selects: a bare op is its default method.
        parsed = models.JobSpec.from_dict({"model_id": "m", "recipe": [{"op": "quantize"}, {"op": "quantize", "method": "fp16"}]})
        assert [type(s).__name__ for s in parsed.recipe] == ["QuantizeAutoStep", "QuantizeFp16Step"]

        # The generated client sets the bearer token itself; ASGITransport carries it to the app.
        authenticated = client_module.AuthenticatedClient(
            base_url="http://testserver", token=key, httpx_args={"transport": httpx.ASGITransport(app=app)}
        )
        response = asyncio.run(create_job.asyncio_detailed(client=authenticated, body=spec))
        assert response.status_code == 202, response.content
        job = response.parsed
        assert isinstance(job, models.JobOut) and job.state.value == "queued" and queued == [job.id]
        assert job.spec.to_dict()["recipe"][0]["method"] == "dynamic"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
            del sys.modules[name]
