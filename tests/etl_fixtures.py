"""Fixtures of the ETL's test modules: ``pytest_plugins = ["etl_fixtures"]``.

MongoDB cannot be installed on the test machines: ``mongo`` is mongomock's
in-memory MongoClient, and the ETL reads it through :class:`etl_helpers.MockSource`
(the production source with that client in place of pymongo's).
"""

from __future__ import annotations

from typing import Any

import mongomock
import pytest


@pytest.fixture
def mongo() -> mongomock.MongoClient:
    return mongomock.MongoClient(tz_aware=True)


@pytest.fixture
def readings(mongo):
    """The reading collection of the default settings."""
    return mongo["pgpulse"]["readings"]


@pytest.fixture
def etl(db_url, mongo):
    """``etl(settings, client=None)``: an ETL service on the test's database reading
    from ``client`` (default: the test's mongomock client); closed after the test."""
    from etl_helpers import MockSource

    from etl.service import EtlService

    made: list[EtlService] = []

    def make(settings, client: Any = None) -> EtlService:
        service = EtlService(db_url, settings, MockSource(settings, mongo if client is None else client))
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()


@pytest.fixture
def mocked_mongo(monkeypatch, mongo) -> mongomock.MongoClient:
    """Every MongoSource made during the test (e.g. by ``pgpulse etl``) opens the
    test's mongomock client instead of connecting with pymongo."""
    from etl.source import MongoSource

    monkeypatch.setattr(MongoSource, "open_client", lambda self, uri, **options: mongo)
    return mongo


@pytest.fixture
def etl_app(db_url, mongo):
    """Build proxy apps on the test's database whose ETL reads the test's mongomock
    client: ``etl_app(PGPULSE_AUTH="on", MONGO_URI=...)``; ``mock=False``: the real
    source (pymongo), for unreachable or unusable MongoDB settings."""
    from etl_helpers import MONGO_URI, MockSource

    from etl.settings import load_etl
    from proxy import close_app, create_app

    apps = []

    def make(mock: bool = True, **config: Any):
        merged: dict[str, Any] = {"DATABASE_URL": db_url, "PGPULSE_AUTH": "off", "TESTING": True,
                                  "MONGO_URI": MONGO_URI}
        merged.update(config)
        merged = {k: v for k, v in merged.items() if v is not None}
        source = MockSource(load_etl(merged), mongo) if mock else None
        app = create_app(merged, etl_source=source)
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)
