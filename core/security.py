"""API keys: ``shk_<lookup>_<secret>``. Only an HMAC-SHA256 of the secret (peppered with the
server's secret key) is stored; the lookup part finds the row without a scan. Keys carry 160 bits
of randomness, so a fast keyed hash is the right tool (a password KDF buys nothing here)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "shk"


def new_key() -> tuple[str, str, str]:
    """Returns (lookup, secret, full key)."""
    lookup = secrets.token_hex(8)
    secret = secrets.token_urlsafe(20)
    return lookup, secret, f"{PREFIX}_{lookup}_{secret}"


def hash_secret(secret: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def verify(secret: str, stored_hash: str, pepper: str) -> bool:
    return hmac.compare_digest(hash_secret(secret, pepper), stored_hash)
