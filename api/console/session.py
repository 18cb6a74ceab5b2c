"""The web console's session: a signed cookie that names an API key, and a CSRF token.

Browsers cannot put an ``Authorization`` header on an ``EventSource``, a link or a framed page,
so the console trades its API key once (``POST /v1/session``) for the cookie ``shrink_session``.
Its value is ``<key id>.<expiry, unix seconds>.<signature>``, an HMAC-SHA256 under a key derived
from ``SHRINK_SECRET_KEY``: nothing is stored on the server, and the key's row is read on every
request, so a revoked or expired key ends its sessions at once, as it ends Bearer requests.

A cookie rides along on any request the browser makes to this origin, so every state-changing
request made with it must also carry ``X-CSRF-Token``: an HMAC of the cookie's value, which the
console reads from the JSON answer of ``POST`` or ``GET /v1/session``, and which another site can
neither read (no credentialed CORS) nor compute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request

from core.db import run_autocommit
from core.errors import ShrinkError, Unauthorized
from core.settings import get_settings
from core.tenants import auth
from core.tenants.auth import JobRow, Principal

COOKIE = "shrink_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A cookie past this length is not one this module made: refused before any work.
MAX_COOKIE_CHARS = 200


class CsrfFailed(ShrinkError):
    code, status = "csrf_failed", 403


def _derived(purpose: str) -> bytes:
    # One secret setting, a separate key per use: a session signature can never be replayed as
    # a CSRF token or an API-key hash, and the other way round.
    return hmac.new(get_settings().secret_key.encode(), f"shrink-console-{purpose}-v1".encode(), hashlib.sha256).digest()


def _mac(purpose: str, message: str) -> str:
    digest = hmac.new(_derived(purpose), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class Claims:
    key_id: str
    expires: int  # unix seconds
    value: str  # the cookie's whole value

    @property
    def csrf_token(self) -> str:
        return csrf_token(self.value)


def issue(key_id: str, key_expires_at: datetime | None, now: float | None = None) -> Claims:
    """A session for the key ``key_id``, ending after ``SHRINK_SESSION_SECONDS`` or when the key
    expires, whichever comes first."""
    now = time.time() if now is None else now
    expires = int(now + get_settings().session_seconds)
    if key_expires_at is not None:
        expires = min(expires, int(key_expires_at.timestamp()))
    payload = f"{key_id}.{expires}"
    return Claims(key_id, expires, f"{payload}.{_mac('session', payload)}")


def read(value: str, now: float | None = None) -> Claims | None:
    """The claims of a cookie this service signed and that has not expired; None otherwise."""
    if len(value) > MAX_COOKIE_CHARS:
        return None
    parts = value.split(".")
    if len(parts) != 3 or not parts[1].isascii() or not parts[1].isdigit():
        return None
    key_id, expires, signature = parts
    if not hmac.compare_digest(signature, _mac("session", f"{key_id}.{expires}")):
        return None
    if int(expires) <= (time.time() if now is None else now):
        return None
    return Claims(key_id, int(expires), value)


def csrf_token(cookie_value: str) -> str:
    return _mac("csrf", cookie_value)


def _refused() -> Unauthorized:
    return Unauthorized(
        "the console session has ended (signed out, expired, or its API key was revoked): sign in again with an API key",
        code="session_invalid",
    )


def claims_of(request: Request) -> Claims:
    """The request's valid session cookie, or 401 ``session_invalid`` (``missing_api_key`` when
    there is none)."""
    value = request.cookies.get(COOKIE)
    if not value:
        raise Unauthorized("send an API key (Authorization: Bearer shk_...), or sign in to the console at /", code="missing_api_key")
    claims = read(value)
    if claims is None:
        raise _refused()
    return claims


async def session_of(request: Request, *, job_id: str | None = None) -> tuple[Claims, Principal, JobRow | None]:
    """The request's session and its key's principal, read now: refused once the key is revoked
    or expired; given ``job_id``, that job too when the tenant has it."""
    claims = claims_of(request)
    principal, job = await run_autocommit(lambda connection: auth.key_principal(connection, claims.key_id, _refused, job_id=job_id))
    return claims, principal, job


async def principal_of(request: Request, *, job_id: str | None = None) -> tuple[Principal, JobRow | None]:
    """The principal of a request authenticated by the cookie: a live key, and for a
    state-changing method the matching ``X-CSRF-Token`` (403 ``csrf_failed``); given ``job_id``,
    that job too when the tenant has it."""
    claims, principal, job = await session_of(request, job_id=job_id)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), claims.csrf_token.encode()):
            raise CsrfFailed(
                f"a request signed in by the console cookie must send the header {CSRF_HEADER} "
                "that POST or GET /v1/session returned; reload the console",
                detail={"field": CSRF_HEADER},
            )
    return principal, job
