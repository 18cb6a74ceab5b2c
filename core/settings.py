"""Every setting of the service, from ``SHRINK_*`` environment variables (pydantic-settings).

The defaults are the embedded mode: SQLite, artifacts on local disk, and a Celery broker that
needs no server (kombu's SQLAlchemy transport on SQLite). Production refuses to start with the
default secret.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "dev-insecure-secret-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHRINK_", env_file=None, extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    secret_key: str = Field(DEFAULT_SECRET, description="pepper for API-key hashes; required in production")
    data_dir: Path = Path("var")

    database_url: str = ""  # default: sqlite under data_dir
    broker_url: str = ""  # default: sqla+sqlite under data_dir
    # The longest a worker on a SQL broker waits before it reads its table again. On a SQLite
    # broker (the embedded default) a publish wakes the workers at once (core/sql_broker.py).
    broker_poll_seconds: float = Field(1.0, gt=0, le=5)

    storage_backend: Literal["local", "s3"] = "local"
    storage_path: Path | None = None  # default: data_dir/artifacts
    s3_bucket: str = "shrink-artifacts"
    s3_endpoint_url: str | None = None
    # Where clients reach the same storage, for presigned download URLs (e.g. http://localhost:9000
    # when the services talk to http://minio:9000 inside a compose network).
    s3_public_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_presign_seconds: int = 900
    s3_multipart_threshold_bytes: int = 64 * 1024**2
    # An S3 read or write that fails in a way that may pass (5xx, throttling, a connection cut,
    # a timeout) is tried again for this long before the job or upload fails storage_unavailable.
    s3_retry_seconds: float = 120.0
    s3_read_timeout_seconds: float = 120.0

    max_upload_bytes: int = 8 * 1024**3
    cors_origins: list[str] = Field(default_factory=list)
    # The web console's signed session cookie lives this long at most (and never past its key's
    # expiry); signing in again starts a new one (docs/operations.md, the web console).
    session_seconds: int = Field(8 * 3600, gt=0, le=30 * 24 * 3600)
    page_size_max: int = 200

    # Job lifecycle: leases, the reaper, retries (docs/architecture.md, job lifecycle).
    lease_seconds: float = 60.0
    reaper_interval_seconds: float = 15.0
    requeue_queued_after_seconds: float = 600.0
    max_attempts: int = 3
    job_soft_time_limit_seconds: int = 6 * 3600
    job_time_limit_seconds: int = 6 * 3600 + 300
    worker_id: str | None = None
    work_dir: Path | None = None  # default: data_dir/work
    # Finished jobs older than this are deleted by the reaper, artifacts included; None keeps them.
    job_retention_days: float | None = None
    # The longest a request may take (an upload's inspection included): an Idempotency-Key claim
    # or a temporary file (partial upload, inspection folder) older than this was abandoned.
    longest_request_seconds: float = 6 * 3600

    # Sandbox limits for the engine's child process (docs/architecture.md, sandbox).
    sandbox_memory_bytes: int = 16 * 1024**3
    sandbox_cpu_seconds: int = 6 * 3600
    sandbox_file_bytes: int = 32 * 1024**3
    sandbox_threads: int = 0
    inspect_timeout_seconds: float = 300.0

    allow_unsafe_formats: bool = False
    allow_private_webhooks: bool = False
    webhook_timeout_seconds: float = 10.0
    # Retries of a failed webhook (docs/architecture.md, webhooks): the delay before each retry,
    # the last one repeated, until this long after the first attempt.
    webhook_retry_delays_seconds: list[float] = Field(default_factory=lambda: [5, 30, 120, 600, 1800, 3600], min_length=1)
    webhook_retry_window_seconds: float = 24 * 3600
    # After a rotation the previous signing secret also signs for this long.
    webhook_secret_overlap_seconds: float = 24 * 3600

    # Per-tenant quotas (docs/operations.md, quotas and rate limits): the defaults for tenants
    # without their own (`shrink admin set-quota`); None or 0 is no limit.
    default_max_running_jobs: int | None = Field(None, ge=0)
    default_max_queued_jobs: int | None = Field(None, ge=0)
    default_max_storage_bytes: int | None = Field(None, ge=0)
    default_requests_per_second: int | None = Field(None, ge=0)
    # A `limits` storage URI (memory://, redis://host:6379/0). Empty: the broker's Redis when the
    # broker is Redis, else memory:// (counted per API process).
    rate_limit_storage: str = ""
    rate_limit_namespace: str = "shrink-rate"

    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        if self.env == "production" and self.secret_key == DEFAULT_SECRET:
            raise ValueError("SHRINK_SECRET_KEY must be set to a private value in production")
        if self.env == "production" and len(self.secret_key) < 32:
            raise ValueError("SHRINK_SECRET_KEY must be at least 32 characters in production")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'shrink.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @property
    def resolved_storage_path(self) -> Path:
        return (self.storage_path or self.data_dir / "artifacts").resolve()

    @property
    def resolved_work_dir(self) -> Path:
        return (self.work_dir or self.data_dir / "work").resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()
