"""examples/webhook_receiver.py receiving what the service started as processes delivers (loopback
receivers allowed, tests/examples/conftest.py): a job's delivery is verified and handled once; a
tampered body, a repeat and another secret's signature are answered as documented; the command,
reading the secret from the API after a rotation, prints the job it received."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from shrink_client import Client
from standardwebhooks import Webhook

from bench.stack import ServiceStack
from tests.examples.conftest import EXAMPLES, RECIPE_SPEC

EXAMPLE = EXAMPLES / "webhook_receiver.py"
# A recipe: the delivery is what is tested here, and a recipe job takes seconds.
SPEC: dict[str, Any] = RECIPE_SPEC
OTHER_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY="


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("webhook_receiver", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def client(examples_stack: ServiceStack, api_key: str) -> Iterator[Client]:
    with Client(url=examples_stack.base, api_key=api_key) as c:
        yield c


@pytest.fixture
def api(examples_stack: ServiceStack, api_key: str) -> Iterator[httpx.Client]:
    """The routes the SDK has no method for: webhook attempts and the secret."""
    with httpx.Client(base_url=examples_stack.base, headers={"Authorization": f"Bearer {api_key}"}) as c:
        yield c


def _delivered(api: httpx.Client, job_id: str, timeout: float = 60) -> list[dict[str, Any]]:
    """The job's delivery attempts, once one has been delivered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attempts = api.get(f"/v1/jobs/{job_id}/webhooks").json()["items"]
        if any(a["state"] == "delivered" for a in attempts):
            return attempts
        time.sleep(0.3)
    raise AssertionError(f"job {job_id}'s webhook was not delivered: {attempts}")


def test_a_delivered_job_is_verified_and_handled_once_and_a_tampered_one_refused(
    example: ModuleType, examples_stack: ServiceStack, api_key: str, client: Client, api: httpx.Client, model_file: Path
) -> None:
    handled: list[Any] = []
    receiver = example.WebhookReceiver(("127.0.0.1", 0), example.fetch_secret(examples_stack.base, api_key), handled.append)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/shrink"
    try:
        job = client.submit(client.upload_model(model_file), **SPEC, webhook_url=url).wait(progress=False)
        [attempt] = _delivered(api, job.id)
        assert attempt["status_code"] == 204
        [delivery] = handled
        assert delivery.record == {"id": job.id, "state": "succeeded", "result": job.result, "error": None}

        def post(body: bytes, headers: dict[str, str], path: str = "/hooks/shrink") -> int:
            return httpx.post(url.replace("/hooks/shrink", path), content=body, headers=headers).status_code

        assert post(delivery.body.replace(b"succeeded", b"failed!!!"), delivery.headers) == 400
        assert post(delivery.body, delivery.headers) == 200  # a repeat: answered, not handled again
        assert post(delivery.body, delivery.headers, "/elsewhere") == 404
        now = datetime.now(UTC)
        foreign = Webhook(OTHER_SECRET).sign("msg_other", now, delivery.body.decode())
        assert post(delivery.body, {"webhook-id": "msg_other", "webhook-timestamp": str(int(now.timestamp())),
                                    "webhook-signature": foreign}) == 400
        assert len(handled) == 1
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_a_handler_that_fails_answers_500_so_shrink_retries(example: ModuleType) -> None:
    secret = OTHER_SECRET

    def fail(delivery: Any) -> None:
        raise RuntimeError("the deployment system is down")

    receiver = example.WebhookReceiver(("127.0.0.1", 0), secret, fail)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        body, now = '{"id": "job_x", "state": "succeeded", "result": {}, "error": null}', datetime.now(UTC)
        headers = {"webhook-id": "msg_job_x", "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": Webhook(secret).sign("msg_job_x", now, body)}
        answer = httpx.post(f"http://127.0.0.1:{receiver.server_address[1]}/hooks/shrink", content=body, headers=headers)
        assert answer.status_code == 500 and not receiver.seen("msg_job_x")
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_the_command_reads_its_secret_from_the_api_after_a_rotation_and_prints_each_job(
    examples_stack: ServiceStack, api_key: str, client: Client, api: httpx.Client, model_file: Path
) -> None:
    before = api.get("/v1/webhooks/secret").json()["secret"]
    rotated = api.post("/v1/webhooks/secret/rotate").json()
    assert rotated["secret"] != before and rotated["previous_secret_expires_at"]
    env = {"PATH": "/usr/bin:/bin", "SHRINK_URL": examples_stack.base, "SHRINK_API_KEY": api_key}
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), "--port", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        listening = proc.stderr.readline()
        assert listening.startswith("listening on http://127.0.0.1:"), listening
        url = listening.split()[-1]
        job = client.submit(client.upload_model(model_file), **SPEC, webhook_url=url).wait(progress=False)
        [attempt] = _delivered(api, job.id)
        assert attempt["status_code"] == 204
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # seen once in a full run on 2 loaded cores: SIGTERM not acted on in 10 s
            proc.kill()
            out, _ = proc.communicate(timeout=10)
    assert f'"id": "{job.id}"' in out and '"state": "succeeded"' in out
