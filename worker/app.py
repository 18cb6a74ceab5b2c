"""The Celery app of the workers: ``celery -A worker.app:celery_app worker -Q cpu`` (or
``shrink worker``). Configuration is shared with the API's client side (core/queue.py)."""

from __future__ import annotations

from celery import Task
from celery.signals import worker_ready, worker_shutting_down

from core.logging import configure_logging
from core.queue import RUN_JOB_TASK, make_celery
from core.settings import get_settings

settings = get_settings()
configure_logging(settings.log_level, json=settings.log_json)
celery_app = make_celery(settings)
_reaper_stop = None


@celery_app.task(name=RUN_JOB_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job(self: Task, job_id: str) -> str:
    from sqlalchemy.exc import OperationalError

    from worker.runner import execute

    try:
        return execute(job_id)
    except OperationalError as exc:
        # The database is unreachable: this message is acknowledged when the task ends, and the
        # reaper would resend a queued job's wake-up only after SHRINK_REQUEUE_QUEUED_AFTER_SECONDS.
        # Send it again soon instead (a duplicate is harmless: claims are atomic).
        raise self.retry(exc=exc, countdown=5, max_retries=None) from exc


@worker_ready.connect
def _start_reaper(**_: object) -> None:
    global _reaper_stop
    from core.jobs.reaper import start_thread

    _reaper_stop = start_thread()


@worker_shutting_down.connect
def _stop_reaper(**_: object) -> None:
    if _reaper_stop is not None:
        _reaper_stop.set()
