"""Service benchmark: upload throughput and the API's memory while it streams a large body, and
submit -> running latency of jobs on Redis (+ PostgreSQL + S3 over HTTP).

    .venv/bin/python -m bench.service [--upload-gib 2] [--jobs 100]

The upload is a real dataset (.npz of one float32 array) that the API spools to disk while
hashing it, inspects in the sandbox and stores: peak RSS of the API process is sampled every
20 ms, so its growth shows whether the body was ever held in memory.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil

from bench import materials
from bench.stack import REDIS_URL_BASE, ServiceStack, free_port, postgres_schema


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


def bench_upload(gib: float) -> None:
    with tempfile.TemporaryDirectory(prefix="shrink-bench-") as tmp:
        tmp_path = Path(tmp)
        body = tmp_path / "big.npz"
        write_npz(body, gib)
        size = body.stat().st_size
        with ServiceStack({"SHRINK_ENV": "test", "SHRINK_DATA_DIR": str(tmp_path / "var")}, tmp_path) as stack:
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
        print(f"upload: {size / 1024**3:.2f} GiB in {seconds:.1f} s = {size / 1024**2 / seconds:.0f} MiB/s "
              "(spool + sha256 + sandboxed inspection + storage, one request)")
        print(f"upload: API RSS baseline {baseline / 1024**2:.0f} MiB, peak {peak[0] / 1024**2:.0f} MiB, "
              f"growth {(peak[0] - baseline) / 1024**2:.0f} MiB for a {size / 1024**2:.0f} MiB body")


def bench_submit_latency(jobs: int) -> None:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    import redis

    redis.Redis.from_url(f"{REDIS_URL_BASE}/8").flushdb()
    try:
        with tempfile.TemporaryDirectory(prefix="shrink-bench-") as tmp, postgres_schema() as url:
            env = {
                "SHRINK_ENV": "test", "SHRINK_DATA_DIR": str(Path(tmp) / "var"), "SHRINK_DATABASE_URL": url,
                "SHRINK_BROKER_URL": f"{REDIS_URL_BASE}/8", "SHRINK_STORAGE_BACKEND": "s3",
                "SHRINK_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}", "SHRINK_S3_BUCKET": f"bench-{uuid.uuid4().hex[:6]}",
                "SHRINK_S3_ACCESS_KEY_ID": "x", "SHRINK_S3_SECRET_ACCESS_KEY": "x", "SHRINK_WORKER_CONCURRENCY": "2",
            }
            with ServiceStack(env, Path(tmp)) as stack:
                client = stack.new_tenant()
                model = stack.upload(client, materials.digits_cnn_onnx()).json()
                spec = {"model_id": model["id"], "benchmark": {"batch_sizes": [1], "warmup_runs": 1, "min_runs": 5,
                                                               "max_runs": 5, "fidelity_rows": 4}}
                latencies = []
                for _ in range(jobs):
                    # Submit when the queue is empty, so the figure is dispatch latency, not waiting.
                    job = client.post("/v1/benchmarks", json=spec).json()
                    job = stack.wait_job(client, job["id"], until=("running", "succeeded", "failed"), timeout=120)
                    created = datetime.fromisoformat(job["created_at"])
                    started = datetime.fromisoformat(job["started_at"])
                    latencies.append((started - created).total_seconds() * 1000)
                arr = np.asarray(latencies)
        print(f"submit -> running on Redis (+PostgreSQL, S3): {jobs} jobs, p50 {np.percentile(arr, 50):.0f} ms, "
              f"p90 {np.percentile(arr, 90):.0f} ms, p99 {np.percentile(arr, 99):.0f} ms, max {arr.max():.0f} ms")
    finally:
        moto.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upload-gib", type=float, default=2.0)
    parser.add_argument("--jobs", type=int, default=100)
    args = parser.parse_args()
    bench_upload(args.upload_gib)
    bench_submit_latency(args.jobs)


if __name__ == "__main__":
    main()
