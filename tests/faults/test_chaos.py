"""Chaos: 20 faults (workers SIGKILLed, the API SIGKILLed and restarted, the broker and the
database crashed and restarted) over a handful of small jobs. At the end every job has ended,
none was lost or doubled, and each succeeded job has exactly one set of artifacts, through the
API and in the bucket.

The schedule comes from a seed, printed at the start: SHRINK_CHAOS_SEED=<seed> replays it (the
faults in the same order at the same times; which job each one meets still depends on timing)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psutil

from bench.stack import ServiceStack
from tests.faults.checks import (
    SLOW_BENCH,
    assert_one_artifact_set,
    production_env,
    s3_client,
    stored_files,
    submit,
    upload_model,
    wait_terminal,
)
from tests.faults.servers import PrivatePostgres, PrivateRedis

FAULTS = ["worker"] * 8 + ["api"] * 4 + ["broker"] * 4 + ["database"] * 4
SPAN_SECONDS = 100.0
JOBS = 10
WORKERS = 2


def schedule(seed: int) -> list[tuple[float, str]]:
    rng = random.Random(seed)
    kinds = FAULTS[:]
    rng.shuffle(kinds)
    times = sorted(round(rng.uniform(0, SPAN_SECONDS), 1) for _ in kinds)
    return list(zip(times, kinds, strict=True))


def _pick_worker(stack: ServiceStack, job_ids: list[str]) -> subprocess.Popen[bytes]:
    """The worker whose sandbox runs an engine, if one does (the fault that costs the most),
    else the oldest live one."""
    live = {w.pid: w for w in stack.workers if w.poll() is None}
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "engine.cli" in cmdline and any(j in cmdline for j in job_ids):
            with contextlib.suppress(psutil.Error):
                for parent in proc.parents():
                    if parent.pid in live:
                        return live[parent.pid]
    return next(iter(live.values()))


def test_chaos(tmp_path: Path, private_postgres: PrivatePostgres, private_redis: PrivateRedis, moto_endpoint: str,
               model_file: Path) -> None:
    seed = int(os.environ.get("SHRINK_CHAOS_SEED") or random.SystemRandom().randrange(1 << 31))
    plan = schedule(seed)
    print(f"chaos seed {seed} (replay: SHRINK_CHAOS_SEED={seed}): " + ", ".join(f"{t:g}s {k}" for t, k in plan))

    database_url = private_postgres.create_database(f"chaos_{uuid.uuid4().hex[:8]}")
    # More attempts than the default 3: twenty faults over eight jobs may meet one job often, and
    # the point here is that they all end, once, with one result.
    env = production_env(tmp_path, database_url=database_url, broker_url=private_redis.url, s3_endpoint=moto_endpoint,
                         SHRINK_MAX_ATTEMPTS="8")
    with ServiceStack(env, tmp_path) as stack:
        for _ in range(WORKERS - 1):
            stack.start_worker()
        client = stack.new_tenant()
        model_id = upload_model(stack, client, model_file)
        job_ids = [submit(client, model_id, benchmark=SLOW_BENCH) for _ in range(4)]
        submit_after = {3 * (i + 1) for i in range(JOBS - len(job_ids))}  # one more job after every third fault

        start = time.monotonic()
        done: list[str] = []
        for index, (at, kind) in enumerate(plan):
            time.sleep(max(0.0, start + at - time.monotonic()))
            if kind == "worker":
                stack.kill_worker(_pick_worker(stack, job_ids))
                stack.start_worker()
            elif kind == "api":
                stack.restart_api()
            elif kind == "broker":
                private_redis.restart(signal.SIGKILL, down_seconds=1)
            else:
                private_postgres.restart("immediate", down_seconds=1)
            done.append(f"{time.monotonic() - start:.1f}s {kind}")
            if index + 1 in submit_after:
                job_ids.append(submit(client, model_id, benchmark=SLOW_BENCH))
        print("faults done:", ", ".join(done))

        jobs = wait_terminal(stack, client, job_ids, timeout=150)
        summary = {j: (job["state"], job["attempts"], (job.get("error") or {}).get("code")) for j, job in jobs.items()}
        print("jobs:", summary)
        context = f"seed {seed}: {summary}\n{stack.log_tail()}"

        s3 = s3_client(moto_endpoint)
        for job in jobs.values():
            if job["state"] == "succeeded":
                assert_one_artifact_set(client, s3, env["SHRINK_S3_BUCKET"], job)
            else:
                # The only way a job may fail here: the faults met it on every allowed attempt.
                assert job["error"]["code"] == "too_many_attempts", context
                assert client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"] == [], context
                assert len(stored_files(s3, env["SHRINK_S3_BUCKET"], job["id"])) <= 3, context
        assert any(job["state"] == "succeeded" for job in jobs.values()), context
        # Nothing lost, nothing doubled: the tenant has exactly the jobs submitted.
        listed = client.get("/v1/jobs", params={"limit": 50}).json()["items"]
        assert sorted(j["id"] for j in listed) == sorted(job_ids), context
