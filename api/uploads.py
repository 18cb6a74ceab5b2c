"""Streaming uploads: the body goes to a temporary file in chunks while it is hashed and counted;
never the whole file in memory. Raw bodies and multipart (field ``file``) both stream."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_FORM_FIELD = 64 * 1024


@dataclass
class SpooledUpload:
    path: Path
    sha256: str
    size: int
    filename: str = ""
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class _Sink:
    """Hashes the body on one thread and writes it on another, a block at a time, while the event
    loop receives the next block: the three overlap (a write that waits for the disk no longer
    holds the hash up), and the event loop is never held by a hash or a write (other requests are
    answered during an upload). Three blocks, allocated once and used in turn, are all the memory
    an upload takes (a fresh block each time cost a page fault per 4 KiB of body)."""

    BLOCK = 4 << 20

    def __init__(self, directory: Path, max_bytes: int):
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", dir=directory)
        self.file = os.fdopen(fd, "wb")
        self.path = Path(name)
        self.digest = hashlib.sha256()
        self.size = 0
        self.max_bytes = max_bytes
        self._blocks = [bytearray(self.BLOCK) for _ in range(3)]
        self._current = 0  # the block being filled; the others may be on the threads
        self._fill = 0
        self._spill: list[bytes] = []  # what did not fit in a full block, in order
        # One thread each, so hashes and writes each keep the body's order.
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="upload-hash")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="upload-write")
        self._pending: dict[int, list[asyncio.Future[Any]]] = {}  # block -> its hash and write

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise PayloadTooLarge(f"the upload exceeds the limit of {self.max_bytes} bytes",
                                  detail={"limit_bytes": self.max_bytes})
        self._place(memoryview(chunk))

    def _place(self, data: memoryview) -> None:
        if self._spill:
            self._spill.append(bytes(data))
            return
        n = min(self.BLOCK - self._fill, len(data))
        self._blocks[self._current][self._fill : self._fill + n] = data[:n]
        self._fill += n
        if n < len(data):
            self._spill.append(bytes(data[n:]))

    async def flush_if_full(self) -> None:
        while self._fill == self.BLOCK:
            await self._flush()
            spill, self._spill = self._spill, []
            for piece in spill:
                self._place(memoryview(piece))

    async def _flush(self) -> None:
        block = memoryview(self._blocks[self._current])[: self._fill]
        loop = asyncio.get_running_loop()
        self._pending[self._current] = [loop.run_in_executor(self._hasher, self.digest.update, block),
                                        loop.run_in_executor(self._writer, self.file.write, block)]
        self._current, self._fill = (self._current + 1) % len(self._blocks), 0
        await self._wait(self._current)  # the next block to fill is free once its last turn is done

    async def _wait(self, block: int | None = None) -> None:
        for index in [block] if block is not None else list(self._pending):
            for future in self._pending.pop(index, []):
                await future

    async def close(self, *, write_rest: bool = True) -> None:
        """Write what is left (unless the body was refused) and close the file once no thread
        writes to it any more."""
        try:
            if write_rest:
                await self.flush_if_full()
                if self._fill:
                    await self._flush()
            await self._wait()
        finally:
            self._hasher.shutdown(wait=True)
            self._writer.shutdown(wait=True)
            self.file.close()


async def spool(request: Request, directory: Path, max_bytes: int) -> SpooledUpload:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + 1024 * 1024:
        raise PayloadTooLarge(f"the upload exceeds the limit of {max_bytes} bytes", detail={"limit_bytes": max_bytes})
    content_type = request.headers.get("content-type", "application/octet-stream")
    ctype, params = parse_options_header(content_type)
    sink = _Sink(directory, max_bytes)
    try:
        if ctype == b"multipart/form-data":
            fields, filename = await _multipart(request, sink, params.get(b"boundary"))
        elif ctype in (b"application/octet-stream", b"application/zip", b"application/x-tar", b"application/gzip"):
            async for chunk in request.stream():
                sink.add(chunk)
                await sink.flush_if_full()
            fields, filename = {}, request.query_params.get("filename", "")
        else:
            raise UnsupportedMediaType(
                "send the file as the raw body (Content-Type: application/octet-stream) or as multipart/form-data "
                "with the file in field 'file'"
            )
    except BaseException:
        await asyncio.shield(sink.close(write_rest=False))
        sink.path.unlink(missing_ok=True)
        raise
    await sink.close()
    if sink.size == 0:
        sink.path.unlink(missing_ok=True)
        raise BadRequest("the upload is empty", code="empty_upload")
    return SpooledUpload(path=sink.path, sha256=sink.digest.hexdigest(), size=sink.size, filename=filename, fields=fields)


async def _multipart(request: Request, sink: _Sink, boundary: bytes | None) -> tuple[dict[str, str], str]:
    if not boundary:
        raise BadRequest("multipart body without a boundary", code="bad_multipart")
    state: dict[str, object] = {"name": None, "filename": None, "buffer": bytearray(), "headers": {}, "header_field": b""}
    fields: dict[str, str] = {}
    seen_file = {"yes": False, "filename": ""}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header_field"] = bytes(state["header_field"]) + data[start:end]  # type: ignore[operator]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        headers = state["headers"]
        key = bytes(state["header_field"]).lower()  # type: ignore[arg-type]
        headers[key] = headers.get(key, b"") + data[start:end]  # type: ignore[union-attr,index]

    def on_header_end() -> None:
        state["header_field"] = b""

    def on_headers_finished() -> None:
        disposition = state["headers"].get(b"content-disposition", b"")  # type: ignore[union-attr]
        _, options = parse_options_header(disposition)
        state["name"] = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        state["filename"] = filename.decode("utf-8", "replace") if filename is not None else None
        state["buffer"] = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["name"] == "file":
            sink.add(data[start:end])
            return
        buffer = state["buffer"]
        buffer.extend(data[start:end])  # type: ignore[union-attr]
        if len(buffer) > MAX_FORM_FIELD:  # type: ignore[arg-type]
            raise BadRequest(f"form field {state['name']!r} is too long", code="bad_multipart")

    def on_part_end() -> None:
        if state["name"] == "file":
            if seen_file["yes"]:
                raise BadRequest("send one file per upload", code="bad_multipart")
            seen_file["yes"] = True
            seen_file["filename"] = state["filename"] or ""
        elif state["name"]:
            fields[str(state["name"])] = bytes(state["buffer"]).decode("utf-8", "replace")  # type: ignore[arg-type]
        state["headers"] = {}

    parser = MultipartParser(
        boundary,
        callbacks={
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            await sink.flush_if_full()
        parser.finalize()
    except MultipartParseError:
        raise _malformed("the multipart body does not follow its boundary") from None
    if parser.state != MultipartState.END:  # the closing boundary never came
        raise _malformed("the multipart body ends before its closing boundary")
    if not seen_file["yes"]:
        raise BadRequest("the multipart body has no field 'file'", code="bad_multipart")
    return fields, str(seen_file["filename"])


def _malformed(reason: str) -> BadRequest:
    return BadRequest(
        f"{reason}: send the file in field 'file' of a well-formed multipart/form-data body whose boundary "
        "matches the Content-Type header, or send it as the raw body (Content-Type: application/octet-stream)",
        code="upload_malformed",
    )
