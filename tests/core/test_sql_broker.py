"""The embedded broker: a publish wakes the workers at once, and a worker waits on its wake-up
socket instead of polling its table many times a second."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from core.settings import Settings


@pytest.mark.parametrize("url_scheme", ["sqla+sqlite", "sqlalchemy+sqlite"])
def test_a_sql_broker_uses_the_transport_with_the_configured_interval(
    tmp_path: Path, url_scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core import sql_broker
    from core.queue import make_celery
    from core.settings import get_settings

    monkeypatch.setenv("SHRINK_BROKER_POLL_SECONDS", "0.7")
    get_settings.cache_clear()
    try:
        app = make_celery(Settings(data_dir=tmp_path, broker_url=f"{url_scheme}:///{tmp_path / 'broker.db'}"))
        with app.connection_for_read() as conn:
            assert isinstance(conn.transport, sql_broker.Transport)
            assert conn.transport.polling_interval == pytest.approx(0.7)
    finally:
        get_settings.cache_clear()


def test_a_publish_wakes_a_waiting_consumer_long_before_its_poll(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kombu import Connection

    from core import sql_broker
    from core.settings import get_settings

    monkeypatch.setenv("SHRINK_BROKER_POLL_SECONDS", "5")
    get_settings.cache_clear()
    sql_broker.register()
    url = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    received: list[float] = []
    with Connection(url) as consumer, Connection(url) as producer:
        queue = consumer.SimpleQueue("cpu")
        sent = producer.SimpleQueue("cpu")

        def consume() -> None:
            message = queue.get(block=True, timeout=10)
            received.append(time.monotonic())
            message.ack()

        thread = threading.Thread(target=consume)
        thread.start()
        time.sleep(1.0)  # the consumer found the queue empty and waits on its socket
        published = time.monotonic()
        sent.put({"job": 1})
        thread.join(timeout=15)
        queue.close()
        sent.close()
    get_settings.cache_clear()
    assert received and received[0] - published < 1.0  # not the 5 s poll


def test_a_wake_up_to_a_gone_worker_removes_its_socket(tmp_path: Path) -> None:
    from core import sql_broker

    folder = sql_broker.wake_folder(f"sqlite:///{tmp_path / 'broker.db'}")
    assert folder is not None and len(str(folder)) < 80
    listener = sql_broker._Listener(folder)
    listener.sock.close()  # the worker died without cleaning up
    sql_broker.wake(folder)
    assert not listener.path.exists()
    assert sql_broker.wake_folder("postgresql://db/broker") is None
