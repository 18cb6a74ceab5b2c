"""Object storage fails for a window (every request answered 500/503, or left without an answer)
and then heals: a job whose inputs are read and whose artifacts are stored during the window
ends succeeded with one set of artifacts; one whose storage stays down longer than the service
retries fails with `storage_unavailable`, never stuck and never with artifacts listed.

The window lasts SHRINK_TEST_S3_FAULT_SECONDS (20 s by default, to fit the CI budget; the
service's default retry budget, SHRINK_S3_RETRY_SECONDS, is 120 s, and a run with 60 passes the
same way: docs/operations.md, "What each fault does to a job")."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bench.stack import ServiceStack
from tests.faults.checks import (
    assert_one_artifact_set,
    production_env,
    s3_client,
    stored_files,
    submit,
    upload_model,
    wait_engine,
    wait_terminal,
)
from tests.faults.s3_proxy import ERROR, HANG, S3FaultProxy
from tests.faults.servers import PrivateRedis

WINDOW_SECONDS = float(os.environ.get("SHRINK_TEST_S3_FAULT_SECONDS", "20"))


@pytest.mark.parametrize("mode", [ERROR, HANG])
def test_jobs_ride_out_a_storage_outage(
    mode: str, tmp_path: Path, pg_url: str, private_redis: PrivateRedis, moto_endpoint: str, s3_proxy: S3FaultProxy,
    model_file: Path,
) -> None:
    # A hung request ends by timeout (5 s here, 120 s by default) and is tried again.
    extra = {"SHRINK_S3_READ_TIMEOUT_SECONDS": "5"} if mode == HANG else {}
    env = production_env(tmp_path, database_url=pg_url, broker_url=private_redis.url, s3_endpoint=s3_proxy.url, **extra)
    with ServiceStack(env, tmp_path) as stack:
        stack.start_worker()  # a free worker for the job submitted during the window
        client = stack.new_tenant()
        model_id = upload_model(stack, client, model_file)
        storing = submit(client, model_id)
        wait_engine(stack, client, storing)

        s3_proxy.fail(mode)
        started = time.monotonic()
        fetching = submit(client, model_id)  # its worker reads its model during the window
        time.sleep(max(0.0, WINDOW_SECONDS - (time.monotonic() - started)))
        s3_proxy.heal()

        jobs = wait_terminal(stack, client, [storing, fetching], timeout=WINDOW_SECONDS + 150)
        s3 = s3_client(moto_endpoint)
        for job in jobs.values():
            assert job["state"] == "succeeded", f"{job}\n{stack.log_tail()}"
            assert job["attempts"] == 1, job  # ridden out by retries, not by running the job again
            assert_one_artifact_set(client, s3, env["SHRINK_S3_BUCKET"], job)
        # The fault really met both jobs: the first one's artifacts; the second one's first read
        # (its worker's look at the bucket, or its model), the only other use of storage meanwhile.
        assert s3_proxy.refused_paths(f"/jobs/{storing}/"), s3_proxy.refused
        assert [r for r in s3_proxy.refused if "/jobs/" not in r.path], s3_proxy.refused


def test_a_job_fails_clearly_when_storage_stays_down(
    tmp_path: Path, pg_url: str, private_redis: PrivateRedis, moto_endpoint: str, s3_proxy: S3FaultProxy,
    model_file: Path,
) -> None:
    env = production_env(tmp_path, database_url=pg_url, broker_url=private_redis.url, s3_endpoint=s3_proxy.url,
                         SHRINK_S3_RETRY_SECONDS="3")
    with ServiceStack(env, tmp_path) as stack:
        client = stack.new_tenant()
        model_id = upload_model(stack, client, model_file)
        job_id = submit(client, model_id)
        wait_engine(stack, client, job_id)
        s3_proxy.fail(ERROR)
        try:
            job = wait_terminal(stack, client, [job_id], timeout=60)[job_id]
        finally:
            s3_proxy.heal()

        assert job["state"] == "failed", job
        assert job["error"]["code"] == "storage_unavailable", job["error"]
        assert "/" not in job["error"]["message"] and "try again" in job["error"]["message"], job["error"]
        assert client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"] == []
        assert client.get(f"/v1/jobs/{job_id}/report").status_code == 409
        # Nothing reached the bucket twice: at most the one set of keys the job writes.
        stored = stored_files(s3_client(moto_endpoint), env["SHRINK_S3_BUCKET"], job_id)
        assert len(stored) == len(set(stored)) <= 3, stored


def test_only_failures_that_may_pass_are_retried() -> None:
    """A refusal (403, 404) fails at once; 5xx, throttling, cut connections and timeouts are
    retried, also when boto3's transfer wraps them."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

    from core.storage import _transient

    def answer(status: int, code: str) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

    def wrapped(cause: Exception) -> S3UploadFailedError:
        try:
            raise cause
        except Exception:
            try:
                raise S3UploadFailedError("Failed to upload")  # as boto3 does: chained implicitly
            except S3UploadFailedError as exc:
                return exc

    assert _transient(answer(503, "SlowDown")) and _transient(answer(500, "InternalError"))
    assert _transient(answer(400, "RequestTimeout"))
    assert _transient(wrapped(answer(503, "SlowDown")))
    assert _transient(EndpointConnectionError(endpoint_url="http://s3"))
    assert _transient(ReadTimeoutError(endpoint_url="http://s3"))
    assert not _transient(answer(403, "AccessDenied")) and not _transient(answer(404, "NoSuchKey"))
    assert not _transient(wrapped(answer(403, "AccessDenied")))
    assert not _transient(ValueError("not storage"))
