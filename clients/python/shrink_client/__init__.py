"""Shrink's Python client: upload a model, submit a compression job, wait, download the best.

    from shrink_client import Client

    client = Client()  # SHRINK_URL, SHRINK_API_KEY
    model = client.upload_model("model.onnx")
    job = client.submit(model, recipe=[{"op": "quantize", "method": "dynamic"}])
    job.wait().download_best("out/")
"""

from shrink_client._protocol import Retry
from shrink_client.aio import AsyncClient, AsyncJob
from shrink_client.client import Client, Job
from shrink_client.errors import (
    APIError,
    AuthenticationError,
    BadRequest,
    ChecksumMismatch,
    ConfigurationError,
    Conflict,
    ConnectionFailed,
    NoBestCandidate,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    ShrinkError,
    Unavailable,
    UnsupportedFormat,
    ValidationError,
    WaitTimeout,
)
from shrink_client.records import (
    Artifact,
    Dataset,
    Event,
    LogEvent,
    Model,
    ProgressEvent,
    StateEvent,
)

__all__ = [
    "APIError", "Artifact", "AsyncClient", "AsyncJob", "AuthenticationError", "BadRequest", "ChecksumMismatch",
    "Client", "ConfigurationError", "Conflict", "ConnectionFailed", "Dataset", "Event", "Job", "LogEvent", "Model",
    "NoBestCandidate", "NotFound", "PayloadTooLarge", "PermissionDenied", "ProgressEvent", "RateLimited", "Retry",
    "ServerError", "ShrinkError", "StateEvent", "Unavailable", "UnsupportedFormat", "ValidationError", "WaitTimeout",
]
