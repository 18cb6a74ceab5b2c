"""One error shape, mapped in one place: ``{"error": {"code", "message", "detail"}}``.

An error may echo what a request sent (a field name, a value): what it echoes is bounded and
always encodes, so a huge or malformed request is answered with a short, well-formed error."""

from __future__ import annotations

from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.schemas import ErrorResponse
from core.errors import ShrinkError
from core.jobs.schemas import NOT_TEXT
from core.logging import get_logger

log = get_logger(__name__)

MAX_MESSAGE_CHARS = 1000
MAX_DETAIL_TEXT_CHARS = 300
MAX_DETAIL_ITEMS = 50
MAX_DETAIL_DEPTH = 4
MAX_VALIDATION_ERRORS = 20

# Pydantic error types that say a spec's text or free-form JSON is wrong (core/jobs/schemas.py).
_SPEC_INVALID_TYPES = {"spec_invalid", "string_unicode"}
_HTTP_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


# What a 503 for a database outage asks a client to wait (a restart takes seconds).
DATABASE_RETRY_AFTER_SECONDS = 5


def _bounded(value: Any, limit: int = MAX_DETAIL_TEXT_CHARS, depth: int = 0) -> Any:
    if isinstance(value, str):
        text = value.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate, escaped
        return text if len(text) <= limit else text[:limit] + "..."
    if depth >= MAX_DETAIL_DEPTH and isinstance(value, list | tuple | dict):
        return "..."
    if isinstance(value, list | tuple):
        return [_bounded(v, limit, depth + 1) for v in value[:MAX_DETAIL_ITEMS]]
    if isinstance(value, dict):
        return {_bounded(k, limit, depth + 1): _bounded(v, limit, depth + 1) for k, v in list(value.items())[:MAX_DETAIL_ITEMS]}
    return value


def error_body(code: str, message: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": _bounded(message, MAX_MESSAGE_CHARS), "detail": _bounded(detail or {})}}


class BodyTooLarge(StarletteHTTPException):
    """A request body past the limit of its route (api/app.py, BodyLimit)."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is over {limit} bytes, the limit of this route; send a smaller one")


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None))


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error statuses a route answers, for its OpenAPI ``responses=``."""
    return {status: {"model": ErrorResponse} for status in statuses}


# The methods a route of this API may answer, asked one by one of the router.
_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method the request's path answers: one path is several routes (``GET`` and
    ``DELETE /v1/jobs/{id}``), and Starlette's 405 names only those of the first that matched."""
    scope = {"type": "http", "path": request.scope["path"], "root_path": request.scope.get("root_path", "")}
    return ", ".join(
        method for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in request.app.router.routes)
    )


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or ".".join(map(str, loc))


def _validation_entry(error: Any) -> dict[str, str]:
    """Where a validation error sits (a spec error inside free-form JSON names its own path) and
    what it says: never its ``input``, which may be the whole body."""
    field = (error.get("ctx") or {}).get("field") or _loc(tuple(error.get("loc", ())))
    message = NOT_TEXT if error.get("type") == "string_unicode" else str(error.get("msg"))
    return {"field": field, "message": message}


def install(app: FastAPI) -> None:
    @app.exception_handler(ShrinkError)
    async def _shrink_error(request: Request, exc: ShrinkError) -> JSONResponse:
        if exc.status >= 500:
            log.error("request.failed", path=request.url.path, code=exc.code, message=exc.message)
        return JSONResponse(error_body(exc.code, exc.message, exc.detail), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())[:MAX_VALIDATION_ERRORS]
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        code = "spec_invalid" if first.get("type") in _SPEC_INVALID_TYPES else "validation_error"
        entries = [_validation_entry(e) for e in errors] or [_validation_entry(first)]
        detail = {"field": entries[0]["field"], "errors": entries}
        return JSONResponse(error_body(code, f"{entries[0]['field']}: {entries[0]['message']}", detail), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            exc.headers = {**(exc.headers or {}), "Allow": allowed_methods(request)}
        return http_error_response(exc)

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    async def _database_down(request: Request, exc: sqlalchemy.exc.OperationalError) -> JSONResponse:
        # The database is unreachable (restarting, failing over): nothing the client did; retry.
        log.warning("request.database_unavailable", path=request.url.path, error=str(exc.orig)[:300])
        return JSONResponse(
            error_body("database_unavailable", "the service's database is not answering; retry in a few seconds"),
            status_code=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request.crashed", path=request.url.path)
        return JSONResponse(error_body("internal_error", "an unexpected error occurred"), status_code=500)
