"""The asynchronous client, on ``httpx.AsyncClient``: the same methods as ``Client`` (awaited),
built from the same ``Call``s (shrink_client._protocol)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import PrivateAttr

from shrink_client import _protocol as p
from shrink_client import errors
from shrink_client.client import POLL_MAX, POLL_START
from shrink_client.progress import ProgressLine
from shrink_client.records import Artifact, Dataset, Event, JobRecord, Model, best_model_artifact

T = TypeVar("T")


async def _file_chunks(path: Path, progress: p.Progress | None) -> AsyncIterator[bytes]:
    # Reads happen in a thread so that a slow disk never blocks the event loop.
    chunks = p.file_chunks(path, progress)
    while chunk := await asyncio.to_thread(next, chunks, b""):
        yield chunk


class AsyncClient:
    """``AsyncClient(url=None, api_key=None)``; use ``async with`` or ``await client.aclose()``."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 120.0,
                 retry: p.Retry | None = None, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = p.Settings.resolve(url, api_key, timeout)
        self.retry = retry or p.Retry()
        self._http = httpx.AsyncClient(transport=transport, **self.settings.client_options())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sending ---------------------------------------------------------------------------

    def _build(self, call: p.Call[Any]) -> httpx.Request:
        options = call.request_options()
        options.pop("follow_redirects")
        content = _file_chunks(call.upload, call.progress) if call.upload is not None else None
        return self._http.build_request(call.method, call.path, content=content, **options)

    @contextlib.asynccontextmanager
    async def _open(self, call: p.Call[Any]) -> AsyncIterator[httpx.Response]:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.send(self._build(call), stream=True, follow_redirects=call.follow_redirects)
            except p.RETRY_ERRORS as exc:
                delay = self.retry.delay(attempt)
                if delay is None:
                    raise errors.ConnectionFailed(f"cannot reach {self.settings.url}: {exc}", code="connection_failed") from exc
                await asyncio.sleep(delay)
                continue
            if response.status_code in call.expect:
                try:
                    yield response
                finally:
                    await response.aclose()
                return
            await response.aread()
            await response.aclose()
            delay = self.retry.delay(attempt, response)
            if delay is None:
                raise errors.from_response(response)
            await asyncio.sleep(delay)

    async def _call(self, call: p.Call[T]) -> T:
        async with self._open(call) as response:
            await response.aread()
            return call.read(response)

    async def _job(self, call: p.Call[Any]) -> AsyncJob:
        job: AsyncJob = await self._call(call)
        job._client = self
        return job

    async def _pages(self, make: Callable[[str | None], p.Call[Any]]) -> AsyncIterator[Any]:
        cursor: str | None = None
        while True:
            page = await self._call(make(cursor))
            for item in page.items:
                yield item
            cursor = page.next_cursor
            if not cursor:
                return

    # -- models and datasets ---------------------------------------------------------------

    async def upload_model(self, path: str | os.PathLike[str], name: str | None = None, *,
                           progress: p.Progress | None = None, idempotency_key: str | None = None) -> Model:
        return await self._call(p.upload("models", path, name, progress, idempotency_key))

    async def upload_dataset(self, path: str | os.PathLike[str], name: str | None = None, *,
                             progress: p.Progress | None = None, idempotency_key: str | None = None) -> Dataset:
        return await self._call(p.upload("datasets", path, name, progress, idempotency_key))

    async def get_model(self, model_id: str) -> Model:
        return await self._call(p.get("models", model_id))

    async def get_dataset(self, dataset_id: str) -> Dataset:
        return await self._call(p.get("datasets", dataset_id))

    async def delete_model(self, model: str | Model) -> None:
        await self._call(p.delete("models", model))

    async def delete_job(self, job: str | AsyncJob) -> None:
        """Delete a job with its report and artifacts (the service cancels it first if it runs)."""
        await self._call(p.delete("jobs", job))

    async def delete_dataset(self, dataset: str | Dataset) -> None:
        await self._call(p.delete("datasets", dataset))

    def models(self, *, name: str | None = None, format: str | None = None, page_size: int | None = None) -> AsyncIterator[Model]:
        return self._pages(lambda c: p.page("models", Model, c, page_size, {"name": name, "format": format}))

    def datasets(self, *, name: str | None = None, format: str | None = None, page_size: int | None = None) -> AsyncIterator[Dataset]:
        return self._pages(lambda c: p.page("datasets", Dataset, c, page_size, {"name": name, "format": format}))

    # -- jobs ------------------------------------------------------------------------------

    async def submit(self, model: str | Model, dataset: str | Dataset | None = None, recipe: Any = None,
                     goal: dict[str, Any] | None = None, benchmark: dict[str, Any] | None = None,
                     labels: dict[str, str] | None = None, webhook_url: str | None = None, *,
                     idempotency_key: str | None = None) -> AsyncJob:
        spec = p.job_spec(model, dataset, recipe, goal, benchmark, labels, webhook_url)
        return await self._job(p.submit(spec, AsyncJob, idempotency_key))

    async def get_job(self, job_id: str) -> AsyncJob:
        return await self._job(p.get_job(job_id, AsyncJob))

    async def jobs(self, *, state: str | None = None, model: str | Model | None = None,
                   page_size: int | None = None) -> AsyncIterator[AsyncJob]:
        filters = {"state": state, "model_id": p.id_of(model) if model is not None else None}
        async for job in self._pages(lambda c: p.page("jobs", AsyncJob, c, page_size, filters)):
            job._client = self
            yield job

    async def cancel_job(self, job_id: str) -> AsyncJob:
        return await self._job(p.cancel_job(job_id, AsyncJob))

    async def report(self, job_id: str) -> dict[str, Any]:
        return await self._call(p.report(job_id))

    async def artifacts(self, job_id: str) -> list[Artifact]:
        return await self._call(p.artifacts(job_id))

    async def download_artifact(self, artifact: str | Artifact, folder: str | os.PathLike[str] = ".", *,
                                progress: p.Progress | None = None) -> Path:
        record = artifact if isinstance(artifact, Artifact) else None
        async with self._open(p.download(p.id_of(artifact))) as response:
            name = record.filename if record else p.filename_from(response, p.id_of(artifact))
            total = record.size_bytes if record else int(response.headers.get("Content-Length") or 0)
            sink = p.DownloadSink(folder, name, record.sha256 if record else None, total, progress)
            try:
                async for chunk in response.aiter_bytes(p.CHUNK):
                    sink.write(chunk)
            except BaseException:
                sink.abort()
                raise
            return sink.finish(response.headers.get("X-Checksum-Sha256"))

    async def events(self, job_id: str, *, last_event_id: int | None = None) -> AsyncIterator[Event]:
        failures = 0
        while True:
            try:
                async with self._open(p.events(job_id, last_event_id)) as response:
                    decoder = p.SSEDecoder()
                    async for line in response.aiter_lines():
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
                await asyncio.sleep(p.resume_delay(self.retry, failures, job_id, exc))
                continue
            failures += 1
            await asyncio.sleep(p.resume_delay(self.retry, failures, job_id, None))


class AsyncJob(JobRecord):
    """``Job`` for ``AsyncClient``: the same methods, awaited."""

    _client: AsyncClient = PrivateAttr()

    async def refresh(self) -> AsyncJob:
        self._replace_with(await self._client.get_job(self.id))
        return self

    async def wait(self, timeout: float | None = None, *, progress: bool | None = None) -> AsyncJob:
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
                await asyncio.sleep(interval)
                interval = min(interval * 1.5, POLL_MAX)
                await self.refresh()
        finally:
            line.close()

    def events(self) -> AsyncIterator[Event]:
        return self._client.events(self.id)

    async def report(self) -> dict[str, Any]:
        return await self._client.report(self.id)

    async def artifacts(self) -> list[Artifact]:
        return await self._client.artifacts(self.id)

    async def download_best(self, folder: str | os.PathLike[str] = ".", *, format: str | None = None,
                            progress: p.Progress | None = None) -> Path:
        best = best_model_artifact(await self.artifacts(), format)
        if best is None:
            raise errors.NoBestCandidate(p.no_best_message(self), code="no_best_candidate")
        return await self._client.download_artifact(best, folder, progress=progress)

    async def cancel(self) -> AsyncJob:
        self._replace_with(await self._client.cancel_job(self.id))
        return self
