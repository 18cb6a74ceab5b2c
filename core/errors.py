"""The service's error hierarchy. Each error has a stable ``code`` and an HTTP status; the API
maps them to ``{"error": {"code", "message", "detail"}}`` in one place (api/errors.py)."""

from __future__ import annotations

from typing import Any


class ShrinkError(Exception):
    code = "internal_error"
    status = 500

    def __init__(self, message: str, *, detail: dict[str, Any] | None = None, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail or {}
        if code:
            self.code = code
        if status:
            self.status = status


class BadRequest(ShrinkError):
    code, status = "bad_request", 400


class Unauthorized(ShrinkError):
    code, status = "unauthorized", 401


class NotFound(ShrinkError):
    code, status = "not_found", 404


class Conflict(ShrinkError):
    code, status = "conflict", 409


class PayloadTooLarge(ShrinkError):
    code, status = "payload_too_large", 413


class UnsupportedMediaType(ShrinkError):
    code, status = "unsupported_media_type", 415


class ValidationFailed(ShrinkError):
    code, status = "validation_error", 422


class RateLimited(ShrinkError):
    """For per-tenant rate limiting (429); nothing raises it yet."""

    code, status = "rate_limited", 429


class Unavailable(ShrinkError):
    code, status = "unavailable", 503


# Engine error codes that are the user's fault, and the status each maps to.
ENGINE_CODE_STATUS = {
    "model_format_unsupported": 415,
    "model_format_unsafe": 415,
    "archive_invalid": 400,
    "archive_too_large": 413,
    "dataset_invalid": 422,
    "dataset_mismatch": 422,
    "dataset_required": 422,
    "spec_invalid": 422,
    "pass_not_applicable": 422,
    "conversion_unsupported": 422,
    # The sandbox's memory, CPU-time, wall-time or file-size limit (core/sandbox.py); an upload
    # that needs more memory or disk than allowed is too large (413, core/catalog/service.py).
    "resource_limit": 422,
}


def from_engine(error: dict[str, Any]) -> ShrinkError:
    """An engine error payload (from the sandbox) as a service error."""
    code = error.get("code", "engine_internal")
    status = ENGINE_CODE_STATUS.get(code, 500)
    return ShrinkError(error.get("message", "engine failure"), detail=error.get("detail") or {}, code=code, status=status)
