"""The web console: its page at ``/``, its assets under ``/static/console/``, and the session
routes (``POST``, ``GET``, ``DELETE /v1/session``) that trade an API key for the signed cookie
(api/console/session.py). The page is plain ES modules and CSS from this origin, under a policy
that allows nothing else: no inline script or style, no other host."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.types import Scope

from api.console import session as console_session
from api.deps import console_cookie, count_request
from api.errors import responses
from core.db import run_autocommit
from core.tenants import auth
from core.tenants.auth import Principal

ASSETS = Path(__file__).resolve().parent.parent / "static" / "console"
STATIC_URL = "/static/console"
PAGE_CSP = "; ".join((
    "default-src 'self'",
    "object-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "frame-src 'self'",  # the report page, framed
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(tags=["console"])


class SessionRequest(BaseModel, extra="forbid"):
    api_key: str = Field(min_length=1, max_length=200, description="an API key, shk_...")


class SessionOut(BaseModel):
    tenant_id: str
    tenant_name: str
    key_id: str
    expires_at: datetime
    csrf_token: str = Field(description="send it as X-CSRF-Token on every POST, PUT, PATCH and DELETE made with the cookie")


def _out(claims: console_session.Claims, principal: Principal) -> SessionOut:
    return SessionOut(tenant_id=principal.id, tenant_name=principal.name, key_id=principal.key_id,
                      expires_at=datetime.fromtimestamp(claims.expires, UTC), csrf_token=claims.csrf_token)


@router.post("/v1/session", response_model=SessionOut,
             summary="Sign a browser in: check an API key and set the console's session cookie",
             responses=responses(400, 401, 413, 422, 429))  # 400: a body that is not JSON; 413: past the body limit
async def sign_in(body: SessionRequest, request: Request, response: Response) -> SessionOut:
    # 401 invalid_api_key, as for a Bearer request
    principal, _ = await run_autocommit(lambda connection: auth.authenticate(connection, body.api_key.strip()))
    await count_request(principal)
    claims = console_session.issue(principal.key_id, principal.key_expires_at)
    response.set_cookie(
        console_session.COOKIE, claims.value, max_age=max(0, claims.expires - int(time.time())), path="/",
        secure=request.url.scheme == "https", httponly=True, samesite="strict",
    )
    response.headers["Cache-Control"] = "no-store"
    return _out(claims, principal)


@router.get("/v1/session", response_model=SessionOut,
            summary="Read the browser's console session and its CSRF token (after a reload)",
            responses=responses(401, 429))
async def read_session(
    request: Request, response: Response, _cookie: Annotated[str | None, Depends(console_cookie)],
) -> SessionOut:
    claims, principal, _ = await console_session.session_of(request)
    await count_request(principal)
    response.headers["Cache-Control"] = "no-store"
    return _out(claims, principal)


@router.delete("/v1/session", status_code=204, summary="Sign the browser out: clear the console's session cookie")
def sign_out(request: Request) -> Response:
    # Needs nothing: it only tells this browser to forget its own cookie.
    response = Response(status_code=204)
    response.delete_cookie(console_session.COOKIE, path="/", secure=request.url.scheme == "https",
                           httponly=True, samesite="strict")
    return response


@router.get("/", include_in_schema=False)
def console_page() -> FileResponse:
    return FileResponse(ASSETS / "index.html", media_type="text/html", headers=PAGE_HEADERS)


class _ConsoleAssets(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Any:
        response = await super().get_response(path, scope)
        response.headers.update({"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})
        return response


def install(app: FastAPI) -> None:
    app.mount(STATIC_URL, _ConsoleAssets(directory=ASSETS), name="console-assets")
    app.include_router(router)
