"""Webhooks: a POST with the job's final record. URLs given by users must be well-formed, and are
checked against every address that is not public unicast (private, loopback, link-local,
multicast, broadcast, reserved; SSRF) unless an operator allows them."""

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


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour  # an IPv4 address in IPv6 clothing
        if embedded is not None and not _is_public(embedded):
            return False
    # is_global alone lets multicast through (224.0.0.0/4 and ff0e::/16 are "global").
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


def _host_and_port(url: str) -> tuple[str, int]:
    """The ASCII host name and the port of an http(s) URL, or a refusal that says what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError past 65535 or not a number
        host = parts.hostname
    except ValueError as exc:
        raise _refuse(f"webhook_url is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise _refuse("webhook_url must be an http(s) URL with a host")
    if port == 0:
        raise _refuse("webhook_url's port must be between 1 and 65535")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise _refuse(f"webhook host {host!r} is not a valid host name (labels of 1 to 63 characters)") from None
    return ascii_host, port or (443 if parts.scheme == "https" else 80)


def check_webhook_url(url: str) -> None:
    host, port = _host_and_port(url)
    if get_settings().allow_private_webhooks:
        return
    try:
        infos = socket.getaddrinfo(host, port)
    except (OSError, ValueError):  # gaierror, or a name the resolver cannot take
        raise _refuse(f"webhook host {host!r} does not resolve") from None
    for info in infos:
        if not _is_public(ipaddress.ip_address(info[4][0])):
            raise _refuse(f"webhook host {host!r} resolves to a non-public address (private, loopback, multicast or reserved)")


def send(url: str, payload: dict[str, Any]) -> None:
    import httpx

    try:
        check_webhook_url(url)  # again at send time: DNS may have changed since submit
        httpx.post(url, json=payload, timeout=get_settings().webhook_timeout_seconds, follow_redirects=False)
        log.info("webhook.sent", url=url, job_id=payload.get("id"))
    except Exception as exc:  # noqa: BLE001 - a webhook failure never fails the job
        log.warning("webhook.failed", url=url, error=str(exc))
