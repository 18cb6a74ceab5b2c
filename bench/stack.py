"""The service as processes (the API under uvicorn, Celery workers) on one configuration, for
the end-to-end tests and the service benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL_BASE = "redis://127.0.0.1:6379"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A private schema in the test database, dropped afterwards."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


class ServiceStack:
    """uvicorn and a Celery worker as subprocesses on one configuration; talks HTTP to the API."""

    def __init__(self, env: dict[str, str], tmp: Path, *, lease_seconds: float = 4.0):
        self.tmp = tmp
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SHRINK_")},
            "SHRINK_LEASE_SECONDS": str(lease_seconds),
            "SHRINK_REAPER_INTERVAL_SECONDS": "1",
            "SHRINK_LOG_JSON": "true",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> ServiceStack:
        subprocess.run([str(BIN / "shrink"), "migrate"], env=self.env, check=True, cwd=ROOT, capture_output=True)
        self.start_api()
        self.start_worker()
        self._wait_healthy()
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in [*self.workers, self.api]:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        # The child keeps writing to it after this returns: closed when the process ends.
        log = open(self.logs / f"{name}-{len(self.workers)}-{time.time():.3f}.log", "wb")  # noqa: SIM115
        return subprocess.Popen(argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_api(self, *, wait: bool = False) -> subprocess.Popen[bytes]:
        """Start the API on the stack's port (again, after ``kill_api``)."""
        self.api = self._spawn("api", [str(BIN / "shrink"), "api", "--port", str(self.port)])
        if wait:
            self._wait_healthy()
        return self.api

    def kill_api(self) -> None:
        """SIGKILL the API's whole process group: requests in flight are cut off."""
        if self.api is not None and self.api.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.api.pid, signal.SIGKILL)
            self.api.wait(timeout=10)

    def restart_api(self) -> subprocess.Popen[bytes]:
        self.kill_api()
        return self.start_api(wait=True)

    def start_worker(self) -> subprocess.Popen[bytes]:
        proc = self._spawn("worker", [str(BIN / "shrink"), "worker", "--queues", "cpu,gpu", "--hostname", f"w{len(self.workers)}@%h"])
        self.workers.append(proc)
        return proc

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the whole worker: its pool, and the sandboxed engine (parent-death signal)."""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def _wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.api is not None
            if self.api.poll() is not None:
                raise RuntimeError(f"the API exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the API did not become healthy: {self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        parts = []
        for path in sorted(self.logs.iterdir()):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def admin(self, *args: str) -> str:
        out = subprocess.run([str(BIN / "shrink"), "admin", *args], env=self.env, cwd=ROOT, check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def new_tenant(self, name: str | None = None) -> httpx.Client:
        tenant = self.admin("create-tenant", name or f"team-{uuid.uuid4().hex[:8]}")
        key = self.admin("create-key", tenant)
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {key}"}, timeout=120)

    @staticmethod
    def upload(client: httpx.Client, path: Path, *, kind: str = "models", name: str = "m", **headers: str) -> httpx.Response:
        with open(path, "rb") as fh:
            return client.post(
                f"/v1/{kind}", params={"name": name, "filename": path.name}, content=fh,
                headers={"Content-Type": "application/octet-stream", **headers},
            )

    def wait_job(self, client: httpx.Client, job_id: str, *, timeout: float = 300, until: tuple[str, ...] = ("succeeded", "failed", "canceled")) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["state"] in until:
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} did not reach {until}: {job}\n{self.log_tail()}")
