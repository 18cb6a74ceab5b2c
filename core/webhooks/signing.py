"""Standard Webhooks signatures: ``webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">``, keyed by the tenant's secret (``whsec_`` + base64 of 32 random
bytes). After a rotation the previous secret signs too, space-separated, until it expires, so a
receiver can switch secrets without losing a delivery."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.models import Tenant, utcnow
from core.settings import get_settings

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode("ascii")


def headers(keys: list[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in keys),
    }


def current_secret(session: Session, tenant_id: str) -> Tenant:
    """The tenant, with its secret made if it had none. Two callers racing to make it agree on
    one: the UPDATE applies only while the column is empty, and both read back what won."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}", code="tenant_not_found")
    if tenant.webhook_secret is None:
        session.execute(
            update(Tenant).where(Tenant.id == tenant_id, Tenant.webhook_secret.is_(None)).values(webhook_secret=new_secret())
        )
        session.commit()
        session.refresh(tenant)
    return tenant


def signing_secrets(tenant: Tenant, now: datetime | None = None) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one while its
    overlap lasts."""
    assert tenant.webhook_secret is not None, "current_secret() makes it"
    now = now or utcnow()
    previous = tenant.webhook_secret_previous
    expires = tenant.webhook_secret_previous_expires_at
    if previous and expires is not None and expires > now:
        return [tenant.webhook_secret, previous]
    return [tenant.webhook_secret]


def rotate(session: Session, tenant_id: str) -> Tenant:
    """A new current secret; the one it replaces keeps signing for the overlap. A second rotation
    within the overlap drops the oldest secret. The caller commits."""
    tenant = current_secret(session, tenant_id)
    tenant.webhook_secret_previous = tenant.webhook_secret
    tenant.webhook_secret_previous_expires_at = utcnow() + timedelta(seconds=get_settings().webhook_secret_overlap_seconds)
    tenant.webhook_secret = new_secret()
    session.flush()
    return tenant
