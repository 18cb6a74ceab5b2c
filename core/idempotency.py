"""``Idempotency-Key`` on POSTs: a repeated key returns the first response, stored with the
creation in the same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Conflict
from core.models import IdempotencyRecord

MAX_KEY_LENGTH = 200


def lookup(session: Session, tenant_id: str, key: str | None, route: str) -> tuple[int, dict[str, Any]] | None:
    if not key:
        return None
    if len(key) > MAX_KEY_LENGTH:
        raise Conflict("Idempotency-Key is too long (200 characters at most)", code="idempotency_key_invalid", status=400)
    record = session.scalar(
        select(IdempotencyRecord).where(IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key)
    )
    if record is None:
        return None
    if record.route != route:
        raise Conflict(
            f"Idempotency-Key {key!r} was used for another request ({record.route})", code="idempotency_key_reused"
        )
    return record.status_code, record.body


def remember(session: Session, tenant_id: str, key: str | None, route: str, status_code: int, body: dict[str, Any]) -> None:
    if key:
        session.add(IdempotencyRecord(tenant_id=tenant_id, key=key, route=route, status_code=status_code, body=body))
