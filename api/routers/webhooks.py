"""Webhooks: the tenant's signing secret (read, rotate) and the delivery attempts of a job."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import CurrentTenant, IdempotencyKey, SessionDep
from api.errors import responses
from api.routers.uploads_common import answer_without_work
from core import idempotency
from core.models import Tenant, WebhookDelivery, utcnow
from core.webhooks import delivery, signing

router = APIRouter(tags=["webhooks"])


class WebhookSecret(BaseModel):
    secret: str = Field(description="whsec_ + base64 of 32 random bytes: the Standard Webhooks key that signs every delivery")
    previous_secret_expires_at: datetime | None = Field(
        None, description="after a rotation: until then deliveries carry a second signature, by the previous secret")

    @classmethod
    def of(cls, tenant: Tenant) -> WebhookSecret:
        expires = tenant.webhook_secret_previous_expires_at
        return cls(secret=tenant.webhook_secret or "", previous_secret_expires_at=expires if expires and expires > utcnow() else None)


class WebhookDeliveryOut(BaseModel):
    id: str
    message_id: str = Field(description="the webhook-id header: the same on every attempt")
    attempt: int
    state: str = Field(description="pending (due at due_at), sending, delivered or failed")
    status_code: int | None = Field(None, description="the receiver's answer, when it answered")
    error: str | None = Field(None, description="why the attempt failed")
    due_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    next_attempt_at: datetime | None = Field(None, description="on a failed attempt: when the next one is due; none once given up")

    @classmethod
    def of(cls, row: WebhookDelivery) -> WebhookDeliveryOut:
        return cls(id=row.id, message_id=row.message_id, attempt=row.attempt, state=row.state, status_code=row.status_code,
                   error=row.error, due_at=row.due_at, started_at=row.started_at, finished_at=row.finished_at,
                   next_attempt_at=row.next_attempt_at)


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDeliveryOut]


@router.get("/v1/webhooks/secret", response_model=WebhookSecret, summary="Read the secret that signs the tenant's webhooks",
            responses=responses(401))
def get_secret(session: SessionDep, tenant: CurrentTenant) -> WebhookSecret:
    return WebhookSecret.of(signing.current_secret(session, tenant.id))


@router.post("/v1/webhooks/secret/rotate", response_model=WebhookSecret,
             summary="Rotate the webhook secret (the old one keeps signing during the overlap)",
             responses=responses(400, 401, 409, 422))
def rotate_secret(session: SessionDep, tenant: CurrentTenant, idempotency_key: IdempotencyKey = None) -> Any:
    route = "POST /v1/webhooks/secret/rotate"
    # A repeated key answers the current secret without rotating again (which would end the
    # previous secret's overlap early); the secret itself is never copied into the record.
    outcome = idempotency.claim(tenant.id, idempotency_key, route, idempotency.request_hash(route, {}))
    if isinstance(outcome, idempotency.InFlight):
        return answer_without_work(outcome)
    if not isinstance(outcome, idempotency.Replay):
        try:
            signing.rotate(session, tenant.id)
            idempotency.complete(session, outcome, 200, {"rotated": True})
            session.commit()
        except BaseException:
            session.rollback()
            idempotency.release(outcome)
            raise
    return WebhookSecret.of(signing.current_secret(session, tenant.id))


@router.get("/v1/jobs/{job_id}/webhooks", response_model=WebhookDeliveryList,
            summary="List a job's webhook delivery attempts", responses=responses(401, 404))
def list_job_webhooks(job_id: str, session: SessionDep, tenant: CurrentTenant) -> WebhookDeliveryList:
    return WebhookDeliveryList(items=[WebhookDeliveryOut.of(r) for r in delivery.list_deliveries(session, tenant.id, job_id)])
