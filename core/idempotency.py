"""``Idempotency-Key`` on POSTs (docs/architecture.md, idempotency).

The first request with a key wins it: ``claim`` inserts the key's row in a transaction of its own
and commits it before any work, so the unique constraint on (tenant, key) decides between
concurrent requests. The winner does the work and stores its response in the row inside the same
transaction that creates the record (``complete``); if it fails it deletes the row (``release``),
so the client may retry with the same key. Every other request with the key gets the stored
response once there is one, ``InFlight`` (409 with Retry-After) while there is none, or 422
``idempotency_key_reused`` when its request differs from the first one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import new_session
from core.errors import BadRequest, Conflict, ValidationFailed
from core.logging import get_logger
from core.models import IdempotencyRecord, utcnow
from core.settings import get_settings

log = get_logger(__name__)
MAX_KEY_LENGTH = 200
# What a client is told to wait before asking again while the first request is in flight.
RETRY_AFTER_SECONDS = 2


@dataclass(frozen=True)
class Claim:
    """This request holds the key: it does the work, then ``complete`` or ``release``."""

    record_id: int
    tenant_id: str
    key: str


@dataclass(frozen=True)
class Replay:
    """The key's first request has finished: answer its response again."""

    status_code: int
    body: dict[str, Any]


@dataclass(frozen=True)
class InFlight:
    """The key's first request is still running."""

    key: str
    retry_after: int = RETRY_AFTER_SECONDS


def request_hash(route: str, request: dict[str, Any]) -> str:
    """The digest of a request normalized as JSON with sorted keys: two requests that parse to
    the same values hash the same, whatever their key order or whitespace."""
    text = json.dumps({"route": route, "request": request}, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def claim(tenant_id: str, key: str | None, route: str, digest: str) -> Claim | Replay | InFlight | None:
    """Claim ``key`` for this request (None: no key was sent, nothing to claim)."""
    if not key:
        return None
    if len(key) > MAX_KEY_LENGTH:
        raise BadRequest("Idempotency-Key is too long (200 characters at most)", code="idempotency_key_invalid",
                         detail={"field": "Idempotency-Key"})
    # Three rounds at most: a round repeats only when the holder released the key (it failed) or
    # abandoned it between our insert and our read.
    for _ in range(3):
        with new_session() as session:
            session.add(IdempotencyRecord(tenant_id=tenant_id, key=key, route=route, status_code=None, body={},
                                          request_hash=digest))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
            else:
                record = session.scalar(
                    select(IdempotencyRecord).where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key)
                )
                assert record is not None
                return Claim(record_id=record.id, tenant_id=tenant_id, key=key)
            record = session.scalar(
                select(IdempotencyRecord).where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key)
            )
            if record is None:
                continue
            _check_same_request(record, key, route, digest)
            if record.status_code is not None:
                return Replay(record.status_code, record.body)
            if record.created_at < utcnow() - timedelta(seconds=get_settings().longest_request_seconds):
                # Its request died with its process (a request never runs this long): take over.
                session.execute(delete(IdempotencyRecord).where(
                    IdempotencyRecord.id == record.id, IdempotencyRecord.status_code.is_(None)))
                session.commit()
                log.warning("idempotency.claim_abandoned", tenant_id=tenant_id, record_id=record.id)
                continue
            return InFlight(key)
    return InFlight(key)


def _check_same_request(record: IdempotencyRecord, key: str, route: str, digest: str) -> None:
    if record.route != route:
        raise Conflict(
            f"Idempotency-Key {key!r} was used for another request ({record.route}); use a new key",
            code="idempotency_key_reused", detail={"field": "Idempotency-Key"},
        )
    # Records stored before request hashes existed have none: they are compared by route only.
    if record.request_hash is not None and record.request_hash != digest:
        raise ValidationFailed(
            f"Idempotency-Key {key!r} was used with a different request body; use a new key for a new request",
            code="idempotency_key_reused", detail={"field": "Idempotency-Key"},
        )


def complete(session: Session, held: Claim | None, status_code: int, body: dict[str, Any]) -> None:
    """Store the response in the caller's transaction, the one that creates the record."""
    if held is None:
        return
    session.execute(
        update(IdempotencyRecord).where(IdempotencyRecord.id == held.record_id)
        .values(status_code=status_code, body=body)
    )


def release(held: Claim | None) -> None:
    """The request failed: free the key so that a retry does the work again."""
    if held is None:
        return
    with new_session() as session:
        session.execute(delete(IdempotencyRecord).where(
            IdempotencyRecord.id == held.record_id, IdempotencyRecord.status_code.is_(None)))
        session.commit()
