"""A TCP proxy between the service and the S3 endpoint that the test controls: it passes bytes
through, or, for a window, answers every request with HTTP 500/503 or holds it without an
answer (a hung endpoint), then heals.

Passing through is plain byte copying, so keep-alive connections and multipart uploads behave
as they do against S3. When a fault starts, every open connection is cut, so that the service's
pooled connections cannot slip past the window; requests met during the window are recorded
(method and path) so a test can prove that the uploads it cares about really hit the fault."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from dataclasses import dataclass, field

from bench.stack import free_port

PASS, ERROR, HANG = "pass", "error", "hang"


@dataclass
class Refused:
    at: float
    method: str
    path: str
    answer: str  # "500", "503" or "hang"


@dataclass
class S3FaultProxy:
    upstream: tuple[str, int]
    port: int = field(default_factory=free_port)
    mode: str = PASS
    refused: list[Refused] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._healed = threading.Event()
        self._healed.set()
        self._statuses = itertools.cycle(("503", "500"))
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        threading.Thread(target=self._accept, name="s3-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control -------------------------------------------------------------------------------

    def fail(self, mode: str = ERROR) -> None:
        """Start a fault: every request from now on is answered 500/503 (``error``) or never
        answered (``hang``) until ``heal``."""
        with self._lock:
            self.mode = mode
            self._healed.clear()
        self._cut_all()

    def heal(self) -> None:
        with self._lock:
            self.mode = PASS
            self._healed.set()
        self._cut_all()  # hung requests end as a dropped connection, as when a partition heals

    def close(self) -> None:
        self._stop.set()
        self.heal()
        self._listener.close()

    def refused_paths(self, contains: str) -> list[Refused]:
        with self._lock:
            return [r for r in self.refused if contains in r.path]

    # -- plumbing ------------------------------------------------------------------------------

    def _cut_all(self) -> None:
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.update(socks)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            mode = self.mode
        self._track(client)
        if mode == PASS:
            self._pipe_both(client)
        else:
            self._refuse(client, mode)

    def _pipe_both(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            with contextlib.suppress(OSError):
                client.close()
            return
        upstream.settimeout(None)
        self._track(upstream)
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _read_head(self, client: socket.socket) -> tuple[str, str, dict[str, str], bytes] | None:
        buf = b""
        client.settimeout(30)
        while b"\r\n\r\n" not in buf:
            chunk = client.recv(65536)
            if not chunk:
                return None
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path = (lines[0].split(" ") + ["", ""])[:2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return method, path, headers, rest

    def _refuse(self, client: socket.socket, mode: str) -> None:
        try:
            parsed = self._read_head(client)
            if parsed is None:
                return
            method, path, headers, rest = parsed
            if mode == HANG:
                self._record(method, path, "hang")
                self._healed.wait()
                return  # heal() has cut this connection: the client sees it dropped
            if headers.get("expect", "").lower() != "100-continue":
                # Read the body before answering, as a server does, so the client is not cut off
                # mid-send (which would test a dropped connection instead of an answer).
                remaining = int(headers.get("content-length", "0") or 0) - len(rest)
                while remaining > 0:
                    chunk = client.recv(min(remaining, 65536))
                    if not chunk:
                        return
                    remaining -= len(chunk)
            status = next(self._statuses)
            self._record(method, path, status)
            reason, code = ("Slow Down", "SlowDown") if status == "503" else ("Internal Server Error", "InternalError")
            body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>fault window</Message></Error>'
            client.sendall(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n{body}".encode()
            )
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                client.close()

    def _record(self, method: str, path: str, answer: str) -> None:
        with self._lock:
            self.refused.append(Refused(time.monotonic(), method, path, answer))
