"""Who a request is: its API key, read on every request (a revoked or expired key is refused at
once), with its tenant and the tenant's own request rate, in one statement on the event loop
(``core.db.run_autocommit``). The web console's session cookie names a key the same way.

A status poll (``GET /v1/jobs/{id}``) reads its job in that same statement (``job_id=``): one
round trip per poll instead of two, the largest part of what a poll costs the database and the
API's event loop. The job is joined on the key's tenant, so another tenant's job reads as absent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core import security
from core.errors import ShrinkError, Unauthorized
from core.models import ApiKey, Job, Tenant, TenantQuota, utcnow
from core.settings import get_settings
from core.tenants import quotas
from core.tenants.service import is_expired

# ``last_used_at`` is kept to the minute: written on every request, it made each status poll a
# committed write (an fsync on PostgreSQL), the largest part of its cost.
LAST_USED_RESOLUTION = timedelta(minutes=1)

_KEY = (
    select(ApiKey.id, ApiKey.tenant_id, ApiKey.secret_hash, ApiKey.revoked_at, ApiKey.expires_at, ApiKey.last_used_at,
           Tenant.name, TenantQuota.requests_per_second)
    .join_from(ApiKey, Tenant, Tenant.id == ApiKey.tenant_id)
    .outerjoin(TenantQuota, TenantQuota.tenant_id == ApiKey.tenant_id)
)  # fmt: skip
_JOB_COLUMNS = [c.name for c in Job.__table__.c]
_WITH_JOB = _KEY.add_columns(*(c.label(f"job_{c.name}") for c in Job.__table__.c)).outerjoin(
    Job, and_(Job.id == bindparam("job_id"), Job.tenant_id == ApiKey.tenant_id)
)
_BY_LOOKUP = {False: _KEY.where(ApiKey.lookup == bindparam("lookup")), True: _WITH_JOB.where(ApiKey.lookup == bindparam("lookup"))}
_BY_ID = {False: _KEY.where(ApiKey.id == bindparam("key_id")), True: _WITH_JOB.where(ApiKey.id == bindparam("key_id"))}

# A job as the poll reads it: its columns by name (what ``api.schemas.JobOut.of`` reads).
JobRow = SimpleNamespace


@dataclass(frozen=True)
class Principal:
    """The tenant a request acts for, and through which key."""

    id: str  # the tenant's id
    name: str
    key_id: str
    key_expires_at: datetime | None
    requests_per_second: int | None  # the rate that applies (the tenant's own, else the default); None: no limit


def _unknown_key() -> Unauthorized:
    return Unauthorized("unknown, revoked or expired API key: ask the service's operator for a new one", code="invalid_api_key")


async def authenticate(connection: AsyncConnection, presented: str, *, job_id: str | None = None) -> tuple[Principal, JobRow | None]:
    """The principal of an API key as ``Authorization: Bearer`` presents it (401
    ``invalid_api_key`` for a malformed, unknown, revoked or expired one) and, given ``job_id``,
    that job when the key's tenant has it."""
    parsed = security.parse_key(presented)
    if parsed is None:
        raise Unauthorized("malformed API key", code="invalid_api_key")
    lookup, secret = parsed
    row = (await connection.execute(_BY_LOOKUP[job_id is not None], {"lookup": lookup, "job_id": job_id})).first()
    if row is None or not security.verify(secret, row.secret_hash, get_settings().secret_key):
        raise _unknown_key()
    return await _live(connection, row, _unknown_key), _job(row, job_id)


async def key_principal(
    connection: AsyncConnection, key_id: str, refused: Callable[[], ShrinkError], *, job_id: str | None = None
) -> tuple[Principal, JobRow | None]:
    """The principal of a key named by id (a console session's), or ``refused()`` once the key is
    gone, revoked or expired; and, given ``job_id``, that job when the key's tenant has it."""
    row = (await connection.execute(_BY_ID[job_id is not None], {"key_id": key_id, "job_id": job_id})).first()
    if row is None:
        raise refused()
    return await _live(connection, row, refused), _job(row, job_id)


def _job(row: Any, job_id: str | None) -> JobRow | None:
    if job_id is None or row.job_id is None:
        return None
    values = row._mapping
    return JobRow(**{name: values[f"job_{name}"] for name in _JOB_COLUMNS})


async def _live(connection: AsyncConnection, row: Any, refused: Callable[[], ShrinkError]) -> Principal:
    now = utcnow()
    if row.revoked_at is not None or is_expired(row, now):
        raise refused()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        await connection.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    rate = quotas.effective("requests_per_second", row.requests_per_second)
    return Principal(id=row.tenant_id, name=row.name, key_id=row.id, key_expires_at=row.expires_at, requests_per_second=rate)
