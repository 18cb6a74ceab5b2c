"""The database (PostgreSQL) restarts while a job runs: briefly (the service reconnects and the
job keeps its lease), and for longer than the engine takes (the worker cannot record the result,
the lease runs out, the reaper requeues the job and a second attempt records it). Either way
every job ends succeeded with one set of artifacts."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from bench.stack import ServiceStack
from tests.faults.checks import (
    assert_one_artifact_set,
    production_env,
    s3_client,
    submit,
    upload_model,
    wait_engine,
    wait_terminal,
)
from tests.faults.servers import PrivatePostgres, PrivateRedis


@pytest.mark.parametrize("down_seconds", [0.5, 6.0], ids=["brief", "past-the-engine"])
def test_jobs_survive_a_database_restart(
    down_seconds: float, tmp_path: Path, private_postgres: PrivatePostgres, private_redis: PrivateRedis,
    moto_endpoint: str, model_file: Path,
) -> None:
    database_url = private_postgres.create_database(f"faults_{uuid.uuid4().hex[:8]}")
    # The production default: no wake-up may wait for the reaper's ten-minute resend of queued jobs.
    env = production_env(tmp_path, database_url=database_url, broker_url=private_redis.url, s3_endpoint=moto_endpoint,
                         SHRINK_REQUEUE_QUEUED_AFTER_SECONDS="600")
    with ServiceStack(env, tmp_path) as stack:
        client = stack.new_tenant()
        model_id = upload_model(stack, client, model_file)
        running = submit(client, model_id)
        waiting = submit(client, model_id)
        wait_engine(stack, client, running)

        private_postgres.stop("immediate")  # a crash: every connection cut
        # Meanwhile the API answers 503 with its error shape and when to retry, never a traceback.
        down = client.get(f"/v1/jobs/{running}")
        assert down.status_code == 503 and down.json()["error"]["code"] == "database_unavailable", down.text
        assert down.headers["Retry-After"] == "5"
        assert "Traceback" not in down.text and "psycopg" not in down.text, down.text
        time.sleep(down_seconds)
        private_postgres.start()
        after = submit(client, model_id)  # the API's pool reconnects (pool_pre_ping)

        jobs = wait_terminal(stack, client, [running, waiting, after], timeout=120)
        s3 = s3_client(moto_endpoint)
        for job in jobs.values():
            assert job["state"] == "succeeded", f"{job}\n{stack.log_tail()}\n{private_postgres.log_tail()}"
            assert_one_artifact_set(client, s3, env["SHRINK_S3_BUCKET"], job)
        if down_seconds > 4:
            # Down past the engine's run and the lease: the first attempt could not be recorded.
            assert jobs[running]["attempts"] == 2, jobs[running]
        listed = client.get("/v1/jobs", params={"limit": 50}).json()["items"]
        assert sorted(j["id"] for j in listed) == sorted([running, waiting, after])
