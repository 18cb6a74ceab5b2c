"""The ``shrink`` command: run the services and manage tenants and API keys.

    shrink migrate                          apply database migrations (alembic upgrade head)
    shrink api [--host H] [--port P]        the HTTP API (uvicorn)
    shrink worker [--queues cpu,gpu]        a Celery worker (it also runs the lease reaper)
    shrink reaper [--once]                  the lease reaper alone
    shrink admin create-tenant NAME         prints the tenant id
    shrink admin create-key TENANT_ID       prints a new API key (shown once, stored hashed)
    shrink admin list-keys TENANT_ID        the tenant's keys, never their secrets
    shrink admin revoke-key KEY_ID          the key answers 401 from the next request on
    shrink admin rotate-key KEY_ID          prints a new key; the old one works for a grace period
    shrink admin set-quota TENANT_ID [...]  a tenant's job, storage and request-rate limits

With the client package (``shrink_client``) installed, its commands join these: ``shrink
compress``, ``shrink models|datasets|jobs|artifacts ...`` (docs/sdk.md).

Service commands exec their server, so the ``shrink`` process becomes it (signals reach it).
Admin commands print what scripts need (ids, keys) on stdout and refusals on stderr, exit 1.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from core.models import ApiKey

# No pretty tracebacks: they print local variables, which may hold keys.
app = typer.Typer(
    name="shrink",
    help="Shrink: compression as a service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
admin = typer.Typer(help="Tenants and API keys.", no_args_is_help=True)
app.add_typer(admin, name="admin")


def _exec(argv: list[str]) -> NoReturn:
    os.execvp(argv[0], argv)


def _bin(name: str) -> str:
    """The executable of the running environment (the venv's uvicorn, celery, alembic)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@app.command("migrate")
def run_migrate() -> None:
    """Apply database migrations (to the latest)."""
    from core.db import migrate

    migrate()
    print("database is at the latest migration")


@app.command("api")
def run_api(
    host: Annotated[str, typer.Option(help="Address to listen on (default from SHRINK_API_HOST).")] = os.environ.get("SHRINK_API_HOST", "127.0.0.1"),
    port: Annotated[int, typer.Option(help="Port to listen on (default from SHRINK_API_PORT).")] = int(os.environ.get("SHRINK_API_PORT", "8000")),
    workers: Annotated[
        int, typer.Option(min=1, help="Number of uvicorn worker processes (default from SHRINK_API_WORKERS).")
    ] = int(os.environ.get("SHRINK_API_WORKERS", "1")),
) -> None:
    """Run the HTTP API."""
    _exec(
        [
            _bin("uvicorn"),
            "api.app:create_app",
            "--factory",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--proxy-headers",
        ]
    )


@app.command("worker")
def run_worker(
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues to consume: cpu, gpu (default from SHRINK_WORKER_QUEUES).")
    ] = os.environ.get("SHRINK_WORKER_QUEUES", "cpu"),
    concurrency: Annotated[
        int, typer.Option(min=1, help="Jobs run at once (default from SHRINK_WORKER_CONCURRENCY).")
    ] = int(os.environ.get("SHRINK_WORKER_CONCURRENCY", "1")),
    loglevel: Annotated[str, typer.Option(help="Celery log level (DEBUG, INFO, WARNING, ERROR).")] = "INFO",
    hostname: Annotated[str | None, typer.Option(help="Celery node name, e.g. w1@%h (default: Celery's).")] = None,
) -> None:
    """Run a Celery worker (it also runs the lease reaper)."""
    argv = [
        _bin("celery"),
        "-A",
        "worker.app:celery_app",
        "worker",
        "--queues",
        queues,
        "--concurrency",
        str(concurrency),
        # Threads: the engine runs in a sandboxed child process per job, so the pool only waits;
        # and the sandbox's parent-death signal then fires when the worker itself dies.
        "--pool",
        "threads",
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv += ["--hostname", hostname]
    _exec(argv)


@app.command("reaper")
def run_reaper(
    once: Annotated[bool, typer.Option("--once", help="Sweep once, print what was done, and exit.")] = False,
) -> None:
    """Requeue jobs whose worker vanished."""
    from core.jobs.reaper import run_forever, sweep

    if once:
        print(sweep())
    else:
        run_forever()


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(1)


def _require_migrated_database() -> None:
    """Admin commands work on an existing, migrated database, and say which one they looked at:
    the default SQLite file lies under SHRINK_DATA_DIR, relative to the current directory."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url

    from core.db import alembic_config, get_engine
    from core.settings import get_settings

    settings = get_settings()
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") and not Path(url.database).exists():
        where = "" if settings.database_url else (
            " (SHRINK_DATABASE_URL is not set, so the database is looked for under SHRINK_DATA_DIR, by default ./var in the current directory)"
        )
        _fail(f"no database at {url.database}{where}: set SHRINK_DATABASE_URL to the service's database, or run `shrink migrate` to create one there")
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with get_engine().connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        state = "empty" if current is None else f"at migration {current}, not {head}"
        _fail(
            f"the database at {url.render_as_string(hide_password=True)} is {state}: run `shrink migrate` with the same settings, "
            "or set SHRINK_DATABASE_URL to the service's database"
        )


@contextmanager
def _admin_session() -> Iterator[Session]:
    """A committed transaction; the service's refusals become a message on stderr and exit 1."""
    from sqlalchemy.exc import OperationalError

    from core.db import session_scope
    from core.errors import ShrinkError

    try:
        _require_migrated_database()
        with session_scope() as session:
            yield session
    except ShrinkError as error:
        _fail(error.message)
    except OperationalError as error:
        _fail(f"cannot use the database: {str(error.orig).strip().splitlines()[0]} (SHRINK_DATABASE_URL names it)")


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else "never"


def _key_status(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return f"revoked {_when(key.revoked_at)}"
    if key.expires_at is not None:
        return f"{'expired' if key.expires_at <= now else 'expires'} {_when(key.expires_at)}"
    return "active"


@admin.command("create-tenant")
def create_tenant(name: Annotated[str, typer.Argument(metavar="NAME", help="The tenant's name (unique).")]) -> None:
    """Create a tenant; prints its id."""
    from core.tenants import service

    with _admin_session() as session:
        tenant_id = service.create_tenant(session, name).id
    print(tenant_id)


@admin.command("list-tenants")
def list_tenants() -> None:
    """List tenants: id and name, one a line."""
    from core.tenants import service

    with _admin_session() as session:
        for tenant in service.list_tenants(session):
            print(f"{tenant.id}\t{tenant.name}")


@admin.command("create-key")
def create_key(
    tenant_id: Annotated[str, typer.Argument(metavar="TENANT_ID", help="The tenant's id (ten_...).")],
    label: Annotated[str, typer.Option(help="A note to recognise the key by in list-keys.")] = "",
) -> None:
    """Create an API key for a tenant; prints the key, which is shown only this once."""
    from core.tenants import service

    with _admin_session() as session:
        _, secret = service.create_api_key(session, tenant_id, label=label)
    print(secret)


@admin.command("list-keys")
def list_keys(tenant_id: Annotated[str, typer.Argument(metavar="TENANT_ID", help="The tenant's id (ten_...).")]) -> None:
    """List a tenant's API keys (id, label, created, last used, status); never their secrets."""
    from core.models import utcnow
    from core.tenants import service

    with _admin_session() as session:
        keys = service.list_api_keys(session, tenant_id)
    now = utcnow()
    print("ID\tLABEL\tCREATED\tLAST USED\tSTATUS")
    for key in keys:
        print(f"{key.id}\t{key.label or '-'}\t{_when(key.created_at)}\t{_when(key.last_used_at)}\t{_key_status(key, now)}")


@admin.command("revoke-key")
def revoke_key(key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (key_..., from list-keys).")]) -> None:
    """Revoke an API key: requests with it answer 401 from now on."""
    from core.tenants import service

    with _admin_session() as session:
        revoked_at = service.revoke_api_key(session, key_id).revoked_at
    print(f"{key_id} revoked {_when(revoked_at)}")


@admin.command("rotate-key")
def rotate_key(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (key_..., from list-keys).")],
    grace_hours: Annotated[float, typer.Option(min=0, help="Hours the old key keeps working; 0 ends it at once.")] = 24,
) -> None:
    """Replace an API key: prints a new key for the same tenant; the old one works until the grace period ends."""
    from core.tenants import service

    with _admin_session() as session:
        old, new, secret = service.rotate_api_key(session, key_id, grace=timedelta(hours=grace_hours))
    print(secret)
    typer.echo(f"new key {new.id}; {old.id} works until {_when(old.expires_at)}", err=True)


@admin.command("set-quota")
def set_quota(
    tenant_id: Annotated[str, typer.Argument(metavar="TENANT_ID", help="The tenant's id (ten_...).")],
    max_running_jobs: Annotated[int | None, typer.Option(min=0, help="Jobs running at once; more wait queued. 0: no limit.")] = None,
    max_queued_jobs: Annotated[int | None, typer.Option(min=0, help="Jobs waiting; a submit past it is refused (429). 0: no limit.")] = None,
    max_storage_bytes: Annotated[int | None, typer.Option(min=0, help="Bytes of models, datasets and artifacts; an upload past it is refused (413). 0: no limit.")] = None,
    requests_per_second: Annotated[int | None, typer.Option(min=0, help="API requests per second; more answer 429. 0: no limit.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Forget the tenant's own limits first: the service's defaults (SHRINK_DEFAULT_*) apply.")] = False,
) -> None:
    """Set a tenant's quotas; limits not given keep their value. Prints the limits that apply now."""
    from core.tenants import service

    with _admin_session() as session:
        limits = service.set_quota(
            session, tenant_id, clear=clear, max_running_jobs=max_running_jobs, max_queued_jobs=max_queued_jobs,
            max_storage_bytes=max_storage_bytes, requests_per_second=requests_per_second,
        )
    for name, value in limits.as_dict().items():
        print(f"{name}\t{'unlimited' if value is None else value}")


def _register_client_commands() -> None:
    """The client's commands (``shrink_client``), where that package is installed."""
    if importlib.util.find_spec("shrink_client") is not None:
        importlib.import_module("shrink_client.cli").register(app)


_register_client_commands()


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="shrink")


if __name__ == "__main__":
    main()
