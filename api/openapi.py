"""The OpenAPI document and the offline API docs (``/openapi.json``, ``/docs``, ``/redoc``).

Recipe steps are typed from the engine's capabilities document (``core/capabilities.py``), which
the API reads through the sandbox and never by importing the engine: each pass's step schema
becomes a component (``QuantizeFp16Step``...) and a recipe item is a ``oneOf`` of them. The
alternatives exclude each other through ``const`` values: every step names its ``op``; a step of
the op's default method may leave ``method`` out, every other one must name it. (OpenAPI's
``discriminator`` cannot say this: it maps one value of one required property to one schema,
and several methods share an op.) When the engine cannot list its passes, the document keeps a
recipe step as a plain object, as the spec model declares it, and tries again a minute later.

The docs pages load Swagger UI and ReDoc from the copies the ``fastapi-offline`` package ships,
served under ``/static/docs/``, so they work without internet; their Content-Security-Policy lets
them load nothing from another host. The document and both pages need an API key (Bearer) or
the web console's session cookie, like every route they describe.
"""

from __future__ import annotations

import copy
import html
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from api.deps import CurrentTenant
from core.capabilities import get_capabilities
from core.logging import get_logger

log = get_logger(__name__)

OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
STATIC_URL = "/static/docs"
# Swagger UI 5 and ReDoc 2, as fastapi-offline ships them (swagger-ui-bundle.js, swagger-ui.css,
# redoc.standalone.js, favicon.png).
ASSETS = Path(fastapi_offline.__file__).parent / "static"
# How long a document without typed recipe steps is served before the engine is asked again.
UNTYPED_RETRY_SECONDS = 60.0
RECIPE_STEP = "RecipeStep"
BENCHMARK_SETTINGS = "BenchmarkSettings"
NONCE_SLOT = "@@nonce@@"  # where a page names its nonce, filled in per response


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_"))


def step_component_name(op: str, method: str) -> str:
    return f"{_camel(op)}{_camel(method)}Step"


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    """The schema with its local ``#/$defs/X`` references pointed at components."""
    if isinstance(node, dict):
        return {
            key: renames.get(value, value) if key == "$ref" and isinstance(value, str) else _rewrite_refs(value, renames)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def recipe_step_components(capabilities: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One component per pass (its step schema, ``op`` and ``method`` pinned to their values)
    and ``RecipeStep``, the ``oneOf`` of them all; nested models of a config become components
    of their own."""
    components: dict[str, dict[str, Any]] = {}
    defaults = {op: entry.get("default") for op, entry in capabilities["ops"].items()}
    refs = []
    for entry in capabilities["passes"]:
        op, method = entry["op"], entry["method"]
        name = step_component_name(op, method)
        schema = copy.deepcopy(entry["config_schema"])
        nested = schema.pop("$defs", {})
        renames = {f"#/$defs/{key}": f"#/components/schemas/{name}_{key}" for key in nested}
        for key, definition in nested.items():
            components[f"{name}_{key}"] = _rewrite_refs(definition, renames)
        schema = _rewrite_refs(schema, renames)
        properties = schema.setdefault("properties", {})
        properties["op"] = {"type": "string", "const": op}
        properties["method"] = {"type": "string", "const": method}
        if method == defaults.get(op):
            properties["method"]["description"] = f"may be left out: {method} is the default of {op}"
        required = [field for field in schema.get("required", []) if field not in ("op", "method")]
        schema["required"] = ["op", *([] if method == defaults.get(op) else ["method"]), *required]
        schema["type"] = "object"
        schema["additionalProperties"] = False
        schema["title"] = name
        if entry.get("summary"):
            schema["description"] = f"{op}.{method}: {entry['summary']}"
        components[name] = schema
        refs.append({"$ref": f"#/components/schemas/{name}"})
    components[RECIPE_STEP] = {
        "title": RECIPE_STEP,
        "description": "One step of a recipe: an op, its method (or the op's default) and the method's options (GET /v1/capabilities).",
        "oneOf": refs,
    }
    return components


def _request_body_schemas(document: dict[str, Any]) -> set[str]:
    """The components that are the JSON body of a request."""
    names = set()
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for media in operation.get("requestBody", {}).get("content", {}).values():
                ref = media.get("schema", {}).get("$ref", "")
                if ref.startswith("#/components/schemas/"):
                    names.add(ref.rsplit("/", 1)[-1])
    return names


def type_recipe_steps(document: dict[str, Any], capabilities: dict[str, Any]) -> None:
    """Recipe steps, and benchmark settings (the schema the API validates them against, so that
    an unknown setting is refused by the document as it is by the API)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(recipe_step_components(capabilities))
    benchmark_schema = capabilities.get("benchmark_schema")
    if benchmark_schema:
        schemas[BENCHMARK_SETTINGS] = {**copy.deepcopy(benchmark_schema), "title": BENCHMARK_SETTINGS}
    # Request bodies only: a report's recipe is the recipe as it ran, each step with its
    # defaults filled in and what it resolved (``resolved``), which no step schema allows.
    for name in _request_body_schemas(document):
        properties = schemas.get(name, {}).get("properties", {})
        recipe = properties.get("recipe")
        for branch in [recipe, *recipe.get("anyOf", [])] if recipe is not None else []:
            if branch.get("type") == "array":  # a goal job sends no recipe: the array is one branch
                branch["items"] = {"$ref": f"#/components/schemas/{RECIPE_STEP}"}
        benchmark = properties.get("benchmark")
        if benchmark_schema and benchmark is not None and benchmark.get("type") == "object":
            properties["benchmark"] = {"$ref": f"#/components/schemas/{BENCHMARK_SETTINGS}", "description": benchmark.get("description", "benchmark settings (GET /v1/capabilities)")}


class ShrinkAPI(FastAPI):
    """The app, whose ``openapi()`` builds the document once with typed recipe steps; while the
    engine cannot list its passes it serves plain objects and builds again after
    ``UNTYPED_RETRY_SECONDS``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._openapi_lock = threading.Lock()
        self._untyped_until: float | None = None  # None: the document is typed, or not built

    def openapi(self) -> dict[str, Any]:
        with self._openapi_lock:
            if self.openapi_schema is not None and (
                self._untyped_until is None or time.monotonic() < self._untyped_until
            ):
                return self.openapi_schema
            self.openapi_schema = None
            document = super().openapi()  # FastAPI's, which it keeps in openapi_schema
            try:
                type_recipe_steps(document, get_capabilities())
                self._untyped_until = None
            except Exception as exc:  # noqa: BLE001 - the document is served all the same
                log.warning("openapi.recipe_steps_untyped", error=f"{type(exc).__name__}: {exc}"[:300])
                self._untyped_until = time.monotonic() + UNTYPED_RETRY_SECONDS
            return document


def _csp(nonce: str) -> str:
    # data: images are Swagger UI's icons inside its CSS; blob: workers are ReDoc's search index.
    return "; ".join((
        "default-src 'none'",
        f"script-src 'self' 'nonce-{nonce}'",
        f"style-src 'self' 'nonce-{nonce}'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ))


def _with_nonce(page: HTMLResponse, nonce: str) -> HTMLResponse:
    """The page with its inline ``<script>`` and ``<style>`` elements allowed by ``nonce``."""
    text = bytes(page.body).decode().replace(NONCE_SLOT, nonce)
    text = text.replace("<script>", f'<script nonce="{nonce}">').replace("<style>", f'<style nonce="{nonce}">')
    return HTMLResponse(text, headers={"Content-Security-Policy": _csp(nonce), "Cache-Control": "no-store"})


def _redoc_html(*, title: str, openapi_url: str, static_url: str) -> HTMLResponse:
    """ReDoc started by a script rather than by its ``<redoc>`` element (FastAPI's page): the
    styles ReDoc injects carry the nonce only when it is given as an option, and a browser hides
    a ``nonce`` attribute from the scripts that would read it off the element."""
    init = json.dumps({"url": openapi_url, "nonce": NONCE_SLOT}).replace("</", "<\\/")
    return HTMLResponse(f"""<!DOCTYPE html>
<html>
<head>
<title>{html.escape(title)}</title>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="shortcut icon" href="{html.escape(static_url)}/favicon.png">
<style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
<noscript>ReDoc needs JavaScript to show the API documentation; {html.escape(openapi_url)} is the document itself.</noscript>
<div id="redoc"></div>
<script src="{html.escape(static_url)}/redoc.standalone.js"></script>
<script>
const init = {init};
Redoc.init(init.url, {{nonce: init.nonce}}, document.getElementById("redoc"));
</script>
</body>
</html>
""")


def install(app: ShrinkAPI) -> None:
    """``/openapi.json`` (built off the event loop: the first build asks the sandbox), the
    assets, ``/docs`` and ``/redoc``; the app is created with FastAPI's own three URLs off."""
    app.mount(STATIC_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    # The document and its pages need a key like the routes they describe (Bearer, or the
    # console's cookie: the console links to them).
    @app.get(OPENAPI_URL, include_in_schema=False)
    async def openapi_document(tenant: CurrentTenant) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(app.openapi))

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request, tenant: CurrentTenant) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{OPENAPI_URL}",
            title=f"{app.title}: API",
            swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
        )
        return _with_nonce(page, secrets.token_urlsafe(16))

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request, tenant: CurrentTenant) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = _redoc_html(title=f"{app.title}: API", openapi_url=f"{root}{OPENAPI_URL}", static_url=f"{root}{STATIC_URL}")
        return _with_nonce(page, secrets.token_urlsafe(16))
