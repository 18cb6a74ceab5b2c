"""The routes' dependencies, each named once: ``SessionDep``, ``CurrentTenant``, ``PolledJob``, ``Limit``,
``Cursor``, ``IdempotencyKey``, ``LastEventId``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.console import session as console_session
from core.db import new_session, run_autocommit
from core.errors import BadRequest, Unauthorized
from core.jobs.service import job_not_found
from core.settings import get_settings
from core.tenants import auth, quotas
from core.tenants.auth import JobRow, Principal


def _session() -> Iterator[Session]:
    with new_session() as session:  # closing discards whatever the route did not commit
        yield session


SessionDep = Annotated[Session, Depends(_session)]


# Declared as the OpenAPI security scheme ``bearer`` (an Authorize button in /docs, a token set
# once in generated clients); the checks and their 401 codes stay the service's own.
bearer = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="shk_...",
    description="an API key: `shrink admin create-key TENANT` prints one",
    auto_error=False,
)
# The web console's cookie (api/console/session.py), the other way in: declared as the scheme
# ``session`` so that the document says a signed-in browser may call every route.
console_cookie = APIKeyCookie(
    name=console_session.COOKIE,
    scheme_name="session",
    description="the web console's signed session cookie, set by POST /v1/session; a POST, PUT, PATCH "
                "or DELETE made with it also sends X-CSRF-Token",
    auto_error=False,
)


async def _authenticated(request: Request, credentials: HTTPAuthorizationCredentials | None, job_id: str | None = None) -> tuple[Principal, JobRow | None]:
    """The request's tenant, on the event loop: one statement for key, tenant and rate (and the
    job a poll names), a write of ``last_used_at`` once a minute, then the request rate where
    the tenant has one."""
    if credentials is None and not request.headers.get("Authorization") and request.cookies.get(console_session.COOKIE):
        # A browser signed in to the console: the cookie, and X-CSRF-Token on a change.
        principal, job = await console_session.principal_of(request, job_id=job_id)
    else:
        if credentials is None:
            # HTTPBearer answers None for a missing header and for another scheme alike.
            if not request.headers.get("Authorization"):
                raise Unauthorized("send an API key: Authorization: Bearer shk_... (or sign in to the console at /)", code="missing_api_key")
            raise Unauthorized("the Authorization header must be 'Bearer <api key>'", code="invalid_api_key")
        token = credentials.credentials.strip()
        if not token:
            raise Unauthorized("the Authorization header must be 'Bearer <api key>'", code="invalid_api_key")
        principal, job = await run_autocommit(lambda connection: auth.authenticate(connection, token, job_id=job_id))
    await count_request(principal)
    return principal, job


async def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    _cookie: Annotated[str | None, Depends(console_cookie)],
) -> Principal:
    return (await _authenticated(request, credentials))[0]


async def _polled_job(
    request: Request,
    job_id: str,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    _cookie: Annotated[str | None, Depends(console_cookie)],
) -> JobRow:
    """The job ``{job_id}`` names, read with the key (404 ``job_not_found`` when the tenant has none)."""
    _, job = await _authenticated(request, credentials, job_id)
    if job is None:
        raise job_not_found(job_id)
    return job


async def count_request(principal: Principal) -> None:
    """Every authenticated request counts against its tenant's request rate (429 past it)."""
    if principal.requests_per_second is not None:
        await run_in_threadpool(quotas.check_request_rate, principal.id, principal.requests_per_second)


CurrentTenant = Annotated[Principal, Depends(_principal)]
# The status poll's job, authenticated and read in one statement (``core.tenants.auth``).
PolledJob = Annotated[JobRow, Depends(_polled_job)]


def _limit(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> int:
    return min(limit, get_settings().page_size_max)


Limit = Annotated[int, Depends(_limit)]
Cursor = Annotated[str | None, Query(max_length=400)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]

# What a client may send: any id an event could ever have (a signed 64-bit integer). Event ids
# are a 32-bit INTEGER column on PostgreSQL, so a larger one is read as the largest stored one:
# after every event, as it would be.
MAX_EVENT_ID = 2**63 - 1
MAX_STORED_EVENT_ID = 2**31 - 1


def _last_event_id(last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None) -> int:
    """The id of the last event a reconnecting client saw; 0 (from the start) when absent."""
    if not last_event_id:
        return 0
    digits = last_event_id.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19 or int(digits) > MAX_EVENT_ID:
        raise BadRequest(
            f"Last-Event-ID must be a non-negative integer below 2^63, the id of an event this stream sent; got {last_event_id[:40]!r}",
            code="invalid_last_event_id",
            detail={"field": "Last-Event-ID"},
        )
    return min(int(digits), MAX_STORED_EVENT_ID)


LastEventId = Annotated[int, Depends(_last_event_id)]
