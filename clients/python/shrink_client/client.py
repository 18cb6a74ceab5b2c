"""The synchronous client, on ``httpx.Client``, and its ``Job``."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import PrivateAttr

from shrink_client import _protocol as p
from shrink_client import errors
from shrink_client.progress import ProgressLine
from shrink_client.records import Artifact, Dataset, Event, JobRecord, Model, best_model_artifact

T = TypeVar("T")
POLL_START, POLL_MAX = 0.5, 5.0


class Client:
    """``Client(url=None, api_key=None)``: defaults from ``SHRINK_URL`` and ``SHRINK_API_KEY``.

    >>> client = Client()
    >>> job = client.submit(client.upload_model("model.onnx"), recipe=[{"op": "quantize"}])
    >>> job.wait().download_best("out/")
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 120.0,
                 retry: p.Retry | None = None, transport: httpx.BaseTransport | None = None):
        self.settings = p.Settings.resolve(url, api_key, timeout)
        self.retry = retry or p.Retry()
        self._http = httpx.Client(transport=transport, **self.settings.client_options())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------------

    def _build(self, call: p.Call[Any]) -> httpx.Request:
        options = call.request_options()
        options.pop("follow_redirects")
        content = p.file_chunks(call.upload, call.progress) if call.upload is not None else None
        return self._http.build_request(call.method, call.path, content=content, **options)

    @contextlib.contextmanager
    def _open(self, call: p.Call[Any]) -> Iterator[httpx.Response]:
        """The response of ``call`` with its body not yet read, after retries."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.send(self._build(call), stream=True, follow_redirects=call.follow_redirects)
            except p.RETRY_ERRORS as exc:
                delay = self.retry.delay(attempt)
                if delay is None:
                    raise errors.ConnectionFailed(f"cannot reach {self.settings.url}: {exc}", code="connection_failed") from exc
                time.sleep(delay)
                continue
            if response.status_code in call.expect:
                try:
                    yield response
                finally:
                    response.close()
                return
            response.read()
            response.close()
            delay = self.retry.delay(attempt, response)
            if delay is None:
                raise errors.from_response(response)
            time.sleep(delay)

    def _call(self, call: p.Call[T]) -> T:
        with self._open(call) as response:
            response.read()
            return call.read(response)

    def _job(self, call: p.Call[Any]) -> Job:
        job: Job = self._call(call)
        job._client = self
        return job

    def _pages(self, make: Callable[[str | None], p.Call[Any]]) -> Iterator[Any]:
        cursor: str | None = None
        while True:
            page = self._call(make(cursor))
            yield from page.items
            cursor = page.next_cursor
            if not cursor:
                return

    # -- models and datasets ---------------------------------------------------------------

    def upload_model(self, path: str | os.PathLike[str], name: str | None = None, *,
                     progress: p.Progress | None = None, idempotency_key: str | None = None) -> Model:
        """Upload a model file (ONNX, or an archive of a Hugging Face folder), streamed from disk."""
        return self._call(p.upload("models", path, name, progress, idempotency_key))

    def upload_dataset(self, path: str | os.PathLike[str], name: str | None = None, *,
                       progress: p.Progress | None = None, idempotency_key: str | None = None) -> Dataset:
        """Upload a dataset (``.npz``, ``.jsonl``, ...), streamed from disk."""
        return self._call(p.upload("datasets", path, name, progress, idempotency_key))

    def get_model(self, model_id: str) -> Model:
        return self._call(p.get("models", model_id))

    def get_dataset(self, dataset_id: str) -> Dataset:
        return self._call(p.get("datasets", dataset_id))

    def delete_model(self, model: str | Model) -> None:
        self._call(p.delete("models", model))

    def delete_dataset(self, dataset: str | Dataset) -> None:
        self._call(p.delete("datasets", dataset))

    def delete_job(self, job: str | Job) -> None:
        """Delete a job with its report and artifacts (the service cancels it first if it runs)."""
        self._call(p.delete("jobs", job))

    def models(self, *, name: str | None = None, format: str | None = None, page_size: int | None = None) -> Iterator[Model]:
        """Every model, newest first (all pages)."""
        return self._pages(lambda c: p.page("models", Model, c, page_size, {"name": name, "format": format}))

    def datasets(self, *, name: str | None = None, format: str | None = None, page_size: int | None = None) -> Iterator[Dataset]:
        """Every dataset, newest first (all pages)."""
        return self._pages(lambda c: p.page("datasets", Dataset, c, page_size, {"name": name, "format": format}))

    # -- jobs ------------------------------------------------------------------------------

    def submit(self, model: str | Model, dataset: str | Dataset | None = None, recipe: Any = None,
               goal: dict[str, Any] | None = None, benchmark: dict[str, Any] | None = None,
               labels: dict[str, str] | None = None, webhook_url: str | None = None, *,
               idempotency_key: str | None = None) -> Job:
        """Submit a compression job; ``recipe`` is a list of steps (``{"op", "method", ...}``)."""
        spec = p.job_spec(model, dataset, recipe, goal, benchmark, labels, webhook_url)
        return self._job(p.submit(spec, Job, idempotency_key))

    def get_job(self, job_id: str) -> Job:
        return self._job(p.get_job(job_id, Job))

    def jobs(self, *, state: str | None = None, model: str | Model | None = None, page_size: int | None = None) -> Iterator[Job]:
        """Every job, newest first (all pages)."""
        filters = {"state": state, "model_id": p.id_of(model) if model is not None else None}
        for job in self._pages(lambda c: p.page("jobs", Job, c, page_size, filters)):
            job._client = self
            yield job

    def cancel_job(self, job_id: str) -> Job:
        return self._job(p.cancel_job(job_id, Job))

    def report(self, job_id: str) -> dict[str, Any]:
        return self._call(p.report(job_id))

    def artifacts(self, job_id: str) -> list[Artifact]:
        return self._call(p.artifacts(job_id))

    def download_artifact(self, artifact: str | Artifact, folder: str | os.PathLike[str] = ".", *,
                          progress: p.Progress | None = None) -> Path:
        """Stream an artifact to ``folder``; its sha256 is checked against the artifact record
        (or, given a bare id, the server's ``X-Checksum-Sha256`` when it sends one)."""
        record = artifact if isinstance(artifact, Artifact) else None
        with self._open(p.download(p.id_of(artifact))) as response:
            name = record.filename if record else p.filename_from(response, p.id_of(artifact))
            total = record.size_bytes if record else int(response.headers.get("Content-Length") or 0)
            sink = p.DownloadSink(folder, name, record.sha256 if record else None, total, progress)
            try:
                for chunk in response.iter_bytes(p.CHUNK):
                    sink.write(chunk)
            except BaseException:
                sink.abort()
                raise
            return sink.finish(response.headers.get("X-Checksum-Sha256"))

    def events(self, job_id: str, *, last_event_id: int | None = None) -> Iterator[Event]:
        """The job's events (state, progress, log) until it ends; a dropped connection is
        resumed from the last event seen (``Last-Event-ID``)."""
        failures = 0
        while True:
            try:
                with self._open(p.events(job_id, last_event_id)) as response:
                    decoder = p.SSEDecoder()
                    for line in response.iter_lines():
                        raw = decoder.feed(line)
                        if raw is None:
                            continue
                        failures = 0
                        if raw[0] == "end":
                            return
                        event = p.parse_event(*raw)
                        if event.id is not None:
                            last_event_id = event.id
                        yield event
            except p.RETRY_ERRORS as exc:
                failures += 1
                time.sleep(p.resume_delay(self.retry, failures, job_id, exc))
                continue
            # The stream closed without its end event: resume it.
            failures += 1
            time.sleep(p.resume_delay(self.retry, failures, job_id, None))


class Job(JobRecord):
    """A job and what can be done with it (``wait``, ``events``, ``report``, ``download_best``)."""

    _client: Client = PrivateAttr()

    def refresh(self) -> Job:
        self._replace_with(self._client.get_job(self.id))
        return self

    def wait(self, timeout: float | None = None, *, progress: bool | None = None) -> Job:
        """Poll until the job has finished (backing off to one poll every 5 s); a progress bar on
        stderr when it is a terminal (``progress=`` forces it on or off). Returns the job, whatever
        its final state; raises ``WaitTimeout`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        line = ProgressLine(progress)
        interval = POLL_START
        try:
            while True:
                line.job(self)
                if self.done:
                    return self
                if deadline is not None and time.monotonic() + interval > deadline:
                    raise errors.WaitTimeout(f"job {self.id} is still {self.state} after {timeout} s", code="wait_timeout")
                time.sleep(interval)
                interval = min(interval * 1.5, POLL_MAX)
                self.refresh()
        finally:
            line.close()

    def events(self) -> Iterator[Event]:
        return self._client.events(self.id)

    def report(self) -> dict[str, Any]:
        return self._client.report(self.id)

    def artifacts(self) -> list[Artifact]:
        return self._client.artifacts(self.id)

    def download_best(self, folder: str | os.PathLike[str] = ".", *, format: str | None = None,
                      progress: p.Progress | None = None) -> Path:
        """Download the best candidate's model to ``folder`` (sha256 checked); raises
        ``NoBestCandidate`` when the job has none."""
        best = best_model_artifact(self.artifacts(), format)
        if best is None:
            raise errors.NoBestCandidate(p.no_best_message(self), code="no_best_candidate")
        return self._client.download_artifact(best, folder, progress=progress)

    def cancel(self) -> Job:
        self._replace_with(self._client.cancel_job(self.id))
        return self

