"""One job on this worker: claim the lease, fetch the inputs, run the engine in the sandbox,
store the outputs, record the result. Thin by design: the lease protocol lives in core.jobs.lease,
the work in the engine."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from core import storage as storage_mod
from core.db import new_session
from core.jobs import lease
from core.jobs.states import TERMINAL, JobState
from core.logging import get_logger
from core.models import Job, StoredDataset, StoredModel
from core.sandbox import run_engine
from core.settings import get_settings
from core.storage import StorageUnavailable, sha256_file
from engine.formats.redact import path_free

log = get_logger(__name__)
WORKER_ID = get_settings().worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
PROGRESS_MIN_INTERVAL = 0.5


class LeaseRenewal:
    """Renews the job's lease in the background and notices cancel requests and a lost lease."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.lost = threading.Event()
        self.cancel = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseRenewal:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        interval = max(0.5, get_settings().lease_seconds / 4)
        while not self._stop.wait(interval):
            try:
                with new_session() as session:
                    held, cancel = lease.heartbeat(session, self.job_id, WORKER_ID)
                if not held:
                    self.lost.set()
                if cancel:
                    self.cancel.set()
            except Exception as exc:  # noqa: BLE001 - keep trying; the lease has slack
                log.warning("job.heartbeat_failed", job_id=self.job_id, error=str(exc))


class ProgressSink:
    """Engine messages -> job progress and events, throttled so a chatty pass cannot flood SQL."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        self._last = 0.0

    def __call__(self, message: dict[str, Any]) -> None:
        if message.get("type") == "progress":
            now = time.monotonic()
            final = message.get("fraction", 0) in (0.0, 1.0)
            if not final and now - self._last < PROGRESS_MIN_INTERVAL:
                return  # throttled before any database work
            self._last = now
        with new_session() as session:
            if message.get("type") == "progress":
                lease.record_progress(session, self.job_id, WORKER_ID, str(message.get("stage", "")),
                                      float(message.get("fraction", 0.0)), str(message.get("message", "")))
            elif message.get("type") == "event":
                lease.record_log(session, self.job_id, {k: v for k, v in message.items() if k != "type"})
            elif message.get("type") == "candidate":
                lease.record_candidate(session, self.job_id, WORKER_ID, message["candidate"])


def _fetch_inputs(job: Job, inputs: Path) -> dict[str, Any]:
    storage = storage_mod.get_storage()
    with new_session() as session:
        model = session.get(StoredModel, job.model_id)
        reference = session.get(StoredModel, job.reference_model_id) if job.reference_model_id else None
        dataset = session.get(StoredDataset, job.dataset_id) if job.dataset_id else None
    assert model is not None
    out: dict[str, Any] = {
        "model_path": storage.get_file(model.storage_key, inputs / "model", sha256=model.sha256),
        "model_sha256": model.sha256,
    }
    if reference is not None:
        out["reference_model_path"] = storage.get_file(reference.storage_key, inputs / "reference", sha256=reference.sha256)
    if dataset is not None:
        out["dataset_path"] = storage.get_file(dataset.storage_key, inputs / "dataset", sha256=dataset.sha256)
    eval_id = (job.spec or {}).get("eval_dataset_id")
    if eval_id:
        with new_session() as session:
            held_out = session.get(StoredDataset, eval_id)
        assert held_out is not None and held_out.tenant_id == job.tenant_id
        out["eval_dataset_path"] = storage.get_file(held_out.storage_key, inputs / "eval-dataset", sha256=held_out.sha256)
    return out


def _store_outputs(tenant_id: str, job_id: str, out_dir: Path, produced: list[dict[str, Any]]) -> list[dict[str, Any]]:
    storage = storage_mod.get_storage()
    stored = []
    for item in produced:
        path = out_dir / item["path"]
        digest = sha256_file(path)
        key = storage_mod.artifact_key(tenant_id, job_id, item["path"])
        storage.put_file(key, path, sha256=digest)
        stored.append({**item, "filename": item["path"], "size_bytes": path.stat().st_size, "sha256": digest, "storage_key": key})
    return stored


def execute(job_id: str) -> str:
    settings = get_settings()
    with new_session() as session:
        claim = lease.claim(session, job_id, WORKER_ID)
        job = session.get(Job, job_id) if claim else None
    if claim is None or job is None:
        log.info("job.skipped", job_id=job_id, worker_id=WORKER_ID)
        return "skipped"

    job_root = settings.resolved_work_dir / job_id
    attempt_dir = job_root / f"attempt-{claim.attempt}"
    checkpoints = job_root / "checkpoints"  # kept across attempts on the same host: training resumes
    checkpoints.mkdir(parents=True, exist_ok=True)
    outcome: str = JobState.FAILED
    with LeaseRenewal(job_id) as renewal:
        try:
            inputs = _fetch_inputs(job, attempt_dir / "inputs")
            spec = job.spec
            request = {
                "job_id": job_id,
                "kind": job.kind,
                "recipe": spec.get("recipe") or [],
                "benchmark": spec.get("benchmark", {}),
                "seed": spec.get("seed", 0),
                "goal": spec.get("goal"),
                # Deterministic, so a second delivery produces the same ids (one set of results).
                "candidate_id": f"cand_{job_id.removeprefix('job_')}_1",
                "work_dir": str(attempt_dir / "work"),
                "out_dir": str(attempt_dir / "out"),
                "checkpoint_dir": str(checkpoints),
                "cancel_file": str(attempt_dir / "CANCEL"),  # what the sandbox touches on cancel
                **{k: str(v) for k, v in inputs.items()},
            }
            if spec.get("goal") is not None:
                with new_session() as session:
                    request["prior_trials"] = lease.search_trials(session, job_id)
            request_path = attempt_dir / "request.json"
            request_path.write_text(json.dumps(request))
            result = run_engine(
                ["run-job", str(request_path)],
                work_dir=attempt_dir,
                timeout=settings.job_soft_time_limit_seconds,
                on_event=ProgressSink(job_id),
                should_cancel=lambda: renewal.cancel.is_set() or renewal.lost.is_set(),
            )
            with new_session() as session:
                if renewal.lost.is_set():
                    log.warning("job.lease_lost", job_id=job_id, worker_id=WORKER_ID)
                    outcome = "lease_lost"
                elif result.canceled:
                    lease.mark_canceled(session, job_id, WORKER_ID)
                    outcome = JobState.CANCELED
                elif result.ok:
                    stored = _store_outputs(claim.tenant_id, job_id, attempt_dir / "out", result.result["artifacts"])
                    best = result.result.get("best_candidate_id")
                    ok = lease.finish(
                        session, job_id, WORKER_ID, tenant_id=claim.tenant_id,
                        result={"best_candidate_id": best, "candidates": [c["id"] for c in result.result["candidates"]],
                                **{k: result.result[k] for k in ("goal_met", "message") if k in result.result}},
                        candidates=result.result["candidates"], artifacts=stored,
                    )
                    outcome = JobState.SUCCEEDED if ok else "lease_lost"
                else:
                    error = _job_error(result.error)
                    # The engine's log (a traceback naming server paths) is for the operator only.
                    log.warning("job.engine_failed", job_id=job_id, code=error["code"], returncode=result.returncode,
                                log_tail=result.log_tail[-4000:])
                    lease.fail(session, job_id, WORKER_ID, error)
                    outcome = JobState.FAILED
        except Exception as exc:
            log.exception("job.worker_error", job_id=job_id)
            error = ({"code": exc.code, "message": exc.message, "detail": exc.detail} if isinstance(exc, StorageUnavailable)
                     else {"code": "worker_error", "message": path_free(f"{type(exc).__name__}: {exc}", name="a file of the job")})
            with new_session() as session:
                lease.fail(session, job_id, WORKER_ID, error)
    if outcome != "lease_lost":
        shutil.rmtree(job_root, ignore_errors=True)
        _notify(job_id)
        wake_next_waiting(claim.tenant_id)
    elif _ended_or_deleted(job_id):
        # Deleted or canceled under us: no later attempt will resume from the checkpoints.
        shutil.rmtree(job_root, ignore_errors=True)
    return outcome


def _job_error(error: dict[str, Any] | None) -> dict[str, Any]:
    """The error a user reads for a failed engine run: code, message and detail, no engine internals
    (``user_error`` is the engine's flag for the service) and no server path."""
    error = error or {}
    detail = {k: path_free(v, name="a file of the job") if isinstance(v, str) else v
              for k, v in (error.get("detail") or {}).items() if k != "log_tail"}
    return {"code": str(error.get("code", "engine_internal")),
            "message": path_free(error.get("message", "the engine failed"), name="a file of the job"),
            "detail": detail}


def wake_next_waiting(tenant_id: str) -> str | None:
    """A slot of the tenant's running limit has freed: wake its oldest queued job now rather than
    at the reaper's next sweep (a duplicate wake-up is harmless: claims are atomic)."""
    from core.queue import enqueue_job
    from core.tenants import quotas

    try:
        with new_session() as session:
            waiting = quotas.next_waiting_job(session, tenant_id)
        if waiting is not None:
            enqueue_job(*waiting)
            return waiting[0]
    except Exception as exc:  # noqa: BLE001 - the reaper sends it anyway
        log.warning("job.wake_failed", tenant_id=tenant_id, error=str(exc))
    return None


def _ended_or_deleted(job_id: str) -> bool:
    with new_session() as session:
        job = session.get(Job, job_id)
        return job is None or job.state in TERMINAL


def _notify(job_id: str) -> None:
    from core.webhooks.delivery import deliver_first

    try:
        deliver_first(job_id)  # records the attempt; a failed one is retried by the reaper
    except Exception as exc:  # noqa: BLE001 - a webhook failure never fails the job
        log.warning("webhook.failed", job_id=job_id, error=str(exc))
