"""Per-tenant quotas and the request rate (docs/operations.md, quotas and rate limits).

A tenant's limit is its own (``shrink admin set-quota``) or else the service's default
(``SHRINK_DEFAULT_*``); None or 0 is no limit. Jobs past ``max_running_jobs`` wait queued (the
worker's claim enforces it, core.jobs.lease); a submit past ``max_queued_jobs`` is 429, an upload
past ``max_storage_bytes`` 413, and requests past ``requests_per_second`` 429 with Retry-After."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.errors import PayloadTooLarge, RateLimited, ShrinkError
from core.jobs.states import JobState
from core.logging import get_logger
from core.models import Artifact, Job, StoredDataset, StoredModel, Tenant, TenantQuota, utcnow
from core.settings import get_settings

if TYPE_CHECKING:
    from limits.strategies import MovingWindowRateLimiter

log = get_logger(__name__)

FIELDS = ("max_running_jobs", "max_queued_jobs", "max_storage_bytes", "requests_per_second")


@dataclass(frozen=True)
class Limits:
    """What applies to a tenant now; None is no limit."""

    max_running_jobs: int | None
    max_queued_jobs: int | None
    max_storage_bytes: int | None
    requests_per_second: int | None

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)


@dataclass(frozen=True)
class Usage:
    running_jobs: int
    queued_jobs: int
    storage_bytes: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def effective(name: str, own: int | None) -> int | None:
    """The limit ``name`` that applies: the tenant's own value, else the service's default;
    None (0 in either) is no limit."""
    value = own if own is not None else getattr(get_settings(), f"default_{name}")
    return value or None


def limits_of(session: Session, tenant_id: str) -> Limits:
    own = session.get(TenantQuota, tenant_id)
    return Limits(**{name: effective(name, getattr(own, name) if own is not None else None) for name in FIELDS})


def _count_jobs(session: Session, tenant_id: str, state: JobState) -> int:
    return int(session.scalar(select(func.count()).select_from(Job).where(Job.tenant_id == tenant_id, Job.state == state)) or 0)


def stored_bytes(session: Session, tenant_id: str) -> int:
    """Uploaded models and datasets and the artifacts of the tenant's jobs."""
    total = 0
    for row in (StoredModel, StoredDataset, Artifact):
        total += int(session.scalar(select(func.coalesce(func.sum(row.size_bytes), 0)).where(row.tenant_id == tenant_id)) or 0)
    return total


def usage_of(session: Session, tenant_id: str) -> Usage:
    return Usage(
        running_jobs=_count_jobs(session, tenant_id, JobState.RUNNING),
        queued_jobs=_count_jobs(session, tenant_id, JobState.QUEUED),
        storage_bytes=stored_bytes(session, tenant_id),
    )


def lock_tenant(session: Session, tenant_id: str) -> None:
    """Make the transactions that count and then add a tenant's jobs take turns, until commit.
    FOR NO KEY UPDATE (PostgreSQL) does not wait for inserts that merely refer to the tenant;
    SQLite has no row locks and needs none: it runs one writer at a time."""
    session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update(key_share=True))


def check_queued_jobs(session: Session, tenant_id: str) -> None:
    """Before a new job is added: 429 ``quota_exceeded`` when the tenant already has its most
    queued jobs. Holds the tenant's lock until the caller commits, so two submits at once cannot
    both take the last place."""
    limit = limits_of(session, tenant_id).max_queued_jobs
    if limit is None:
        return
    lock_tenant(session, tenant_id)
    queued = _count_jobs(session, tenant_id, JobState.QUEUED)
    if queued >= limit:
        raise ShrinkError(
            f"this tenant has {queued} queued jobs, its limit; submit again when some have started, or cancel some",
            code="quota_exceeded",
            status=429,
            detail={"quota": "max_queued_jobs", "limit": limit, "queued_jobs": queued},
        )


def check_storage(session: Session, tenant_id: str, incoming_bytes: int) -> None:
    """Before an upload is stored: 413 ``quota_exceeded`` when it would take the tenant past its
    storage quota."""
    limit = limits_of(session, tenant_id).max_storage_bytes
    if limit is None:
        return
    stored = stored_bytes(session, tenant_id)
    if stored + incoming_bytes > limit:
        raise PayloadTooLarge(
            f"this upload of {incoming_bytes} bytes would take the tenant's storage to {stored + incoming_bytes} bytes, "
            f"past its quota of {limit}; delete models or datasets, or ask the service's operator for a larger quota",
            code="quota_exceeded",
            detail={"quota": "max_storage_bytes", "limit_bytes": limit, "stored_bytes": stored, "upload_bytes": incoming_bytes},
        )


def wait_for_slot(session: Session, job_id: str) -> bool:
    """A queued job that its tenant's running limit kept from starting stays queued, dated so that
    the reaper's next sweep sends its wake-up again (the message that found no slot is spent).
    False: the job was not queued (another worker holds it, or it has ended)."""
    settings = get_settings()
    return bool(session.execute(
        update(Job).where(Job.id == job_id, Job.state == JobState.QUEUED, Job.cancel_requested.is_(False))
        .values(enqueued_at=utcnow() - timedelta(seconds=settings.requeue_queued_after_seconds))
    ).rowcount)


def next_waiting_job(session: Session, tenant_id: str) -> tuple[str, str] | None:
    """The tenant's oldest queued job (id, queue) when its running limit may be holding it back:
    a slot has just freed, so it need not wait for the reaper's next sweep."""
    if limits_of(session, tenant_id).max_running_jobs is None:
        return None
    row = session.execute(
        select(Job.id, Job.queue)
        .where(Job.tenant_id == tenant_id, Job.state == JobState.QUEUED, Job.cancel_requested.is_(False))
        .order_by(Job.created_at, Job.id)
        .limit(1)
    ).first()
    return (row[0], row[1]) if row else None


def rate_limit_storage_uri() -> str:
    settings = get_settings()
    if settings.rate_limit_storage:
        return settings.rate_limit_storage
    broker = settings.resolved_broker_url
    return broker if broker.startswith(("redis://", "rediss://")) else "memory://"


@lru_cache(maxsize=8)
def _limiter(uri: str) -> MovingWindowRateLimiter:
    # Imported here: only the API counts requests; workers and admin commands never need it.
    from limits.storage import storage_from_string
    from limits.strategies import MovingWindowRateLimiter

    return MovingWindowRateLimiter(storage_from_string(uri, wrap_exceptions=True))


def check_request_rate(tenant_id: str, rate: int) -> None:
    """Count a request of the tenant; 429 ``rate_limited`` with the seconds to wait when it is
    past ``rate`` requests per second (a moving window of one second). A storage that cannot be
    reached lets the request through: the limiter protects the service, it must not stop it.
    The rate is the tenant's own or the default (``core.tenants.auth.Principal``); this may wait
    on Redis, so the API calls it on its thread pool."""
    from limits import RateLimitItemPerSecond
    from limits.errors import StorageError

    item = RateLimitItemPerSecond(rate, 1)
    namespace = get_settings().rate_limit_namespace
    limiter = _limiter(rate_limit_storage_uri())
    try:
        if limiter.hit(item, namespace, tenant_id):
            return
        reset_at = limiter.get_window_stats(item, namespace, tenant_id).reset_time
    except StorageError as error:
        log.warning("rate_limit.storage_failed", error=str(error))
        return
    retry_after = max(1, math.ceil(reset_at - time.time()))
    raise RateLimited(
        f"more than {rate} requests per second for this tenant; retry after {retry_after} s",
        detail={"limit_per_second": rate, "retry_after_seconds": retry_after},
    )


def describe(session: Session, tenant_id: str) -> dict[str, Any]:
    return {"limits": limits_of(session, tenant_id).as_dict(), "usage": usage_of(session, tenant_id).as_dict()}
