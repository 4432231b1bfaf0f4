"""Fixtures and helpers shared by the proxy's test modules (tests/test_api_*.py).

Import the fixtures into a test module with
``from proxy_helpers import make_app, client  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from pgpulse.store.keys import create_key
from proxy import close_app, create_app

Factory = Callable[..., Flask]


@contextlib.contextmanager
def serving(app: Flask) -> Iterator[str]:
    """``app`` served on a free loopback port by werkzeug in a thread, for real clients
    (SDKs, Prometheus, a browser); yields its base URL, then stops and closes it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=60)
        close_app(app)


def live_proxy(db_url: str) -> contextlib.AbstractContextManager[str]:
    """A live proxy with auth on over ``db_url`` (see :func:`serving`)."""
    return serving(create_app({"DATABASE_URL": db_url, "PGPULSE_AUTH": "on"}))


@pytest.fixture
def make_app(db_url: str) -> Iterator[Factory]:
    """Build apps on the test's database: ``make_app(PGPULSE_AUTH="on", ...)``."""
    apps: list[Flask] = []

    def factory(**config: Any) -> Flask:
        merged: dict[str, Any] = {"DATABASE_URL": db_url, "PGPULSE_AUTH": "off", "TESTING": True}
        merged.update(config)
        app = create_app(merged)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        close_app(app)


@pytest.fixture
def client(make_app: Factory) -> FlaskClient:
    """A test client of an open (auth off) app on a fresh database."""
    return make_app().test_client()


def new_key(db_url: str, *scopes: str) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        key, _row = create_key(conn, "test", scopes)
    return key


def sample(name: str = "cpu_temp", value: float = 1.0, **labels: str) -> dict[str, Any]:
    return {"name": name, "labels": labels, "value": value}


def now() -> float:
    return time.time()


def assert_error(response, status: int) -> dict:
    """The response is a JSON error of ``status`` with the documented shape."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]
    return body
