"""Helpers shared by the ETL's test modules (tests/test_etl_*.py, test_api_sync.py,
test_api_reading.py); their fixtures are in tests/etl_fixtures.py (loaded with
``pytest_plugins = ["etl_fixtures"]``).

MongoDB cannot be installed on the test machines: the ETL's source is
:class:`MockSource`, the production MongoSource whose client (the network edge) is
mongomock's in-memory MongoClient (tests/test_etl_mongodb.py runs against a real
server when MONGO_TEST_URI is set). Faults come from sources that wrap it
(:class:`CrashAt`). PostgreSQL is the real server.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from etl.settings import EtlSettings, load_etl
from etl.source import MongoSource, Source

MONGO_URI = "mongodb://mongo.test:27017"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class MockSource(MongoSource):
    """The ETL's MongoDB source with mongomock's in-memory client in place of
    pymongo's; it records the options the ETL opens its client with."""

    def __init__(self, settings: EtlSettings, client: Any) -> None:
        super().__init__(settings)
        self.client = client
        self.opened: list[tuple[str, dict[str, Any]]] = []

    def open_client(self, uri: str, **options: Any) -> Any:
        self.opened.append((uri, options))
        return self.client


class Crash(BaseException):
    """A process dying: not an Exception, so nothing records it."""


class CrashAt:
    """A source through which a run dies like its process would, at ``stage``:

    * ``"claimed"``: right after the first claim, before anything is loaded;
    * ``"loaded"``: at the first mark, after the batch's PostgreSQL commit (the next
      batch is already claimed by then).
    """

    def __init__(self, source: Source, stage: str) -> None:
        if stage not in ("claimed", "loaded"):
            raise ValueError(stage)
        self.source, self.stage = source, stage

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def claim(self, *args: Any, **kwargs: Any) -> list[dict]:
        documents = self.source.claim(*args, **kwargs)
        if self.stage == "claimed" and documents:
            raise Crash(self.stage)
        return documents

    def mark_processed(self, *args: Any, **kwargs: Any) -> int:
        if self.stage == "loaded":
            raise Crash(self.stage)
        return self.source.mark_processed(*args, **kwargs)


def etl_settings(**env: str) -> EtlSettings:
    base = {"MONGO_URI": MONGO_URI}
    base.update(env)
    return load_etl(base)


def reading(i: int, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "status": "ingested",
        "device_id": f"dev-{i % 3}",
        "time": T0 + timedelta(seconds=i),
        "temperature": 20.0 + i / 10,
    }
    doc.update(fields)
    return doc


def count(conn: psycopg.Connection, sql: str, *params: Any) -> int:
    return conn.execute(sql, params).fetchone()[0]


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def statuses(collection) -> dict[str, int]:
    out: dict[str, int] = {}
    for doc in collection.find({}, {"status": 1}):
        out[doc.get("status")] = out.get(doc.get("status"), 0) + 1
    return out


def new_key(db_url: str, *scopes: str) -> str:
    from pgpulse.store.keys import create_key

    with psycopg.connect(db_url) as conn:
        key, _ = create_key(conn, "etl-test", scopes)
    return key


def error_of(response, status: int) -> dict:
    """The JSON error body of ``response``, which must have ``status``."""
    assert response.status_code == status, (response.status_code, response.data[:300])
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]
    return body
