"""The states of a job, one vocabulary for the API, the service and the worker. The values are
what the database stores and the API returns."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """queued -> running -> succeeded, failed or canceled. A running job goes back to queued when
    its worker stops renewing its lease; a queued job can be canceled at once."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


# A job in one of these states never changes again.
TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED})
