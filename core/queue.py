"""The Celery client side: the API enqueues tasks by name and never imports worker code.

The job row in SQL is the truth; a message only wakes a worker up (docs/architecture.md, job
lifecycle).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery

from core import sql_broker
from core.settings import Settings, get_settings

RUN_JOB_TASK = "shrink.run_job"
QUEUES = ("cpu", "gpu")


def celery_config(settings: Settings) -> dict[str, Any]:
    broker = settings.resolved_broker_url
    transport_options: dict[str, Any] = {}
    if broker.startswith("redis"):
        # Must exceed the longest job: with late acks a message stays unacknowledged while its job
        # runs, and Redis redelivers any message unacknowledged for longer than this, so a shorter
        # timeout delivers a running job again and again. Recovery of dead workers is the lease
        # reaper's job, not the broker's.
        transport_options["visibility_timeout"] = settings.job_time_limit_seconds + 600
    return {
        "broker_url": broker,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport_options,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.job_soft_time_limit_seconds,
        "task_time_limit": settings.job_time_limit_seconds,
        "task_default_queue": "cpu",
        "task_create_missing_queues": True,
        "worker_lost_wait": 2.0,
        "worker_hijack_root_logger": False,
    }


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    sql_broker.register()
    app = Celery("shrink")
    app.conf.update(celery_config(settings))
    return app


@lru_cache
def get_celery() -> Celery:
    return make_celery()


def enqueue_job(job_id: str, queue: str) -> None:
    get_celery().send_task(RUN_JOB_TASK, args=[job_id], queue=queue)


def check_broker() -> None:
    with get_celery().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
