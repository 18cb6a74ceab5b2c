"""The ``shrink`` command: run the services and manage tenants.

    shrink migrate                      apply database migrations (alembic upgrade head)
    shrink api [--host H] [--port P]    the HTTP API (uvicorn)
    shrink worker [--queues cpu,gpu]    a Celery worker (it also runs the lease reaper)
    shrink reaper [--once]              the lease reaper alone
    shrink admin create-tenant NAME     prints the tenant id
    shrink admin create-key TENANT_ID   prints a new API key (shown once, stored hashed)

Service commands exec their server, so the ``shrink`` process becomes it (signals reach it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _exec(argv: list[str]) -> None:
    os.execvp(argv[0], argv)


def _bin(name: str) -> str:
    """The executable of the running environment (the venv's uvicorn, celery, alembic)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def cmd_migrate(args: argparse.Namespace) -> None:
    from core.db import migrate

    migrate()
    print("database is at the latest migration")


def cmd_api(args: argparse.Namespace) -> None:
    _exec(
        [
            _bin("uvicorn"),
            "api.app:create_app",
            "--factory",
            "--host",
            args.host,
            "--port",
            str(args.port),
            "--workers",
            str(args.workers),
            "--no-access-log",
            "--proxy-headers",
        ]
    )


def cmd_worker(args: argparse.Namespace) -> None:
    argv = [
        _bin("celery"),
        "-A",
        "worker.app:celery_app",
        "worker",
        "--queues",
        args.queues,
        "--concurrency",
        str(args.concurrency),
        # Threads: the engine runs in a sandboxed child process per job, so the pool only waits;
        # and the sandbox's parent-death signal then fires when the worker itself dies.
        "--pool",
        "threads",
        "--loglevel",
        args.loglevel,
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    _exec(argv)


def cmd_reaper(args: argparse.Namespace) -> None:
    from core.jobs.reaper import run_forever, sweep

    if args.once:
        print(sweep())
    else:
        run_forever()


def cmd_admin(args: argparse.Namespace) -> None:
    from core.db import session_scope
    from core.tenants import service

    with session_scope() as session:
        if args.admin_command == "create-tenant":
            tenant = service.create_tenant(session, args.name)
            print(tenant.id)
        elif args.admin_command == "create-key":
            _, secret = service.create_api_key(session, args.tenant_id, label=args.label)
            print(secret)
        elif args.admin_command == "list-tenants":
            for tenant in service.list_tenants(session):
                print(f"{tenant.id}\t{tenant.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shrink", description="Shrink: compression as a service")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    api = sub.add_parser("api", help="run the HTTP API")
    api.add_argument("--host", default=os.environ.get("SHRINK_API_HOST", "127.0.0.1"))
    api.add_argument("--port", type=int, default=int(os.environ.get("SHRINK_API_PORT", "8000")))
    api.add_argument("--workers", type=int, default=int(os.environ.get("SHRINK_API_WORKERS", "1")))
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--queues", default=os.environ.get("SHRINK_WORKER_QUEUES", "cpu"))
    worker.add_argument("--concurrency", type=int, default=int(os.environ.get("SHRINK_WORKER_CONCURRENCY", "1")))
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument("--hostname", default=None)
    worker.set_defaults(func=cmd_worker)

    reaper = sub.add_parser("reaper", help="requeue jobs whose worker vanished")
    reaper.add_argument("--once", action="store_true")
    reaper.set_defaults(func=cmd_reaper)

    admin = sub.add_parser("admin", help="tenants and API keys")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    create_tenant = admin_sub.add_parser("create-tenant")
    create_tenant.add_argument("name")
    create_key = admin_sub.add_parser("create-key")
    create_key.add_argument("tenant_id")
    create_key.add_argument("--label", default="")
    admin_sub.add_parser("list-tenants")
    admin.set_defaults(func=cmd_admin)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
