"""Helpers shared by the ETL's test modules (tests/test_etl_*.py, test_api_sync.py,
test_api_reading.py); their fixtures are in tests/etl_fixtures.py (loaded with
``pytest_plugins = ["etl_fixtures"]``).

MongoDB cannot be installed on the test machines: the source is mongomock's
in-memory MongoClient, handed to the ETL through the same ``client_factory`` that
production fills with pymongo.MongoClient (tests/test_etl_mongodb.py runs against a
real server when MONGO_TEST_URI is set). PostgreSQL is the real server.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from etl.settings import EtlSettings, load_etl

MONGO_URI = "mongodb://mongo.test:27017"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Crash(BaseException):
    """A process dying at a checkpoint: not an Exception, so nothing records it."""


def crash_at(stage: str) -> Callable[[str], None]:
    def checkpoint(reached: str) -> None:
        if reached == stage:
            raise Crash(stage)

    return checkpoint


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
