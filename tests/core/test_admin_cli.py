"""The real ``shrink`` command, run from a directory other than the repository: tenants, API keys
(list, revoke, rotate with a grace period), and what the API answers to each key afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.services import clear_caches

ROOT = Path(__file__).resolve().parents[2]
SHRINK = Path(sys.executable).parent / "shrink"
SECRET = "admin-cli-test-secret"


def _env(tmp_path: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHRINK_")}
    env.update({"PYTHONPATH": str(ROOT), "SHRINK_ENV": "test", "SHRINK_SECRET_KEY": SECRET})
    if database_url is not None:
        env["SHRINK_DATABASE_URL"] = database_url
    return env


class Shrink:
    """Runs ``shrink`` as a user would, in a scratch directory (never the repository's)."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.cwd, self.env = cwd, env

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SHRINK), *args], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120)

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'shrink.db'}"


@pytest.fixture
def shrink(tmp_path: Path, database_url: str) -> Shrink:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    run = Shrink(cwd, _env(tmp_path, database_url))
    run.ok("migrate")
    return run


@pytest.fixture
def client(shrink: Shrink, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The API in this process, on the database the command writes to."""
    for key in [k for k in os.environ if k.startswith("SHRINK_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SHRINK_ENV", "test")
    monkeypatch.setenv("SHRINK_SECRET_KEY", SECRET)
    monkeypatch.setenv("SHRINK_DATABASE_URL", database_url)
    monkeypatch.setenv("SHRINK_DATA_DIR", str(tmp_path / "var"))
    clear_caches()
    try:
        from api.app import create_app

        yield TestClient(create_app())
    finally:
        from core.db import get_engine

        get_engine().dispose()
        clear_caches()


def _status(client: TestClient, key: str) -> int:
    return client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code


def _key_id(shrink: Shrink, tenant_id: str, label: str) -> str:
    rows = [line.split("\t") for line in shrink.ok("admin", "list-keys", tenant_id).splitlines()[1:]]
    return next(row[0] for row in rows if row[1] == label)


def test_a_repeated_tenant_name_says_which_tenant_exists_and_exits_1(shrink: Shrink) -> None:
    tenant_id = shrink.ok("admin", "create-tenant", "acme")
    again = shrink("admin", "create-tenant", "acme")
    assert again.returncode == 1
    assert again.stderr.strip() == f"tenant acme exists: its id is {tenant_id}"
    assert "Traceback" not in again.stderr + again.stdout and again.stdout == ""


def test_admin_without_a_database_says_to_set_the_database_url(tmp_path: Path) -> None:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    done = Shrink(cwd, _env(tmp_path, None))("admin", "create-tenant", "acme")
    assert done.returncode == 1
    assert "SHRINK_DATABASE_URL" in done.stderr and "Traceback" not in done.stderr
    assert not (cwd / "var").exists()  # no empty database left behind in the wrong place


def test_admin_on_an_unmigrated_database_says_to_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    sa.create_engine(url).connect().close()
    done = Shrink(tmp_path, _env(tmp_path, url))("admin", "list-tenants")
    assert done.returncode == 1
    assert "is empty: run `shrink migrate`" in done.stderr and "Traceback" not in done.stderr


def test_list_keys_shows_each_key_but_never_its_secret(shrink: Shrink) -> None:
    tenant_id = shrink.ok("admin", "create-tenant", "acme")
    secret = shrink.ok("admin", "create-key", tenant_id, "--label", "ci")
    shrink.ok("admin", "create-key", tenant_id)
    listing = shrink.ok("admin", "list-keys", tenant_id)
    header, *rows = [line.split("\t") for line in listing.splitlines()]
    assert header == ["ID", "LABEL", "CREATED", "LAST USED", "STATUS"]
    assert len(rows) == 2 and {row[1] for row in rows} == {"ci", "-"}
    assert all(row[0].startswith("key_") and row[3] == "never" and row[4] == "active" for row in rows)
    _, lookup, secret_part = secret.split("_", 2)
    assert secret_part not in listing and lookup not in listing


def test_a_revoked_key_answers_401_at_once(shrink: Shrink, client: TestClient) -> None:
    tenant_id = shrink.ok("admin", "create-tenant", "acme")
    key = shrink.ok("admin", "create-key", tenant_id, "--label", "laptop")
    assert _status(client, key) == 200
    key_id = _key_id(shrink, tenant_id, "laptop")
    assert shrink.ok("admin", "revoke-key", key_id).startswith(f"{key_id} revoked ")
    answer = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"
    assert "revoked" in shrink.ok("admin", "list-keys", tenant_id).splitlines()[1].split("\t")[4]


def test_a_rotated_key_works_through_its_grace_period_then_answers_401(shrink: Shrink, client: TestClient, database_url: str) -> None:
    tenant_id = shrink.ok("admin", "create-tenant", "acme")
    old = shrink.ok("admin", "create-key", tenant_id, "--label", "ci")
    old_id = _key_id(shrink, tenant_id, "ci")
    new = shrink.ok("admin", "rotate-key", old_id)
    assert new.startswith("shk_") and new != old
    assert _status(client, old) == 200 and _status(client, new) == 200  # inside the 24 h grace
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:  # the grace period ends
        connection.execute(sa.text("UPDATE api_keys SET expires_at = '2000-01-01 00:00:00' WHERE id = :id"), {"id": old_id})
    engine.dispose()
    assert _status(client, old) == 401 and _status(client, new) == 200
    assert "expired 2000-01-01" in shrink.ok("admin", "list-keys", tenant_id)


def test_rotating_with_no_grace_ends_the_old_key_at_once(shrink: Shrink, client: TestClient) -> None:
    tenant_id = shrink.ok("admin", "create-tenant", "acme")
    old = shrink.ok("admin", "create-key", tenant_id)
    new = shrink.ok("admin", "rotate-key", _key_id(shrink, tenant_id, "-"), "--grace-hours", "0")
    assert _status(client, old) == 401 and _status(client, new) == 200


def test_help_lists_every_command(shrink: Shrink) -> None:
    top = shrink.ok("--help")
    assert all(name in top for name in ("migrate", "api", "worker", "reaper", "admin"))
    admin = shrink.ok("admin", "--help")
    commands = ("create-tenant", "list-tenants", "create-key", "list-keys", "revoke-key", "rotate-key")
    assert all(name in admin for name in commands)


def test_the_client_package_adds_its_commands_where_it_is_installed(shrink: Shrink, tmp_path: Path) -> None:
    package = tmp_path / "site" / "shrink_client"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text(
        "import typer\n\n"
        "def register(app: typer.Typer) -> None:\n"
        "    @app.command('hello-client')\n"
        "    def hello() -> None:\n"
        "        print('hello from the client')\n"
    )
    assert "hello-client" not in shrink.ok("--help")
    with_client = Shrink(shrink.cwd, {**shrink.env, "PYTHONPATH": f"{ROOT}{os.pathsep}{package.parent}"})
    assert with_client.ok("hello-client") == "hello from the client"


def test_keys_are_refused_once_revoked_or_past_their_grace_on_each_database(db_env: dict[str, str]) -> None:
    from datetime import timedelta

    from core.db import session_scope
    from core.errors import Unauthorized
    from core.tenants import service

    with session_scope() as session:
        tenant = service.create_tenant(session, "acme")
        revoked, revoked_secret = service.create_api_key(session, tenant.id)
        rotated, rotated_secret = service.create_api_key(session, tenant.id)
    with session_scope() as session:
        service.revoke_api_key(session, revoked.id)
        _, _, graced_secret = service.rotate_api_key(session, rotated.id, grace=timedelta(hours=1))
    assert _authenticate(rotated_secret).id == tenant.id  # inside the grace
    with session_scope() as session:
        _, _, newest_secret = service.rotate_api_key(session, rotated.id, grace=timedelta(0))
    for secret in (revoked_secret, rotated_secret):
        with pytest.raises(Unauthorized):
            _authenticate(secret)
    assert _authenticate(graced_secret).id == tenant.id
    assert _authenticate(newest_secret).id == tenant.id


def test_last_used_is_written_once_a_minute_not_on_every_request(db_env: dict[str, str]) -> None:
    """A status poll must not be a committed write; ``list-keys`` still shows use to the minute."""
    from datetime import timedelta

    from core.db import session_scope
    from core.models import ApiKey
    from core.tenants import service

    with session_scope() as session:
        tenant = service.create_tenant(session, "polling")
        key, secret = service.create_api_key(session, tenant.id)
    _authenticate(secret)
    with session_scope() as session:
        first = session.get(ApiKey, key.id).last_used_at
    statements = _authenticate(secret, count_statements=True)
    assert statements == ["SELECT"]  # key, tenant and rate in one read; nothing to write within the minute
    with session_scope() as session:
        row = session.get(ApiKey, key.id)
        assert row.last_used_at == first
        row.last_used_at = first - timedelta(minutes=2)
    assert _authenticate(secret, count_statements=True) == ["SELECT", "UPDATE"]
    with session_scope() as session:
        assert session.get(ApiKey, key.id).last_used_at > first


def test_a_poll_reads_key_and_job_in_one_statement_and_never_another_tenants_job(db_env: dict[str, str]) -> None:
    from core.db import session_scope
    from core.errors import Unauthorized
    from core.models import Job, StoredModel
    from core.tenants import service

    with session_scope() as session:
        owner, other = service.create_tenant(session, "owner"), service.create_tenant(session, "other")
        _, owner_secret = service.create_api_key(session, owner.id)
        _, other_secret = service.create_api_key(session, other.id)
        session.add(StoredModel(id="mdl_poll", tenant_id=owner.id, name="m", format="onnx", size_bytes=1, sha256="0" * 64, storage_key="k"))
        session.flush()
        session.add(Job(id="job_poll", tenant_id=owner.id, model_id="mdl_poll", progress_message="halfway", labels={"team": "a"}))
    _authenticate(owner_secret)  # ``last_used_at`` written: what follows within the minute only reads
    assert _authenticate(owner_secret, job_id="job_poll", count_statements=True) == ["SELECT"]
    principal, job = _authenticate(owner_secret, job_id="job_poll")
    assert principal.id == owner.id and job is not None
    assert (job.id, job.tenant_id, job.progress_message, job.labels) == ("job_poll", owner.id, "halfway", {"team": "a"})
    principal, job = _authenticate(other_secret, job_id="job_poll")
    assert principal.id == other.id and job is None
    assert _authenticate(owner_secret, job_id="job_none")[1] is None
    with pytest.raises(Unauthorized):
        _authenticate("shk_" + "x" * 40, job_id="job_poll")


def _authenticate(secret: str, *, job_id: str | None = None, count_statements: bool = False):  # type: ignore[no-untyped-def]
    """``core.tenants.auth.authenticate`` as a request runs it, on an event loop of its own: the
    principal (and with ``job_id``, ``(principal, job)``); with ``count_statements``, the kinds of
    the SQL statements it sent instead."""
    import asyncio

    from sqlalchemy import event

    from core.db import dispose_async_engines, get_async_engine, run_autocommit
    from core.tenants import auth

    async def run():  # type: ignore[no-untyped-def]
        sent: list[str] = []
        engine = get_async_engine().sync_engine
        listener = lambda *args: sent.append(args[2].split()[0].upper())  # noqa: E731 - (conn, cursor, statement, ...)
        event.listen(engine, "before_cursor_execute", listener)
        try:
            principal, job = await run_autocommit(lambda connection: auth.authenticate(connection, secret, job_id=job_id))
        finally:
            event.remove(engine, "before_cursor_execute", listener)
            await dispose_async_engines()
        if count_statements:
            return [s for s in sent if s not in ("PRAGMA",)]
        return principal if job_id is None else (principal, job)

    return asyncio.run(run())
