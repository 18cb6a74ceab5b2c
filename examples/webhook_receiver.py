"""A receiver for Shrink's job webhooks, on the standard library's HTTP server: it checks each
delivery's Standard Webhooks signature with the `standardwebhooks` package and the tenant's
secret, hands each job's record to ``handle`` once, and answers so that Shrink retries only what
was not handled.

    SHRINK_URL=... SHRINK_API_KEY=... python examples/webhook_receiver.py --port 8080
    # then submit jobs with "webhook_url": "https://receiver.example.com:8080/hooks/shrink"

The secret comes from SHRINK_WEBHOOK_SECRET, or is read once from the API
(`GET /v1/webhooks/secret`) with SHRINK_URL and SHRINK_API_KEY. After
`POST /v1/webhooks/secret/rotate`, deliveries carry a signature by each secret for 24 hours:
restart the receiver (or give it the new secret) within that time. Answers:

- 204: verified and handled;
- 200: verified, and this delivery (its `webhook-id`, the same on every attempt) was handled
  before: nothing is done twice;
- 400: no valid signature (not from this Shrink, altered, or older than 5 minutes);
- 404, 411, 413: another path, no length, a body over 1 MiB;
- 500: ``handle`` raised; Shrink tries again later (docs/operations.md, webhooks).

Needs `pip install standardwebhooks httpx`. Run it behind TLS (a reverse proxy) in production."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

MAX_BODY = 1 << 20  # a job's record is a few kB
REMEMBERED = 10_000  # delivery ids kept to answer repeats


@dataclass(frozen=True)
class Delivery:
    id: str  # the webhook-id header: the same on every attempt of one job's delivery
    record: dict[str, Any]  # the job: {"id", "state", "result", "error"}
    body: bytes
    headers: dict[str, str]


def fetch_secret(url: str, api_key: str) -> str:
    """The tenant's current secret, from the API."""
    answer = httpx.get(f"{url.rstrip('/')}/v1/webhooks/secret", headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    answer.raise_for_status()
    return str(answer.json()["secret"])


class WebhookReceiver(ThreadingHTTPServer):
    """Serves POST ``path``; ``handle`` runs on the request's thread, once per delivery id."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], secret: str, handle: Callable[[Delivery], None],
                 path: str = "/hooks/shrink"):
        self.webhook = Webhook(secret)
        self.handle = handle
        self.hook_path = path
        self.handled: OrderedDict[str, None] = OrderedDict()
        self.lock = threading.Lock()
        super().__init__(address, _Handler)

    def set_secret(self, secret: str) -> None:
        self.webhook = Webhook(secret)

    def seen(self, delivery_id: str) -> bool:
        with self.lock:
            return delivery_id in self.handled

    def remember(self, delivery_id: str) -> None:
        with self.lock:
            self.handled[delivery_id] = None
            while len(self.handled) > REMEMBERED:
                self.handled.popitem(last=False)


class _Handler(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if urlsplit(self.path).path != self.server.hook_path:
            return self._answer(404)
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return self._answer(411)
        if int(length) > MAX_BODY:
            return self._answer(413)
        body = self.rfile.read(int(length))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            # Verify the raw bytes, before any parsing: a re-serialized body would not match.
            record = self.server.webhook.verify(body, headers)
        except WebhookVerificationError:
            return self._answer(400)
        delivery_id = headers["webhook-id"]
        if self.server.seen(delivery_id):
            return self._answer(200)
        try:
            self.server.handle(Delivery(delivery_id, record, body, headers))
        except Exception as exc:  # any failure: answer 500, and Shrink retries
            self.log_error("handling %s failed: %r", delivery_id, exc)
            return self._answer(500)
        self.server.remember(delivery_id)
        self._answer(204)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def print_record(delivery: Delivery) -> None:
    """The default handler: one JSON line per job. Replace it with what a finished job should
    start (a deployment, a notification)."""
    print(json.dumps(delivery.record, sort_keys=True), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Receive and verify Shrink's job webhooks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--path", default="/hooks/shrink")
    args = parser.parse_args(argv)
    secret = os.environ.get("SHRINK_WEBHOOK_SECRET")
    if not secret:
        url, key = os.environ.get("SHRINK_URL", "http://127.0.0.1:8000"), os.environ.get("SHRINK_API_KEY")
        if not key:
            parser.error("set SHRINK_WEBHOOK_SECRET, or SHRINK_API_KEY (and SHRINK_URL) to read it from the API")
        secret = fetch_secret(url, key)
    server = WebhookReceiver((args.host, args.port), secret, print_record, args.path)
    print(f"listening on http://{args.host}:{server.server_address[1]}{args.path}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
