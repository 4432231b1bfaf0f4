"""Fixtures of the ETL's test modules: ``pytest_plugins = ["etl_fixtures"]``.

MongoDB cannot be installed on the test machines: ``mongo`` is mongomock's
in-memory MongoClient, handed to the ETL through the same ``client_factory`` that
production fills with pymongo.MongoClient.
"""

from __future__ import annotations

from collections.abc import Callable
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
def factory(mongo) -> Callable[..., Any]:
    """A client factory returning the test's mongomock client; it records the options
    the ETL passes (timeouts, decoding)."""

    def make(uri: str, **options: Any) -> mongomock.MongoClient:
        make.calls.append((uri, options))  # type: ignore[attr-defined]
        return mongo

    make.calls = []  # type: ignore[attr-defined]
    return make


@pytest.fixture
def etl_app(db_url, factory):
    """Build proxy apps on the test's database with the ETL's source injected:
    ``etl_app(PGPULSE_AUTH="on", MONGO_URI=...)``."""
    from etl_helpers import MONGO_URI

    from proxy import close_app, create_app

    apps = []

    def make(**config: Any):
        merged: dict[str, Any] = {"DATABASE_URL": db_url, "PGPULSE_AUTH": "off", "TESTING": True,
                                  "MONGO_URI": MONGO_URI, "ETL_CLIENT_FACTORY": factory}
        merged.update(config)
        merged = {k: v for k, v in merged.items() if v is not None}
        app = create_app(merged)
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)
