"""The embedded broker is polled often: a job starts within tens of milliseconds of its submission."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings


@pytest.mark.parametrize("url_scheme", ["sqla+sqlite", "sqlalchemy+sqlite"])
def test_a_sql_broker_polls_at_the_configured_interval(tmp_path: Path, url_scheme: str) -> None:
    from core import sql_broker
    from core.queue import make_celery

    settings = Settings(data_dir=tmp_path, broker_url=f"{url_scheme}:///{tmp_path / 'broker.db'}", broker_poll_seconds=0.02)
    app = make_celery(settings)
    with app.connection_for_read() as conn:
        assert isinstance(conn.transport, sql_broker.Transport)
        assert conn.transport.polling_interval == pytest.approx(0.02)

