"""The reaper: requeues jobs whose lease expired (their worker died), deletes finished jobs past
their retention (``SHRINK_JOB_RETENTION_DAYS``), and removes what dead requests and ended jobs
left in the work folder. Runs inside every worker (a thread) and can run alone (``shrink reaper``)."""

from __future__ import annotations

import shutil
import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from core.db import new_session
from core.jobs import lease, service
from core.jobs.states import TERMINAL
from core.logging import get_logger
from core.models import Job, utcnow
from core.queue import enqueue_job
from core.settings import get_settings
from core.storage import remove_stale_temporary_files
from core.webhooks.delivery import send_due as send_due_webhooks

log = get_logger(__name__)


def sweep() -> list[str]:
    """One round; returns the ids of the jobs it requeued."""
    with new_session() as session:
        requeued = lease.requeue_expired(session)
    for job_id, queue in requeued:
        enqueue_job(job_id, queue)
        log.info("job.requeued", job_id=job_id, queue=queue)
    delete_expired_jobs()
    clean_work_dir()
    try:
        send_due_webhooks()
    except Exception as exc:  # noqa: BLE001 - webhook retries never stop the requeueing of jobs
        log.warning("reaper.webhooks_failed", error=str(exc))
    return [job_id for job_id, _ in requeued]


def delete_expired_jobs() -> list[str]:
    """Delete the jobs that finished more than the retention ago, through the same code as
    ``DELETE /v1/jobs/{id}``; returns their storage prefixes."""
    days = get_settings().job_retention_days
    if days is None:
        return []
    with new_session() as session:
        prefixes = service.delete_finished_before(session, utcnow() - timedelta(days=days))
        session.commit()
    service.delete_job_objects(prefixes)
    if prefixes:
        log.info("jobs.retention_deleted", count=len(prefixes))
    return prefixes


def clean_work_dir() -> list[Path]:
    """Remove stale partial uploads and inspection folders, and the work folder of every job on
    this host that has ended or no longer exists (a worker that died mid-job left it; a job that
    is queued again keeps its folder, whose checkpoints let training resume)."""
    settings = get_settings()
    work_dir = settings.resolved_work_dir
    removed = remove_stale_temporary_files(work_dir, settings.longest_request_seconds)
    folders = {p.name: p for p in work_dir.glob("job_*") if p.is_dir()}
    if folders:
        with new_session() as session:
            live = {job_id for job_id, state in session.execute(select(Job.id, Job.state).where(Job.id.in_(list(folders))))
                    if state not in TERMINAL}
        for job_id, folder in folders.items():
            if job_id not in live:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    if removed:
        log.info("work_dir.cleaned", removed=len(removed))
    return removed


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
