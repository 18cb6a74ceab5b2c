"""The SQL broker (the embedded default, ``sqla+sqlite``): kombu's SQLAlchemy transport, polled
every ``SHRINK_BROKER_POLL_SECONDS`` instead of kombu's 1 s.

A SQL table cannot wake a waiting consumer, so a worker polls it; at kombu's 1 s a job waited
half a second on average between submit and start. An empty poll is one indexed SELECT per queue
on a local file, a few percent of one core at the default 20 ms (docs/benchmarks.md, the service).
kombu hands every transport option to ``create_engine``, which refuses ``polling_interval``, so
the interval is set on the transport itself, and the ``sqla``/``sqlalchemy`` URL schemes are
pointed at this transport by ``core.queue``.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy

from core.settings import get_settings


class Transport(kombu_sqlalchemy.Transport):
    def __init__(self, client: Any, **kwargs: Any):
        super().__init__(client, **kwargs)
        self.polling_interval = get_settings().broker_poll_seconds


def register() -> None:
    for scheme in ("sqla", "sqlalchemy"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
