"""Database engines and sessions (SQLAlchemy 2). Alembic owns the schema: ``migrate()``.

Two ways in, each for its own callers:

- ``new_session()`` / ``session_scope()``: ORM sessions on a thread (workers, admin commands and
  the API's routes, which FastAPI runs on its thread pool);
- ``run_autocommit(work)``: an autocommit Core connection on the event loop, for what every request
  does before its route (the API key, its tenant and quota) and for the status poll
  (``GET /v1/jobs/{id}``). One statement is one round trip there: no BEGIN/ROLLBACK, no thread
  pool hop (docs/architecture.md, "The request path").
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, NullPool, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def _ensure_sqlite_folder(url: str) -> None:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    _ensure_sqlite_folder(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().resolved_database_url)


@lru_cache
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def new_session() -> Session:
    """A session to use as ``with new_session() as session:``; closing it rolls back whatever
    was not committed. For a block that should commit as a whole, use ``session_scope``."""
    return _session_factory()()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A transaction: committed when the block ends, rolled back on error, then closed."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def async_url(url: str) -> str:
    """The same database through an asyncio driver: psycopg's async mode, or aiosqlite."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ValueError(f"no asyncio driver for {parsed.get_backend_name()}: use PostgreSQL or SQLite")


def make_async_engine(url: str) -> AsyncEngine:
    """Autocommit: each statement is its own transaction (what reads of one row and single-row
    writes need), so a request spends no round trips on BEGIN and ROLLBACK."""
    _ensure_sqlite_folder(url)
    if url.startswith("sqlite"):
        # A pooled aiosqlite connection keeps a thread and belongs to one event loop; opening one
        # per use (about a millisecond) is the embedded default's price for neither.
        engine = create_async_engine(async_url(url), isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(async_url(url), isolation_level="AUTOCOMMIT", pool_size=20, max_overflow=0)


# A pooled asyncio connection belongs to the event loop that opened it: one engine per loop and
# database (an API process has one loop; a test client may start one per request).
_async_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncEngine]] = weakref.WeakKeyDictionary()


def get_async_engine() -> AsyncEngine:
    url = get_settings().resolved_database_url
    engines = _async_engines.setdefault(asyncio.get_running_loop(), {})
    if url not in engines:
        engines[url] = make_async_engine(url)
    return engines[url]


async def dispose_async_engines() -> None:
    """Close the running loop's pooled connections (at the API's shutdown)."""
    for engine in _async_engines.pop(asyncio.get_running_loop(), {}).values():
        await engine.dispose()


async def run_autocommit(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """``await work(connection)`` on an autocommit connection of the running loop's pool, once
    more on a new connection when the pooled one turned out dead (the database restarted: the
    pool then drops every connection it had). Instead of a ping before each use, which was a
    quarter of a status poll's cost; ``work`` must be safe to run twice (reads, and writes that
    set a value)."""
    engine = get_async_engine()
    for attempt in (1, 2):
        try:
            async with engine.connect() as connection:
                return await work(connection)
        except DBAPIError as error:
            if attempt == 2 or not error.connection_invalidated:
                raise
    raise AssertionError("unreachable")


def alembic_config(url: str | None = None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", (url or get_settings().resolved_database_url).replace("%", "%%"))
    return config


def migrate(url: str | None = None) -> None:
    from alembic import command

    _ensure_sqlite_folder(url or get_settings().resolved_database_url)
    command.upgrade(alembic_config(url), "head")
