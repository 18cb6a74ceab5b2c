"""Tenants, their API keys and their quotas."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import security
from core.errors import BadRequest, Conflict, NotFound
from core.ids import new_id
from core.models import ApiKey, Tenant, TenantQuota, utcnow
from core.settings import get_settings
from core.tenants import quotas


def _tenant_exists(name: str, tenant_id: str) -> Conflict:
    return Conflict(f"tenant {name} exists: its id is {tenant_id}", code="tenant_exists", detail={"field": "name", "tenant_id": tenant_id})


def create_tenant(session: Session, name: str) -> Tenant:
    existing = session.scalar(select(Tenant).where(Tenant.name == name))
    if existing is not None:
        raise _tenant_exists(name, existing.id)
    tenant = Tenant(id=new_id("tenant"), name=name)
    session.add(tenant)
    try:
        session.flush()
    except IntegrityError:
        # Created by someone else since the check above; this transaction is spoilt, so no lookup.
        raise Conflict(f"tenant {name} exists: `shrink admin list-tenants` shows its id", code="tenant_exists", detail={"field": "name"}) from None
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.created_at)))


def _get_tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}: `shrink admin list-tenants` shows the ids", code="tenant_not_found")
    return tenant


def _get_key(session: Session, key_id: str) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key {key_id}: `shrink admin list-keys TENANT_ID` shows the ids", code="api_key_not_found")
    return key


def create_api_key(session: Session, tenant_id: str, *, label: str = "") -> tuple[ApiKey, str]:
    """Returns the row and the full key, which is shown once and never stored."""
    _get_tenant(session, tenant_id)
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


def list_api_keys(session: Session, tenant_id: str) -> list[ApiKey]:
    _get_tenant(session, tenant_id)
    return list(session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at, ApiKey.id)))


def revoke_api_key(session: Session, key_id: str) -> ApiKey:
    """Revokes at once; revoking twice keeps the first time."""
    key = _get_key(session, key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key


def rotate_api_key(session: Session, key_id: str, *, grace: timedelta) -> tuple[ApiKey, ApiKey, str]:
    """A new key for the same tenant and label; the old one keeps working for ``grace`` (never
    longer than an expiry it already had). Returns (old, new, the new full key)."""
    if grace < timedelta(0):
        raise BadRequest("the grace period cannot be negative", detail={"field": "grace_hours"})
    old = _get_key(session, key_id)
    if old.revoked_at is not None:
        raise Conflict(f"API key {key_id} is revoked: create a new one with `shrink admin create-key {old.tenant_id}`", code="api_key_revoked")
    now = utcnow()
    if is_expired(old, now):
        raise Conflict(f"API key {key_id} has expired: create a new one with `shrink admin create-key {old.tenant_id}`", code="api_key_expired")
    new, full = create_api_key(session, old.tenant_id, label=old.label)
    until = now + grace
    if old.expires_at is None or until < old.expires_at:
        old.expires_at = until
    session.flush()
    return old, new, full


def is_expired(key: ApiKey | Any, now: datetime) -> bool:
    """A key past its rotation grace: the ORM row, or a row of its columns."""
    return key.expires_at is not None and key.expires_at <= now


def set_quota(session: Session, tenant_id: str, *, clear: bool = False, **values: int | None) -> quotas.Limits:
    """Set the tenant's own limits (0: no limit); ``clear`` first forgets them all, so the
    service's defaults apply again. A limit not given keeps its value. Returns what applies now."""
    _get_tenant(session, tenant_id)
    unknown = set(values) - set(quotas.FIELDS)
    if unknown:
        raise BadRequest(f"unknown quota {sorted(unknown)[0]}; the quotas are {', '.join(quotas.FIELDS)}", detail={"field": sorted(unknown)[0]})
    for name, value in values.items():
        if value is not None and value < 0:
            raise BadRequest(f"{name} cannot be negative; 0 is no limit", detail={"field": name})
    own = session.get(TenantQuota, tenant_id)
    if own is None:
        own = TenantQuota(tenant_id=tenant_id)
        session.add(own)
    if clear:
        for name in quotas.FIELDS:
            setattr(own, name, None)
    for name, value in values.items():
        if value is not None:
            setattr(own, name, value)
    own.updated_at = utcnow()
    session.flush()
    return quotas.limits_of(session, tenant_id)
