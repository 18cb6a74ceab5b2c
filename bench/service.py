"""Service benchmark, each figure printed beside its target:

- upload: a 2 GiB dataset in one request (spool to disk + sha256, inspection in the sandbox,
  storage) on the embedded default: throughput, and the API's memory growth (peak RSS sampled
  every 20 ms), which shows whether the body was ever held in memory;
- submit -> running: jobs submitted one at a time to idle workers (each waits for the last to
  end, so the figure is dispatch, not queueing), on the embedded default (SQLite, local disk, the
  SQL broker) and on Redis + PostgreSQL + S3 over HTTP;
- status polls: ``GET /v1/jobs/{id}`` from 32 connections for 15 s against PostgreSQL (two API
  processes, as ``SHRINK_API_WORKERS=2``), driven by ``wrk`` (C, so the load generator takes
  little of the CPU it shares with the service): once as fast as they can (the capacity), once
  with each connection waiting a random 0-44 ms between polls (about the target rate, and the
  latency there).

    .venv/bin/python -m bench.service [--upload-gib 2] [--jobs 60] [--poll-seconds 15]

``make bench`` installs wrk (Debian's package) and runs this.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench import materials
from bench.stack import REDIS_URL_BASE, ServiceStack, free_port, postgres_schema
from engine import hardware

TARGETS = {
    "upload_mb_s": 200.0, "upload_growth_mib": 64.0, "embedded_p50_ms": 50.0, "redis_p50_ms": 20.0,
    "poll_rps": 1000.0, "poll_p99_ms": 50.0,
}  # fmt: skip
JOB_SPEC = {"benchmark": {"batch_sizes": [1], "warmup_runs": 1, "min_runs": 5, "max_runs": 5, "fidelity_rows": 4}}


def verdict(met: bool) -> str:
    return "target met" if met else "TARGET NOT MET"


def write_npz(path: Path, gib: float) -> None:
    """A ~gib GiB .npz written in chunks (never the whole array in memory)."""
    rows = int(gib * 1024**3 // (1024 * 4))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf, \
            zf.open("image.npy", "w", force_zip64=True) as fh:
            header = {"descr": "<f4", "fortran_order": False, "shape": (rows, 1024)}
            np.lib.format.write_array_header_2_0(fh, header)
            chunk = np.random.default_rng(0).standard_normal((4096, 1024)).astype("<f4").tobytes()
            written = 0
            while written < rows:
                n = min(4096, rows - written)
                fh.write(chunk[: n * 1024 * 4])
                written += n


def embedded_env(tmp: Path) -> dict[str, str]:
    return {"SHRINK_ENV": "test", "SHRINK_DATA_DIR": str(tmp / "var")}


@contextlib.contextmanager
def production_env(tmp: Path, **extra: str) -> Iterator[dict[str, str]]:
    """Redis + PostgreSQL (a private schema) + S3 (moto's server over HTTP)."""
    import logging

    import redis
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    redis.Redis.from_url(f"{REDIS_URL_BASE}/8").flushdb()
    try:
        with postgres_schema() as url:
            yield {
                **embedded_env(tmp), "SHRINK_DATABASE_URL": url, "SHRINK_BROKER_URL": f"{REDIS_URL_BASE}/8",
                "SHRINK_STORAGE_BACKEND": "s3", "SHRINK_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "SHRINK_S3_BUCKET": f"bench-{uuid.uuid4().hex[:6]}", "SHRINK_S3_ACCESS_KEY_ID": "x",
                "SHRINK_S3_SECRET_ACCESS_KEY": "x", **extra,
            }
    finally:
        moto.stop()


def bench_upload(gib: float) -> None:
    with tempfile.TemporaryDirectory(prefix="shrink-bench-") as tmp:
        tmp_path = Path(tmp)
        body = tmp_path / "big.npz"
        write_npz(body, gib)
        size = body.stat().st_size
        with ServiceStack(embedded_env(tmp_path), tmp_path) as stack:
            client = stack.new_tenant()
            api = psutil.Process(stack.api.pid)
            baseline = api.memory_info().rss
            peak = [baseline]
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], api.memory_info().rss)
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            with open(body, "rb") as fh:
                response = client.post("/v1/datasets", content=fh, params={"filename": "big.npz"},
                                       headers={"Content-Type": "application/octet-stream"}, timeout=3600)
            seconds = time.perf_counter() - started
            stop.set()
            sampler.join()
            assert response.status_code == 201, response.text
        rate, growth = size / 1e6 / seconds, (peak[0] - baseline) / 1024**2
        print(f"upload, embedded default: {size / 1024**3:.2f} GiB in {seconds:.1f} s = {rate:.0f} MB/s "
              f"({size / 1024**2 / seconds:.0f} MiB/s); target >= {TARGETS['upload_mb_s']:.0f} MB/s: "
              f"{verdict(rate >= TARGETS['upload_mb_s'])}")
        print(f"upload, API memory: RSS {baseline / 1024**2:.0f} MiB before, peak {peak[0] / 1024**2:.0f} MiB, growth "
              f"{growth:.0f} MiB for a {size / 1024**2:.0f} MiB body; target <= {TARGETS['upload_growth_mib']:.0f} MiB: "
              f"{verdict(growth <= TARGETS['upload_growth_mib'])}")


def submit_latencies(stack: ServiceStack, jobs: int) -> np.ndarray:
    """created_at -> started_at of jobs submitted one at a time, each after the last has ended."""
    client = stack.new_tenant()
    model = stack.upload(client, materials.digits_cnn_onnx()).json()
    latencies = []
    for _ in range(jobs):
        job = client.post("/v1/benchmarks", json={"model_id": model["id"], **JOB_SPEC}).json()
        job = stack.wait_job(client, job["id"], timeout=120)
        assert job["state"] == "succeeded", job
        created, started = datetime.fromisoformat(job["created_at"]), datetime.fromisoformat(job["started_at"])
        latencies.append((started - created).total_seconds() * 1000)
    return np.asarray(latencies)


def print_latencies(name: str, arr: np.ndarray, target: float) -> None:
    p50 = float(np.percentile(arr, 50))
    print(f"submit -> running, {name}: {len(arr)} jobs, p50 {p50:.0f} ms, p90 {np.percentile(arr, 90):.0f} ms, "
          f"p99 {np.percentile(arr, 99):.0f} ms, max {arr.max():.0f} ms; target p50 <= {target:.0f} ms: {verdict(p50 <= target)}")


def bench_submit_latency(jobs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="shrink-bench-") as tmp, ServiceStack(embedded_env(Path(tmp)), Path(tmp)) as stack:
        print_latencies("embedded default (SQLite, local disk, SQL broker)", submit_latencies(stack, jobs), TARGETS["embedded_p50_ms"])
    with tempfile.TemporaryDirectory(prefix="shrink-bench-") as tmp, production_env(Path(tmp)) as env, \
            ServiceStack(env, Path(tmp)) as stack:
        print_latencies("Redis + PostgreSQL + S3", submit_latencies(stack, jobs), TARGETS["redis_p50_ms"])


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, the latency percentiles and the error counts from ``wrk --latency``."""
    found: dict[str, Any] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M):
        found[f"p{pct}_ms"] = float(value) * _WRK_UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    found["non_2xx"] = int(errors.group(1)) if errors else 0
    socket_errors = re.search(r"Socket errors: (.*)", output)
    found["socket_errors"] = socket_errors.group(1).strip() if socket_errors else "none"
    return found


# 32 pollers that each wait a random 0-44 ms (22 on average) after an answer: independent
# clients, about 1,000 requests/s in all when an answer takes ~10 ms (wrk's ``delay()`` hook;
# wrk has no rate option). A fixed wait keeps the 32 in step, and they arrive as one burst.
PACE_SCRIPT = "function delay()\n  return math.random(0, 44)\nend\n"


def bench_status_polls(seconds: float) -> None:
    """Two runs against the same service: 32 pollers as fast as they can (the capacity, and its
    latency when saturated), then 32 pollers each waiting a random 0-44 ms between polls (about
    the target rate: the latency at that load, which is what the p99 target is about)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("status polls need wrk: apt-get install -y wrk (make bench installs it)")
    with tempfile.TemporaryDirectory(prefix="shrink-bench-") as tmp, production_env(Path(tmp), SHRINK_API_WORKERS="2") as env, \
            ServiceStack(env, Path(tmp)) as stack:
        client = stack.new_tenant()
        model = stack.upload(client, materials.digits_cnn_onnx()).json()
        job = client.post("/v1/benchmarks", json={"model_id": model["id"], **JOB_SPEC}).json()
        job = stack.wait_job(client, job["id"], timeout=120)
        url, auth = f"{stack.base}/v1/jobs/{job['id']}", f"Authorization: {client.headers['Authorization']}"
        pace = Path(tmp) / "pace.lua"
        pace.write_text(PACE_SCRIPT)
        subprocess.run([wrk, "-t1", "-c4", "-d2s", "-H", auth, url], check=True, capture_output=True)  # warm both processes
        runs = {}
        for name, extra in (("saturated", []), ("paced", ["-s", str(pace)])):
            out = subprocess.run([wrk, "-t2", "-c32", f"-d{int(seconds)}s", "--latency", "-H", auth, *extra, url],
                                 check=True, capture_output=True, text=True).stdout
            runs[name] = parse_wrk(out)
    for name, found in runs.items():
        how = "as fast as they can" if name == "saturated" else "each waiting a random 0-44 ms after an answer"
        print(f"status polls, PostgreSQL + Redis, 2 API processes, 32 pollers {how}, {seconds:.0f} s: {found['rps']:.0f} requests/s, "
              f"p50 {found['p50_ms']:.1f} ms, p90 {found['p90_ms']:.1f} ms, p99 {found['p99_ms']:.1f} ms, non-2xx {found['non_2xx']}, "
              f"socket errors {found['socket_errors']}")
    paced, saturated = runs["paced"], runs["saturated"]
    met = (saturated["rps"] >= TARGETS["poll_rps"] and paced["rps"] >= TARGETS["poll_rps"]
           and paced["p99_ms"] <= TARGETS["poll_p99_ms"] and not (paced["non_2xx"] or saturated["non_2xx"]))
    print(f"status polls: target >= {TARGETS['poll_rps']:.0f} requests/s at concurrency 32 with p99 <= {TARGETS['poll_p99_ms']:.0f} ms "
          f"(capacity {saturated['rps']:.0f}/s; at {paced['rps']:.0f}/s p99 {paced['p99_ms']:.1f} ms): {verdict(met)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upload-gib", type=float, default=2.0)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--poll-seconds", type=float, default=15.0)
    parser.add_argument("--only", choices=["upload", "submit", "polls"], nargs="*")
    args = parser.parse_args()
    cpu = hardware.cpu_info()
    print(f"{cpu['cpu']}, {psutil.cpu_count()} cores, flags {' '.join(cpu['cpu_flags'])}, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {psutil.getloadavg()[0]:.2f}")
    only = set(args.only or ["upload", "submit", "polls"])
    if "upload" in only:
        bench_upload(args.upload_gib)
    if "submit" in only:
        bench_submit_latency(args.jobs)
    if "polls" in only:
        bench_status_polls(args.poll_seconds)


if __name__ == "__main__":
    main()
