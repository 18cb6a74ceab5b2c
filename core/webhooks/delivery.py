"""Deliveries: the job's final record, POSTed signed to its ``webhook_url``, retried with backoff
until ``SHRINK_WEBHOOK_RETRY_WINDOW_SECONDS`` after the first attempt, every attempt recorded.

The worker sends the first attempt when a job ends (``deliver_first``); a failed attempt (no
connection, a timeout, a refused address, or an answer that is not 2xx) leaves the next one as a
``pending`` row, which a reaper sends once due (``send_due``). A webhook never fails a job."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import new_session
from core.errors import ValidationFailed
from core.jobs import service
from core.logging import get_logger
from core.models import Job, WebhookDelivery, utcnow
from core.settings import get_settings
from core.webhooks import signing, transport
from core.webhooks.urls import resolve_target

log = get_logger(__name__)

PENDING, SENDING, DELIVERED, FAILED = "pending", "sending", "delivered", "failed"
MAX_ERROR_CHARS = 500


def message_id(job_id: str) -> str:
    """One message per job (its final record): the same ``webhook-id`` on every attempt."""
    return f"msg_{job_id}"


def delivery_id(job_id: str, attempt: int) -> str:
    return f"whd_{job_id}_{attempt}"


def payload(job: Job) -> dict[str, Any]:
    return {"id": job.id, "state": job.state, "result": job.result, "error": job.error}


def body_of(job: Job) -> bytes:
    # The same bytes on every attempt, as the signature covers them.
    return json.dumps(payload(job), sort_keys=True, separators=(",", ":")).encode()


def retry_delay(attempt: int) -> float:
    """Seconds from the end of attempt ``attempt`` (1, 2, ...) to the next one."""
    delays = get_settings().webhook_retry_delays_seconds
    return float(delays[min(attempt, len(delays)) - 1])


def deliver_first(job_id: str) -> str | None:
    """Record and send the first attempt of a finished job's webhook; its state, or None when the
    job has no webhook or its first attempt was already recorded (a second notify)."""
    now = utcnow()
    with new_session() as session:
        job = session.get(Job, job_id)
        if job is None or not job.webhook_url:
            return None
        session.add(WebhookDelivery(
            id=delivery_id(job_id, 1), job_id=job_id, tenant_id=job.tenant_id, message_id=message_id(job_id),
            attempt=1, state=SENDING, due_at=now, started_at=now,
        ))
        try:
            session.commit()
        except IntegrityError:
            return None
    return _attempt(delivery_id(job_id, 1))


def _claimable(now: datetime) -> Any:
    # A pending attempt once due, or one whose sender died while sending (it never recorded an end).
    stale_before = now - timedelta(seconds=3 * get_settings().webhook_timeout_seconds + 60)
    return or_(
        and_(WebhookDelivery.state == PENDING, WebhookDelivery.due_at <= now),
        and_(WebhookDelivery.state == SENDING, WebhookDelivery.started_at < stale_before),
    )


def send_due(limit: int = 50) -> list[str]:
    """Send the attempts that are due; the ids of those this caller claimed. Each is claimed with
    one conditional UPDATE, so two reapers never send the same attempt."""
    now = utcnow()
    with new_session() as session:
        due = list(session.scalars(
            select(WebhookDelivery.id).where(_claimable(now)).order_by(WebhookDelivery.due_at).limit(limit)
        ))
    claimed = []
    for row_id in due:
        with new_session() as session:
            won = session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == row_id, _claimable(now))
                .values(state=SENDING, started_at=utcnow())
            ).rowcount == 1
            session.commit()
        if won:
            claimed.append(row_id)
            _attempt(row_id)
    return claimed


@dataclass
class _Outcome:
    status_code: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _post(url: str, message: str, body: bytes, keys: list[str]) -> _Outcome:
    try:
        target = resolve_target(url)  # checked at every attempt: DNS may have changed since submit
        headers = signing.headers(keys, message, int(time.time()), body)
        status = transport.post(url, target, body, headers, timeout=get_settings().webhook_timeout_seconds)
    except ValidationFailed as exc:
        return _Outcome(error=exc.message)
    except httpx.TimeoutException:
        return _Outcome(error=f"no answer within {get_settings().webhook_timeout_seconds:g} s")
    except httpx.HTTPError as exc:
        return _Outcome(error=f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
    except Exception:  # noqa: BLE001 - a webhook failure never fails the job; details go to the log
        log.exception("webhook.internal_error", message_id=message)
        return _Outcome(error="internal error while sending")
    return _Outcome(status_code=status, error=None if 200 <= status < 300 else f"answered {status}")


def _attempt(row_id: str) -> str:
    """Send a claimed attempt, record how it ended, and schedule the next one if it failed."""
    with new_session() as session:
        row = session.get(WebhookDelivery, row_id)
        assert row is not None and row.state == SENDING, row_id
        job = session.get(Job, row.job_id)
        assert job is not None and job.webhook_url, row.job_id
        url, body, message = job.webhook_url, body_of(job), row.message_id
        keys = signing.signing_secrets(signing.current_secret(session, job.tenant_id))
    outcome = _post(url, message, body, keys)
    with new_session() as session:
        row = session.get(WebhookDelivery, row_id)
        assert row is not None
        now = utcnow()
        row.status_code, row.error, row.finished_at = outcome.status_code, outcome.error, now
        row.state = DELIVERED if outcome.delivered else FAILED
        if not outcome.delivered:
            _schedule_retry(session, row, now)
        session.commit()
        fields = {"job_id": row.job_id, "message_id": row.message_id, "attempt": row.attempt,
                  "status_code": row.status_code, "error": row.error,
                  "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None}
        state = row.state
    if state == DELIVERED:
        log.info("webhook.delivered", **fields)
    else:
        log.warning("webhook.failed" if fields["next_attempt_at"] else "webhook.gave_up", **fields)
    return state


def _schedule_retry(session: Session, row: WebhookDelivery, now: datetime) -> None:
    first = session.get(WebhookDelivery, delivery_id(row.job_id, 1))
    started = (first.started_at if first is not None else None) or row.due_at
    due = now + timedelta(seconds=retry_delay(row.attempt))
    if due > started + timedelta(seconds=get_settings().webhook_retry_window_seconds):
        return
    row.next_attempt_at = due
    session.add(WebhookDelivery(
        id=delivery_id(row.job_id, row.attempt + 1), job_id=row.job_id, tenant_id=row.tenant_id,
        message_id=row.message_id, attempt=row.attempt + 1, state=PENDING, due_at=due,
    ))


def list_deliveries(session: Session, tenant_id: str, job_id: str) -> list[WebhookDelivery]:
    """Every attempt at a job's webhook, first first; another tenant's job is 404."""
    service.get_job(session, tenant_id, job_id)
    return list(session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.attempt)
    ))
