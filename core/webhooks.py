"""Webhooks: a POST with the job's final record. URLs given by users are checked against private,
loopback and link-local ranges (SSRF) unless an operator allows them."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from core.errors import ValidationFailed
from core.logging import get_logger
from core.settings import get_settings

log = get_logger(__name__)


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed(message, code="webhook_url_refused", detail={"field": "webhook_url"})


def check_webhook_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refuse("webhook_url must be an http(s) URL with a host")
    if get_settings().allow_private_webhooks:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror:
        raise _refuse(f"webhook host {parts.hostname!r} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise _refuse(f"webhook host {parts.hostname!r} resolves to a private or loopback address")


def send(url: str, payload: dict[str, Any]) -> None:
    import httpx

    try:
        check_webhook_url(url)  # again at send time: DNS may have changed since submit
        httpx.post(url, json=payload, timeout=get_settings().webhook_timeout_seconds, follow_redirects=False)
        log.info("webhook.sent", url=url, job_id=payload.get("id"))
    except Exception as exc:  # noqa: BLE001 - a webhook failure never fails the job
        log.warning("webhook.failed", url=url, error=str(exc))
