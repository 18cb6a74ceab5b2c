"""``core.db.run_autocommit``: the request path's reads on the event loop, without a ping before
each use. A pooled connection that the database ended (a restart ends them all) costs no failed
request: the read runs once more on a new connection. Any other error is raised at once."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError


def _run(work):  # type: ignore[no-untyped-def]
    from core.db import dispose_async_engines

    async def body():  # type: ignore[no-untyped-def]
        try:
            return await work()
        finally:
            await dispose_async_engines()

    return asyncio.run(body())


@pytest.mark.parametrize("db_env", ["postgresql"], indirect=True)
def test_a_pooled_connection_the_database_ended_is_replaced_and_the_read_runs_again(db_env: dict[str, str]) -> None:
    from core.db import get_async_engine, get_engine, run_autocommit

    async def work():  # type: ignore[no-untyped-def]
        connects: list[int] = []
        event.listen(get_async_engine().sync_engine, "connect", lambda *_: connects.append(1))
        first = await run_autocommit(lambda c: c.scalar(text("select pg_backend_pid()")))
        with get_engine().connect() as admin:  # what a restart does to every pooled connection
            assert admin.scalar(text("select pg_terminate_backend(:pid)"), {"pid": first})
        second = await run_autocommit(lambda c: c.scalar(text("select pg_backend_pid()")))
        return first, second, len(connects)

    first, second, connects = _run(work)
    assert second != first
    assert connects == 2  # the dead one was tried, then one new connection: no ping, one retry


@pytest.mark.parametrize("db_env", ["sqlite", "postgresql"], indirect=True)
def test_an_error_that_is_not_a_lost_connection_is_raised_without_a_second_run(db_env: dict[str, str]) -> None:
    from core.db import run_autocommit

    runs: list[int] = []

    async def failing(connection):  # type: ignore[no-untyped-def]
        runs.append(1)
        await connection.execute(text("select * from no_such_table"))

    async def work():  # type: ignore[no-untyped-def]
        with pytest.raises(DBAPIError) as raised:
            await run_autocommit(failing)
        return raised.value

    error = _run(work)
    assert not error.connection_invalidated and runs == [1]


@pytest.mark.parametrize("db_env", ["sqlite", "postgresql"], indirect=True)
def test_each_statement_commits_on_its_own(db_env: dict[str, str]) -> None:
    """Autocommit: a write is visible to another connection while the writing connection is still
    held, before any commit could have been sent."""
    from core.db import new_session, run_autocommit
    from core.tenants import service

    with new_session() as session:
        tenant = service.create_tenant(session, "autocommit")
        session.commit()

    def name_elsewhere() -> str:
        with new_session() as session:
            return session.scalar(text("select name from tenants where id = :id"), {"id": tenant.id})

    async def rename(connection):  # type: ignore[no-untyped-def]
        await connection.execute(text("update tenants set name = 'renamed' where id = :id"), {"id": tenant.id})
        return name_elsewhere()

    async def work():  # type: ignore[no-untyped-def]
        return await run_autocommit(rename)

    assert _run(work) == "renamed"
