"""Keyset pagination, written once for every list route: newest first, by (created_at, id)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from core.errors import BadRequest

T = TypeVar("T")


def encode_cursor(created_at: datetime, record_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), record_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """A cursor this module made, or 400: the values go into SQL, which takes only an aware
    datetime (core/models.py) and a string id that is text."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, record_id = json.loads(base64.urlsafe_b64decode(padded))
        when = datetime.fromisoformat(created)
        if when.tzinfo is None or not isinstance(record_id, str):
            raise ValueError("not a cursor of ours")
        record_id.encode("utf-8")  # a lone surrogate from a JSON escape is no id
        return when.astimezone(UTC), record_id
    except (ValueError, TypeError, OverflowError):
        raise BadRequest(
            "invalid cursor; pass the next_cursor of the previous page unchanged, or none for the first page",
            code="invalid_cursor", detail={"field": "cursor"},
        ) from None


def paginate(session: Session, query: Select[Any], model: Any, *, cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    if cursor:
        created, record_id = decode_cursor(cursor)
        query = query.where(
            or_(model.created_at < created, and_(model.created_at == created, model.id < record_id))
        )
    rows = list(session.scalars(query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor
