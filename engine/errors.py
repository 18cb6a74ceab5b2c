"""The engine's error hierarchy: every failure a user can cause has a stable ``code``."""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    """Base class. ``code`` is machine-readable and stable; ``message`` tells what to do next."""

    code = "engine_error"
    # Whether the failure is the user's input (4xx at the API) rather than ours.
    user_error = True

    def __init__(self, message: str, *, detail: dict[str, Any] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail or {}
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail}


class ModelFormatUnsupported(EngineError):
    code = "model_format_unsupported"


class ModelFormatUnsafe(EngineError):
    """A format whose loader runs code (pickle, .pt2, TorchScript): refused."""

    code = "model_format_unsafe"


class ArchiveInvalid(EngineError):
    code = "archive_invalid"


class DatasetInvalid(EngineError):
    code = "dataset_invalid"


class DatasetMismatch(EngineError):
    code = "dataset_mismatch"


class DatasetRequired(EngineError):
    code = "dataset_required"


class ConfigInvalid(EngineError):
    code = "spec_invalid"


class PassNotApplicable(EngineError):
    """The pass does not accept this model (format, operators, architecture)."""

    code = "pass_not_applicable"


class ConversionUnsupported(EngineError):
    code = "conversion_unsupported"


class Canceled(EngineError):
    code = "canceled"


class BudgetSpent(Canceled):
    """A goal job's search ran out of its time budget in the middle of a candidate."""

    code = "budget_spent"


class InternalEngineError(EngineError):
    code = "engine_internal"
    user_error = False
