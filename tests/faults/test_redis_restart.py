"""The broker (Redis) restarts, losing every message, while one job runs and others wait in its
queue: every job still ends succeeded, once, with one set of artifacts. The job rows in SQL are
the truth; the worker reconnects, and the reaper sends the lost wake-ups again."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from bench.stack import ServiceStack
from tests.faults.checks import (
    SLOW_BENCH,
    assert_one_artifact_set,
    logged,
    production_env,
    s3_client,
    submit,
    upload_model,
    wait_engine,
)
from tests.faults.servers import PrivateRedis


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_jobs_survive_a_broker_restart(
    sig: int, tmp_path: Path, pg_url: str, moto_endpoint: str, private_redis: PrivateRedis, model_file: Path
) -> None:
    env = production_env(tmp_path, database_url=pg_url, broker_url=private_redis.url, s3_endpoint=moto_endpoint)
    with ServiceStack(env, tmp_path) as stack:
        client = stack.new_tenant()
        model_id = upload_model(stack, client, model_file)
        running = submit(client, model_id, benchmark=SLOW_BENCH)  # still at work when Redis goes
        wait_engine(stack, client, running)
        # One worker runs one job at a time: these two wait in Redis' list while the first runs.
        waiting = [submit(client, model_id) for _ in range(2)]
        assert {client.get(f"/v1/jobs/{j}").json()["state"] for j in waiting} == {"queued"}

        private_redis.stop(sig)
        # Submitted while the broker is down: the row is committed, the wake-up cannot be sent;
        # the API answers at once all the same and the reaper sends it later.
        started = time.monotonic()
        waiting.append(submit(client, model_id))
        assert time.monotonic() - started < 15
        private_redis.start()  # empty: it runs without persistence, so every wake-up is lost
        # A job submitted after the restart must not depend on the connection the API lost.
        waiting.append(submit(client, model_id))

        jobs = [stack.wait_job(client, j, timeout=120) for j in [running, *waiting]]
        s3 = s3_client(moto_endpoint)
        for job in jobs:
            assert job["state"] == "succeeded", f"{job}\n{stack.log_tail()}"
            assert_one_artifact_set(client, s3, env["SHRINK_S3_BUCKET"], job)
        # The running job was not started again: its worker kept its lease through the restart.
        assert jobs[0]["attempts"] == 1, jobs[0]
        # Recovered by the reaper, not by the broker: the lost wake-ups were sent again.
        assert waiting[2] in {r["job_id"] for r in logged(stack, "job.enqueue_failed")}
        assert set(waiting[:3]) <= {r["job_id"] for r in logged(stack, "job.requeued")}
        listed = client.get("/v1/jobs", params={"limit": 50}).json()["items"]
        assert sorted(j["id"] for j in listed) == sorted([running, *waiting])
