"""Webhooks against a real receiver on 127.0.0.1: Standard Webhooks signatures that the
`standardwebhooks` package verifies, secret rotation, retries recorded and listed per tenant, one
DNS resolution per attempt (no rebinding), and TLS verified against the host name while connecting
to the resolved address."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from core.db import session_scope
from core.jobs import reaper
from core.models import Job, StoredModel, Tenant, WebhookDelivery, utcnow
from core.settings import get_settings
from core.tenants import service as tenants
from core.webhooks import delivery, transport
from core.webhooks.urls import Target


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next status of ``statuses`` (the last one repeated)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hooks/shrink?x=1"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                state.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                status = state.statuses[min(len(state.requests), len(state.statuses)) - 1]
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hooks(db_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Private receivers allowed, retries due at once, short timeouts."""
    monkeypatch.setenv("SHRINK_ALLOW_PRIVATE_WEBHOOKS", "true")
    monkeypatch.setenv("SHRINK_WEBHOOK_RETRY_DELAYS_SECONDS", "[0]")
    monkeypatch.setenv("SHRINK_WEBHOOK_TIMEOUT_SECONDS", "2")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _tenant(name: str) -> tuple[str, str]:
    with session_scope() as s:
        tenant = tenants.create_tenant(s, name)
        _, key = tenants.create_api_key(s, tenant.id)
        s.add(StoredModel(id=f"mdl_{name}", tenant_id=tenant.id, name="m", format="onnx", size_bytes=1, sha256="0" * 64,
                          storage_key="k", info={}))
        return tenant.id, key


def _finished_job(tenant_id: str, url: str, job_id: str = "job_hook1") -> str:
    with session_scope() as s:
        model_id = s.query(StoredModel.id).filter_by(tenant_id=tenant_id).scalar()
        s.add(Job(id=job_id, tenant_id=tenant_id, model_id=model_id, state="succeeded", webhook_url=url,
                  result={"best_candidate_id": f"cand_{job_id}_1"}, finished_at=utcnow()))
    return job_id


def _client(key: str) -> TestClient:
    from api.app import create_app

    client = TestClient(create_app())
    client.headers["Authorization"] = f"Bearer {key}"
    return client


def _secret(key: str) -> str:
    answer = _client(key).get("/v1/webhooks/secret")
    assert answer.status_code == 200, answer.text
    return answer.json()["secret"]


def test_a_delivery_verifies_with_standardwebhooks_and_a_tampered_body_does_not(hooks: None, receiver: Receiver) -> None:
    tenant_id, key = _tenant("acme")
    job_id = _finished_job(tenant_id, receiver.url())
    assert delivery.deliver_first(job_id) == "delivered"

    [got] = receiver.requests
    secret = _secret(key)
    assert secret.startswith("whsec_")
    record = Webhook(secret).verify(got.body, got.headers)
    assert record == {"id": job_id, "state": "succeeded", "result": {"best_candidate_id": f"cand_{job_id}_1"}, "error": None}
    assert got.headers["webhook-id"] == f"msg_{job_id}" and got.headers["content-type"] == "application/json"
    tampered = got.body.replace(b"succeeded", b"failed!!!")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, got.headers)
    with pytest.raises(WebhookVerificationError):  # another tenant's secret
        Webhook(_secret(_tenant("other")[1])).verify(got.body, got.headers)


def test_the_worker_records_the_first_attempt_when_a_job_ends(hooks: None, receiver: Receiver) -> None:
    from worker.runner import _notify

    receiver.statuses = [502]
    tenant_id, _ = _tenant("acme")
    job_id = _finished_job(tenant_id, receiver.url())
    _notify(job_id)  # what the worker calls once a job has finished
    assert len(receiver.requests) == 1
    with session_scope() as s:
        first = s.get(WebhookDelivery, delivery.delivery_id(job_id, 1))
        retry = s.get(WebhookDelivery, delivery.delivery_id(job_id, 2))
        assert first is not None and (first.state, first.status_code) == ("failed", 502)
        assert retry is not None and retry.state == "pending" and retry.due_at == first.next_attempt_at


def test_a_second_notify_of_the_same_job_sends_nothing_more(hooks: None, receiver: Receiver) -> None:
    tenant_id, _ = _tenant("acme")
    job_id = _finished_job(tenant_id, receiver.url())
    assert delivery.deliver_first(job_id) == "delivered"
    assert delivery.deliver_first(job_id) is None
    assert len(receiver.requests) == 1


def test_a_failing_receiver_gets_retries_with_one_webhook_id_all_listed(hooks: None, receiver: Receiver) -> None:
    receiver.statuses = [500, 500, 200]
    tenant_id, key = _tenant("acme")
    job_id = _finished_job(tenant_id, receiver.url())
    assert delivery.deliver_first(job_id) == "failed"
    reaper.sweep()  # the reaper sends the due retry
    reaper.sweep()
    reaper.sweep()  # nothing is left to send

    assert [r.headers["webhook-id"] for r in receiver.requests] == [f"msg_{job_id}"] * 3
    secret = _secret(key)
    for got in receiver.requests:
        Webhook(secret).verify(got.body, got.headers)
    answer = _client(key).get(f"/v1/jobs/{job_id}/webhooks")
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [(i["attempt"], i["state"], i["status_code"]) for i in items] == [(1, "failed", 500), (2, "failed", 500), (3, "delivered", 200)]
    assert all(i["message_id"] == f"msg_{job_id}" for i in items)
    assert items[0]["error"] == "answered 500" and items[2]["error"] is None
    assert items[0]["next_attempt_at"] is not None and items[1]["next_attempt_at"] is not None
    assert items[2]["next_attempt_at"] is None


def test_retries_back_off_and_stop_at_the_end_of_the_window(hooks: None, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver.statuses = [503]
    monkeypatch.setenv("SHRINK_WEBHOOK_RETRY_DELAYS_SECONDS", "[60, 600]")
    monkeypatch.setenv("SHRINK_WEBHOOK_RETRY_WINDOW_SECONDS", "3600")
    get_settings.cache_clear()
    tenant_id, _ = _tenant("acme")
    job_id = _finished_job(tenant_id, receiver.url())
    assert delivery.deliver_first(job_id) == "failed"
    assert delivery.send_due() == []  # not due for a minute

    def let_time_pass(seconds: float) -> None:
        # Every recorded time moves back instead of the clock moving forward.
        with session_scope() as s:
            for row in s.query(WebhookDelivery).filter_by(job_id=job_id):
                for name in ("due_at", "started_at", "finished_at", "next_attempt_at"):
                    if getattr(row, name) is not None:
                        setattr(row, name, getattr(row, name) - dt.timedelta(seconds=seconds))

    gaps = []
    for attempt in range(2, 20):
        with session_scope() as s:
            pending = s.get(WebhookDelivery, delivery.delivery_id(job_id, attempt))
            if pending is None:
                break
            previous = s.get(WebhookDelivery, delivery.delivery_id(job_id, attempt - 1))
            gap = (pending.due_at - previous.finished_at).total_seconds()
        gaps.append(round(gap))
        let_time_pass(gap)
        assert delivery.send_due() == [delivery.delivery_id(job_id, attempt)]
    # 60 s, then 600 s repeated, while the next attempt falls within the hour after the first.
    assert gaps == [60, 600, 600, 600, 600, 600]
    with session_scope() as s:
        last = s.get(WebhookDelivery, delivery.delivery_id(job_id, 7))
        assert last is not None and last.state == "failed" and last.next_attempt_at is None


def test_two_reapers_never_send_the_same_attempt(hooks: None, receiver: Receiver) -> None:
    receiver.statuses = [500, 200]
    tenant_id, _ = _tenant("acme")
    job_id = _finished_job(tenant_id, receiver.url())
    assert delivery.deliver_first(job_id) == "failed"
    barrier = threading.Barrier(4)
    claimed: list[list[str]] = []

    def reap() -> None:
        barrier.wait()
        claimed.append(delivery.send_due())

    threads = [threading.Thread(target=reap) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(sum(claimed, [])) == [delivery.delivery_id(job_id, 2)]
    assert len(receiver.requests) == 2


def test_another_tenants_job_is_404_on_the_list(hooks: None, receiver: Receiver) -> None:
    tenant_id, key = _tenant("acme")
    job_id = _finished_job(tenant_id, receiver.url())
    delivery.deliver_first(job_id)
    _, other_key = _tenant("other")
    answer = _client(other_key).get(f"/v1/jobs/{job_id}/webhooks")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "job_not_found"
    assert _client(key).get(f"/v1/jobs/{job_id}/webhooks").status_code == 200


def test_after_a_rotation_deliveries_carry_both_signatures_until_the_overlap_ends(hooks: None, receiver: Receiver) -> None:
    tenant_id, key = _tenant("acme")
    client = _client(key)
    old = _secret(key)
    rotated = client.post("/v1/webhooks/secret/rotate", headers={"Idempotency-Key": "rot-1"})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old and new.startswith("whsec_") and rotated.json()["previous_secret_expires_at"] is not None
    # A repeated key does not rotate again (which would drop the old secret early).
    again = client.post("/v1/webhooks/secret/rotate", headers={"Idempotency-Key": "rot-1"})
    assert again.json()["secret"] == new and _secret(key) == new

    delivery.deliver_first(_finished_job(tenant_id, receiver.url(), "job_during"))
    got = receiver.requests[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(got.body, got.headers)
    Webhook(new).verify(got.body, got.headers)

    with session_scope() as s:
        s.execute(update(Tenant).where(Tenant.id == tenant_id).values(webhook_secret_previous_expires_at=utcnow() - dt.timedelta(seconds=1)))
    delivery.deliver_first(_finished_job(tenant_id, receiver.url(), "job_after"))
    got = receiver.requests[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(got.body, got.headers)
    assert client.get("/v1/webhooks/secret").json()["previous_secret_expires_at"] is None


# --- one resolution, and the connection goes to its answer ---------------------------------------


def _scripted_dns(monkeypatch: pytest.MonkeyPatch, host: str, answers: list[str]) -> list[str]:
    """``socket.getaddrinfo`` answers ``host`` with the next of ``answers`` (a DNS server that
    changes its answer after the first query); other names resolve as usual. Returns the log of
    the answers given."""
    real = socket.getaddrinfo
    given: list[str] = []

    def getaddrinfo(name: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if name != host:
            return real(name, port, *args, **kwargs)
        address = answers[min(len(given), len(answers) - 1)]
        given.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return given


def test_a_delivery_connects_to_the_one_address_resolved_and_names_the_host(hooks: None, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    given = _scripted_dns(monkeypatch, "hooks.example.com", ["127.0.0.1", "127.0.0.9"])
    tenant_id, _ = _tenant("acme")
    job_id = _finished_job(tenant_id, receiver.url("hooks.example.com"))
    assert delivery.deliver_first(job_id) == "delivered"
    assert given == ["127.0.0.1"]
    assert receiver.requests[0].headers["host"] == f"hooks.example.com:{receiver.port}"


def test_a_rebinding_answer_after_the_check_is_never_connected_to(hooks: None, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # The check sees a public address; a second query would answer loopback, where the receiver
    # stands for an internal service. The delivery must go to the public address (unreachable
    # here, so it fails) and never reach the receiver.
    monkeypatch.setenv("SHRINK_ALLOW_PRIVATE_WEBHOOKS", "false")
    monkeypatch.setenv("SHRINK_WEBHOOK_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("SHRINK_WEBHOOK_RETRY_WINDOW_SECONDS", "0")
    get_settings.cache_clear()
    given = _scripted_dns(monkeypatch, "hooks.example.com", ["93.184.215.14", "127.0.0.1"])
    tenant_id, key = _tenant("acme")
    job_id = _finished_job(tenant_id, receiver.url("hooks.example.com"))
    assert delivery.deliver_first(job_id) == "failed"
    assert given == ["93.184.215.14"]
    assert receiver.requests == []
    [attempt] = _client(key).get(f"/v1/jobs/{job_id}/webhooks").json()["items"]
    assert attempt["state"] == "failed" and attempt["error"] and attempt["next_attempt_at"] is None


@pytest.mark.parametrize("address", ["127.0.0.1", "224.0.0.1", "255.255.255.255", "240.0.0.1", "::ffff:10.0.0.1"])
def test_non_public_answers_are_refused_at_delivery(hooks: None, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    monkeypatch.setenv("SHRINK_ALLOW_PRIVATE_WEBHOOKS", "false")
    monkeypatch.setenv("SHRINK_WEBHOOK_RETRY_WINDOW_SECONDS", "0")
    get_settings.cache_clear()
    real = socket.getaddrinfo
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    monkeypatch.setattr(socket, "getaddrinfo", lambda name, port, *a, **k: [(family, socket.SOCK_STREAM, 6, "", (address, port))]
                        if name == "hooks.example.com" else real(name, port, *a, **k))
    tenant_id, _ = _tenant("acme")
    job_id = _finished_job(tenant_id, receiver.url("hooks.example.com"))
    assert delivery.deliver_first(job_id) == "failed"
    assert receiver.requests == []
    with session_scope() as s:
        row = s.get(WebhookDelivery, delivery.delivery_id(job_id, 1))
        assert row is not None and "non-public address" in (row.error or "")


# --- https: the certificate is checked against the host name, not the address -------------------


def _tls_server(tmp_path: Path, host: str) -> tuple[ssl.SSLContext, int, list[str | None], ThreadingHTTPServer]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False).sign(ca_key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    server_names: list[str | None] = []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    def record_name(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        server_names.append(name)

    server_ctx.sni_callback = record_name

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client_ctx = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return client_ctx, server.server_address[1], server_names, server


def test_https_is_verified_against_the_host_name_while_connecting_to_the_address(tmp_path: Path) -> None:
    trust, port, server_names, server = _tls_server(tmp_path, "hooks.example.com")
    try:
        target = Target(host="hooks.example.com", port=port, address="127.0.0.1")
        body = json.dumps({"id": "job_x"}).encode()
        status = transport.post(f"https://hooks.example.com:{port}/in", target, body, {}, timeout=5, verify=trust)
        assert status == 204 and server_names == ["hooks.example.com"]
        # A certificate for another name is refused: verification is real, not switched off.
        other = Target(host="other.example.com", port=port, address="127.0.0.1")
        with pytest.raises(Exception, match="certificate|hostname|CERTIFICATE"):
            transport.post(f"https://other.example.com:{port}/in", other, body, {}, timeout=5, verify=trust)
    finally:
        server.shutdown()
        server.server_close()
