"""Record ids: a type prefix and 20 random base32 characters (``mdl_...``, ``job_...``)."""

from __future__ import annotations

import base64
import secrets

PREFIXES = {"tenant": "ten", "key": "key", "model": "mdl", "dataset": "ds", "job": "job", "artifact": "art", "candidate": "cand"}


def new_id(kind: str) -> str:
    token = base64.b32encode(secrets.token_bytes(15)).decode().lower().rstrip("=")
    return f"{PREFIXES[kind]}_{token}"
