"""The routes' dependencies, each named once: ``SessionDep``, ``CurrentTenant``, ``Limit``,
``Cursor``, ``IdempotencyKey``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Query
from sqlalchemy.orm import Session

from core.db import new_session
from core.errors import Unauthorized
from core.models import Tenant
from core.settings import get_settings
from core.tenants import service as tenants


def _session() -> Iterator[Session]:
    with new_session() as session:  # closing discards whatever the route did not commit
        yield session


SessionDep = Annotated[Session, Depends(_session)]


def _tenant(session: SessionDep, authorization: Annotated[str | None, Header()] = None) -> Tenant:
    if not authorization:
        raise Unauthorized("send an API key: Authorization: Bearer shk_...", code="missing_api_key")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <api key>'", code="invalid_api_key")
    tenant = tenants.authenticate(session, token.strip())
    session.commit()  # last_used_at
    return tenant


CurrentTenant = Annotated[Tenant, Depends(_tenant)]


def _limit(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> int:
    return min(limit, get_settings().page_size_max)


Limit = Annotated[int, Depends(_limit)]
Cursor = Annotated[str | None, Query(max_length=400)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
