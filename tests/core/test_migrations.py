"""Alembic owns the schema: upgrade to head and back down on SQLite and the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command

from bench.stack import postgres_schema
from core.db import alembic_config, migrate
from core.models import Base
from tests.services import require_service

TABLES = {"tenants", "api_keys", "models", "datasets", "jobs", "candidates", "artifacts", "job_events", "idempotency_records"}


def _check(url: str) -> None:
    migrate(url)
    engine = sa.create_engine(url)
    names = set(sa.inspect(engine).get_table_names())
    assert names >= TABLES
    # The migrations create exactly what the models describe (no drift).
    for table in Base.metadata.sorted_tables:
        columns = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
    command.downgrade(alembic_config(url), "base")
    assert not TABLES & set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_migrations_on_sqlite(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'db.sqlite'}")


def test_migrations_on_postgresql() -> None:
    require_service("postgresql", "127.0.0.1", 5432)
    with postgres_schema() as url:
        _check(url)
