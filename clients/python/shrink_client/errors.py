"""Exceptions of the client. An error the API answered carries its stable ``code``, its
``message``, its ``detail`` (``detail["field"]`` names a wrong field) and the HTTP ``status``."""

from __future__ import annotations

from typing import Any

import httpx


class ShrinkError(Exception):
    """Base of every error the client raises."""

    def __init__(self, message: str, *, code: str = "client_error", status: int | None = None,
                 detail: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.detail = detail or {}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConfigurationError(ShrinkError):
    """The client is missing a setting (the URL or the API key)."""


class APIError(ShrinkError):
    """An error answered by the API."""


class BadRequest(APIError):
    """400: e.g. ``invalid_cursor``, ``dataset_invalid``."""


class AuthenticationError(APIError):
    """401: ``missing_api_key`` or ``invalid_api_key``."""


class PermissionDenied(APIError):
    """403."""


class NotFound(APIError):
    """404: ``model_not_found``, ``job_not_found``, ... (another tenant's ids too)."""


class Conflict(APIError):
    """409: ``job_not_cancelable``, ``report_not_ready``, ``idempotency_key_reused``, ..."""


class PayloadTooLarge(APIError):
    """413: the upload is over the server's limit."""


class UnsupportedFormat(APIError):
    """415: ``model_format_unsupported`` or ``model_format_unsafe``."""


class ValidationError(APIError):
    """422: ``spec_invalid``, ``validation_error``, ``dataset_mismatch``, ..."""


class RateLimited(APIError):
    """429, after the client's retries ran out."""


class ServerError(APIError):
    """5xx."""


class Unavailable(ServerError):
    """503, after the client's retries ran out."""


class ConnectionFailed(ShrinkError):
    """The server could not be reached (after retries)."""


class WaitTimeout(ShrinkError):
    """``Job.wait(timeout=...)`` ran out before the job finished."""


class NoBestCandidate(ShrinkError):
    """The job finished without a best candidate (it failed, or every candidate was flagged)."""


class ChecksumMismatch(ShrinkError):
    """A download's sha256 differs from the artifact record's; the file was removed."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedFormat,
    422: ValidationError,
    429: RateLimited,
    503: Unavailable,
}


def from_response(response: httpx.Response) -> APIError:
    """The typed exception for an error answer (``{"error": {"code", "message", "detail"}}``)."""
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        detail = error.get("detail")
        return cls(str(error.get("message") or f"HTTP {status}"), code=str(error.get("code") or "http_error"),
                   status=status, detail=detail if isinstance(detail, dict) else {})
    text = response.text.strip()[:300] if response.headers.get("content-type", "").startswith("text/") else ""
    return cls(text or f"HTTP {status} from {response.request.url.path}", code="http_error", status=status)
