"""The SQL broker (the embedded default, ``sqla+sqlite``): kombu's SQLAlchemy transport, with a
wake-up so that a job starts within milliseconds of its submission without a worker polling
its table many times a second.

A SQL table cannot wake a waiting consumer: kombu's transport polls it once a second, so a job
waited half a second on average before it started; polling every 20 ms instead cost an idle
worker about a quarter of a core (each empty poll is a transaction per queue). So a worker on a
SQLite broker, which is on the same machine as everything that publishes to it, binds a Unix
datagram socket in a folder named after the broker's file, and every publish sends one byte to
each socket there. The worker waits on its socket for up to ``SHRINK_BROKER_POLL_SECONDS`` and
reads the table when woken or when the time is up, so a lost wake-up costs at most that long.
A SQL broker on a server (``sqla+postgresql``) has no wake-up and is polled at that interval.

kombu hands every transport option to ``create_engine``, which refuses ``polling_interval``, so
the interval is set on the transport itself, and the ``sqla``/``sqlalchemy`` URL schemes are
pointed at this transport by ``core.queue``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import tempfile
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy

from core.settings import get_settings


def wake_folder(url: str) -> Path | None:
    """Where the workers of a SQLite broker listen, or None for a broker on a server. A short path
    under the system's temporary folder: a socket's path may not exceed about 100 bytes."""
    if not url.startswith("sqlite:") or ":memory:" in url:
        return None
    database = os.path.abspath(url.split("///", 1)[-1])
    return Path(tempfile.gettempdir()) / f"shrink-wake-{hashlib.sha256(database.encode()).hexdigest()[:16]}"


def wake(folder: Path | None) -> None:
    """Nudge every worker listening on ``folder``; never raises (a worker that misses it polls)."""
    if folder is None or not folder.is_dir():
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for listener in folder.glob("*.sock"):
            try:
                sender.sendto(b"\x01", str(listener))
            except (ConnectionRefusedError, FileNotFoundError):  # its worker is gone
                with contextlib.suppress(OSError):
                    listener.unlink()
            except OSError:  # its buffer is full: it has been woken already
                pass


class _Listener:
    """A worker's end: a datagram socket in the wake folder, read until empty on each wake-up."""

    def __init__(self, folder: Path):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(str(self.path))

    def wait(self, seconds: float) -> None:
        readable, _, _ = select.select([self.sock], [], [], seconds)
        if readable:
            with contextlib.suppress(BlockingIOError):
                while self.sock.recv(64):
                    pass

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


class Channel(kombu_sqlalchemy.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        super()._put(queue, payload, **kwargs)
        wake(wake_folder(self.connection.client.hostname or ""))


class Transport(kombu_sqlalchemy.Transport):
    Channel = Channel

    def __init__(self, client: Any, **kwargs: Any):
        super().__init__(client, **kwargs)
        self.polling_interval = get_settings().broker_poll_seconds
        self._listener: _Listener | None = None

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """kombu's loop over the queues, waiting on the wake-up socket where kombu sleeps."""
        started = time.monotonic()
        interval = self.polling_interval
        if timeout and interval > timeout:
            interval = timeout
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                if timeout is not None and time.monotonic() - started >= timeout:
                    raise TimeoutError from None
                self._sleep(interval)

    def _sleep(self, seconds: float) -> None:
        if self._listener is None:
            folder = wake_folder(self.client.hostname or "")
            if folder is None:
                time.sleep(seconds)
                return
            try:
                self._listener = _Listener(folder)
            except OSError:  # no socket here (a read-only temporary folder): poll
                time.sleep(seconds)
                return
        self._listener.wait(seconds)

    def close_connection(self, connection: Any) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        super().close_connection(connection)


def register() -> None:
    for scheme in ("sqla", "sqlalchemy"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
