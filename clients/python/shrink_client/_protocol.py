"""What ``Client`` and ``AsyncClient`` share, without I/O: the settings, each request as a
``Call``, reading answers into records, the retry policy, the server-sent-events decoder and the
checked download sink. The two clients only send, sleep and read, each its own way."""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from shrink_client import errors
from shrink_client.records import (
    EVENT_TYPES,
    Artifact,
    ArtifactList,
    Asset,
    Dataset,
    Event,
    JobRecord,
    Model,
    Page,
)

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8000"
CHUNK = 1 << 20
ID = re.compile(r"[A-Za-z0-9_-]{1,100}")  # what goes into a URL path: never a / ? or #
# Statuses worth another try: the server asks to slow down, or is briefly unavailable.
RETRY_STATUSES = frozenset({429, 503})
# A 409 with this code: the first request with this Idempotency-Key is still running (a retry
# after a lost answer can meet it); its Retry-After says when its stored reply will be ready.
IN_FLIGHT = "idempotency_request_in_flight"
Progress = Callable[[int, int], None]
"""A progress callback: ``(bytes_done, bytes_total)``."""


@dataclass(frozen=True)
class Settings:
    url: str
    api_key: str
    timeout: float

    @classmethod
    def resolve(cls, url: str | None, api_key: str | None, timeout: float) -> Settings:
        key = api_key or os.environ.get("SHRINK_API_KEY")
        if not key:
            raise errors.ConfigurationError(
                "no API key: pass api_key= (--api-key) or set SHRINK_API_KEY", code="missing_api_key")
        base = (url or os.environ.get("SHRINK_URL") or DEFAULT_URL).rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise errors.ConfigurationError(f"the URL must start with http:// or https://, not {base!r}",
                                            code="invalid_url")
        return cls(url=base, api_key=key, timeout=timeout)

    def client_options(self) -> dict[str, Any]:
        return {"base_url": self.url, "timeout": self.timeout,
                "headers": {"Authorization": f"Bearer {self.api_key}", "User-Agent": "shrink-client/0.1"}}


@dataclass(frozen=True)
class Retry:
    """Bounded attempts with exponential backoff and jitter; ``Retry-After`` wins when sent."""

    attempts: int = 5
    backoff: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float | None:
        """Seconds before attempt ``attempt + 1``, or None when there is no retry to make."""
        if attempt >= self.attempts:
            return None
        if response is not None:
            if response.status_code not in RETRY_STATUSES and not _in_flight(response):
                return None
            after = retry_after(response)
            if after is not None:
                return min(after, self.max_delay)
        return min(self.backoff * 2 ** (attempt - 1), self.max_delay) * random.uniform(0.5, 1.0)


def _in_flight(response: httpx.Response) -> bool:
    if response.status_code != 409:
        return False
    try:
        return response.json()["error"]["code"] == IN_FLIGHT
    except (ValueError, KeyError, TypeError):
        return False


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# Connection failures worth another try; with an Idempotency-Key even a POST is safe to resend.
RETRY_ERRORS: tuple[type[Exception], ...] = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass
class Call(Generic[T]):
    """One API request and how to read its answer. ``upload`` streams that file as the body."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] | None = None
    json: Any = None
    upload: Path | None = None
    progress: Progress | None = None
    expect: tuple[int, ...] = (200,)
    headers: dict[str, str] = field(default_factory=dict)
    follow_redirects: bool = False

    def request_options(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx`` (the body of an upload is added by the client)."""
        headers = dict(self.headers)
        if self.upload is not None:
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Length"] = str(self.upload.stat().st_size)
        params = {k: v for k, v in (self.params or {}).items() if v is not None}
        return {"params": params, "json": self.json, "headers": headers, "follow_redirects": self.follow_redirects}

    def read(self, response: httpx.Response) -> T:
        return self.parse(response.json() if response.status_code != 204 else None)


def _post_headers(idempotency_key: str | None) -> dict[str, str]:
    # One key per logical POST, kept across its retries: the server answers a repeat with the
    # first response, so a retried submit never makes a second job.
    return {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}


def _as(model: type[BaseModel]) -> Callable[[Any], Any]:
    return model.model_validate


def _nothing(_: Any) -> None:
    return None


def upload(kind: str, path: str | os.PathLike[str], name: str | None, progress: Progress | None,
           idempotency_key: str | None) -> Call[Any]:
    file = Path(path)
    if not file.is_file():
        raise errors.ShrinkError(f"no such file: {file}", code="file_not_found")
    model: type[Asset] = Model if kind == "models" else Dataset
    return Call("POST", f"/v1/{kind}", _as(model), params={"name": name or file.stem, "filename": file.name},
                upload=file, progress=progress, expect=(201,), headers=_post_headers(idempotency_key))


def get(kind: str, record_id: str) -> Call[Any]:
    model: type[BaseModel] = {"models": Model, "datasets": Dataset}[kind]
    return Call("GET", f"/v1/{kind}/{id_of(record_id)}", _as(model))


def delete(kind: str, record_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/{kind}/{id_of(record_id)}", _nothing, expect=(204,))


def page(kind: str, item: type[BaseModel], cursor: str | None, limit: int | None, filters: dict[str, Any]) -> Call[Any]:
    return Call("GET", f"/v1/{kind}", _as(Page[item]), params={"cursor": cursor, "limit": limit, **filters})


def job_spec(model: str | Model, dataset: str | Dataset | None, recipe: Any, goal: dict[str, Any] | None,
             benchmark: dict[str, Any] | None, labels: dict[str, str] | None, webhook_url: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"model_id": id_of(model)}
    if dataset is not None:
        spec["dataset_id"] = id_of(dataset)
    if recipe is not None:
        spec["recipe"] = [recipe] if isinstance(recipe, dict) else list(recipe)
    optional = {"goal": goal, "benchmark": benchmark, "labels": labels, "webhook_url": webhook_url}
    spec.update({k: v for k, v in optional.items() if v is not None})
    return spec


def submit(spec: dict[str, Any], job: type[JobRecord], idempotency_key: str | None) -> Call[Any]:
    return Call("POST", "/v1/jobs", _as(job), json=spec, expect=(202,), headers=_post_headers(idempotency_key))


def get_job(job_id: str, job: type[JobRecord]) -> Call[Any]:
    return Call("GET", f"/v1/jobs/{id_of(job_id)}", _as(job))


def cancel_job(job_id: str, job: type[JobRecord]) -> Call[Any]:
    return Call("POST", f"/v1/jobs/{id_of(job_id)}/cancel", _as(job), headers=_post_headers(None))


def report(job_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/jobs/{id_of(job_id)}/report", dict)


def artifacts(job_id: str) -> Call[list[Artifact]]:
    return Call("GET", f"/v1/jobs/{id_of(job_id)}/artifacts", lambda body: ArtifactList.model_validate(body).items)


def download(artifact_id: str) -> Call[None]:
    # Follows the redirect to a presigned URL (S3); httpx drops Authorization on another host.
    return Call("GET", f"/v1/artifacts/{id_of(artifact_id)}/download", _nothing, follow_redirects=True)


def events(job_id: str, last_event_id: int | None) -> Call[None]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    return Call("GET", f"/v1/jobs/{id_of(job_id)}/events", _nothing, headers=headers)


def id_of(record: Any) -> str:
    """An id given as a string, or the record returned by the client."""
    value = record if isinstance(record, str) else getattr(record, "id", None)
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise errors.ShrinkError(f"expected a record id or a record, got {record!r}", code="invalid_id")
    return value


def file_chunks(path: Path, progress: Progress | None) -> Iterator[bytes]:
    """The file in chunks, never whole in memory, reporting progress as it goes."""
    total = path.stat().st_size
    done = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            done += len(chunk)
            if progress is not None:
                progress(done, total)
            yield chunk


class SSEDecoder:
    """Server-sent events from lines (``id:``, ``event:``, ``data:``, blank line ends one)."""

    def __init__(self) -> None:
        self._type = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> tuple[str, str | None, str] | None:
        """A finished ``(type, id, data)``, or None while an event is still being read."""
        line = line.rstrip("\r\n")
        if not line:
            if not self._data and not self._type:
                return None
            done = (self._type or "message", self._id, "\n".join(self._data))
            self._type, self._data, self._id = "", [], None
            return done
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None


def parse_event(type_: str, event_id: str | None, data: str) -> Event:
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        payload = {"text": data}
    if not isinstance(payload, dict):
        payload = {"value": payload}
    payload.pop("type", None)
    number = int(event_id) if event_id and event_id.isdigit() else None
    cls = EVENT_TYPES.get(type_)
    if cls is None:
        return Event(id=number, type=type_, **payload)
    return cls(id=number, **payload)


class DownloadSink:
    """Writes a download into ``folder`` under a temporary name, hashing as it goes; ``finish``
    checks the sha256 and only then gives the file its name."""

    def __init__(self, folder: str | os.PathLike[str], filename: str, expected_sha256: str | None,
                 total: int | None, progress: Progress | None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.target = self.folder / (Path(filename).name or "artifact")
        self.partial = self.target.with_name(f".{self.target.name}.part")
        self.expected = expected_sha256
        self.total = total or 0
        self.progress = progress
        self._hash = hashlib.sha256()
        self._done = 0
        self._fh = self.partial.open("wb")

    def write(self, chunk: bytes) -> None:
        self._fh.write(chunk)
        self._hash.update(chunk)
        self._done += len(chunk)
        if self.progress is not None:
            self.progress(self._done, max(self.total, self._done))

    def abort(self) -> None:
        self._fh.close()
        self.partial.unlink(missing_ok=True)

    def finish(self, header_sha256: str | None = None) -> Path:
        self._fh.close()
        expected = self.expected or header_sha256
        actual = self._hash.hexdigest()
        if expected and actual != expected.lower():
            self.partial.unlink(missing_ok=True)
            raise errors.ChecksumMismatch(
                f"{self.target.name}: sha256 {actual} differs from the artifact's {expected}; download it again",
                code="checksum_mismatch")
        self.partial.replace(self.target)
        return self.target


def filename_from(response: httpx.Response, fallback: str) -> str:
    """The name in ``Content-Disposition``, else ``fallback``; never a path."""
    disposition = response.headers.get("Content-Disposition", "")
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename" and value:
            return Path(value.strip('"')).name or fallback
    return fallback


def resume_delay(retry: Retry, failures: int, job_id: str, exc: Exception | None) -> float:
    """Seconds before reconnecting a dropped event stream; gives up after ``retry.attempts``."""
    delay = retry.delay(failures)
    if delay is None:
        raise errors.ConnectionFailed(f"the event stream of {job_id} keeps dropping: {exc or 'closed early'}",
                                      code="connection_failed") from exc
    return delay


def no_best_message(job: JobRecord) -> str:
    """Why ``download_best`` has nothing to download, in one line."""
    if job.state == "failed":
        error = job.error or {}
        return f"job {job.id} failed: {error.get('code', 'error')}: {error.get('message', '')}".rstrip(": ")
    if job.state != "succeeded":
        return f"job {job.id} is {job.state}; it has no best candidate"
    message = (job.result or {}).get("message")  # a goal job says what came closest and what it would take
    return f"job {job.id} has no best candidate: {message or 'every candidate was flagged (see its report)'}"
