"""The reaper: requeues jobs whose lease expired (their worker died). Runs inside every worker
(a thread) and can run alone (``shrink reaper``)."""

from __future__ import annotations

import threading

from core.db import new_session
from core.jobs import lease
from core.logging import get_logger
from core.queue import enqueue_job
from core.settings import get_settings
from core.webhooks.delivery import send_due as send_due_webhooks

log = get_logger(__name__)


def sweep() -> list[str]:
    with new_session() as session:
        requeued = lease.requeue_expired(session)
    for job_id, queue in requeued:
        enqueue_job(job_id, queue)
        log.info("job.requeued", job_id=job_id, queue=queue)
    try:
        send_due_webhooks()
    except Exception as exc:  # noqa: BLE001 - webhook retries never stop the requeueing of jobs
        log.warning("reaper.webhooks_failed", error=str(exc))
    return [job_id for job_id, _ in requeued]


def run_forever(stop: threading.Event | None = None) -> None:
    interval = get_settings().reaper_interval_seconds
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            sweep()
        except Exception as exc:  # noqa: BLE001 - the reaper must outlive a database hiccup
            log.warning("reaper.sweep_failed", error=str(exc))
        stop.wait(interval)


def start_thread() -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=run_forever, args=(stop,), name="shrink-reaper", daemon=True).start()
    return stop
