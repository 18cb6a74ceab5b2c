"""Tenants and their API keys."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import security
from core.errors import Conflict, NotFound, Unauthorized
from core.ids import new_id
from core.models import ApiKey, Tenant, utcnow
from core.settings import get_settings


def create_tenant(session: Session, name: str) -> Tenant:
    if session.scalar(select(Tenant).where(Tenant.name == name)) is not None:
        raise Conflict(f"a tenant named {name!r} exists")
    tenant = Tenant(id=new_id("tenant"), name=name)
    session.add(tenant)
    session.flush()
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.created_at)))


def create_api_key(session: Session, tenant_id: str, *, label: str = "") -> tuple[ApiKey, str]:
    """Returns the row and the full key, which is shown once and never stored."""
    if session.get(Tenant, tenant_id) is None:
        raise NotFound(f"no tenant {tenant_id}")
    lookup, secret, full = security.new_key()
    key = ApiKey(
        id=new_id("key"),
        tenant_id=tenant_id,
        lookup=lookup,
        secret_hash=security.hash_secret(secret, get_settings().secret_key),
        label=label,
    )
    session.add(key)
    session.flush()
    return key, full


def authenticate(session: Session, presented: str) -> Tenant:
    parsed = security.parse_key(presented)
    if parsed is None:
        raise Unauthorized("malformed API key", code="invalid_api_key")
    lookup, secret = parsed
    key = session.scalar(select(ApiKey).where(ApiKey.lookup == lookup))
    if key is None or key.revoked_at is not None or not security.verify(secret, key.secret_hash, get_settings().secret_key):
        raise Unauthorized("unknown or revoked API key", code="invalid_api_key")
    tenant = session.get(Tenant, key.tenant_id)
    if tenant is None:
        raise Unauthorized("unknown or revoked API key", code="invalid_api_key")
    key.last_used_at = utcnow()
    return tenant
