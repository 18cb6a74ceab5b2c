"""Webhook URLs: given by users, so they must be well-formed, and their hosts are checked against
every address that is not public unicast (private, loopback, link-local, multicast, broadcast,
reserved; SSRF) unless an operator allows them: at submit, and again at each delivery, where the
one resolution that is checked is also the address connected to (no DNS rebinding)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.errors import ValidationFailed
from core.settings import get_settings


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


@dataclass(frozen=True)
class Target:
    """Where one delivery goes: the URL's host name and port, and the address it resolved to."""

    host: str
    port: int
    address: str


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):  # gaierror, or a name the resolver cannot take
        raise _refuse(f"webhook host {host!r} does not resolve") from None
    # An IPv6 scope ("fe80::1%eth0") is not part of the address.
    return [str(info[4][0]).split("%", 1)[0] for info in infos]


def _check_public(host: str, addresses: list[str]) -> None:
    for address in addresses:
        if not _is_public(ipaddress.ip_address(address)):
            raise _refuse(f"webhook host {host!r} resolves to a non-public address (private, loopback, multicast or reserved)")


def check_webhook_url(url: str) -> None:
    host, port = _host_and_port(url)
    if get_settings().allow_private_webhooks:
        return
    _check_public(host, _resolve(host, port))


def resolve_target(url: str) -> Target:
    """Resolve the URL's host once and check every answer: the delivery then connects to the
    first one, so a DNS answer that changes after this check (rebinding) is never used."""
    host, port = _host_and_port(url)
    addresses = _resolve(host, port)
    if not addresses:
        raise _refuse(f"webhook host {host!r} does not resolve")
    if not get_settings().allow_private_webhooks:
        _check_public(host, addresses)
    return Target(host=host, port=port, address=addresses[0])
