"""PromQL answers equal to Prometheus's own: Debian's Prometheus 2.42 is the oracle.

One generated data set (tests/promql_oracle.py) is backfilled into a real Prometheus
(``promtool tsdb create-blocks-from openmetrics``, then /usr/bin/prometheus on a
free loopback port) and written into pgpulse through the store. Every expression of
the corpus runs through both HTTP APIs as instant queries at several times and as
range queries at several steps; the answers must be equal: same series and labels,
same timestamps, values within 1e-9 relative or both NaN. Expressions pgpulse
refuses are in REFUSED (docs/api.md lists them with the reason) and must be
answered with Prometheus's error envelope and a 400.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import psycopg
import pytest
from promql_oracle import SPAN_MS, T0, Prometheus, differences, generate, load_into_pgpulse

from proxy import close_app, create_app

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None and
                                not __import__("os").path.exists("/usr/bin/prometheus"),
                                reason="Debian's prometheus package is required (.ci/run installs it)")

S = 1000
# Instant queries: inside the data, right after a gap, and past the end (lookback).
INSTANT_TIMES = [T0 + 2832 * S + 345, T0 + 2 * 3600 * S, T0 + SPAN_MS + 100 * S]
# Range queries: (start, end, step) in ms; irregular steps and a fine one.
RANGES = [
    (T0 + 2400 * S, T0 + SPAN_MS + 400 * S, 60 * S),
    (T0 + 1000 * S + 500, T0 + SPAN_MS, 137 * S + 250),
    (T0 + 3600 * S, T0 + 3600 * S + 1800 * S, 15 * S),
    (T0, T0 + SPAN_MS, 300 * S),
]

CORPUS: list[str] = [
    # selectors and matchers
    "http_requests_total",
    'http_requests_total{job="api"}',
    'http_requests_total{job!="api"}',
    'http_requests_total{instance=~"i[12]"}',
    'http_requests_total{instance!~"i[12]",method="GET"}',
    '{__name__="up"}',
    '{__name__=~"node_.*"}',
    '{__name__=~"request_duration_seconds_(sum|count)"}',
    'up{job=~"a.*|w.*",instance!="i3"}',
    'http_requests_total{method=~"get|post"}',
    'http_requests_total{job=""}',
    'queue_depth{queue=~".*-2+"}',
    "node_temperature_celsius",
    "node_temperature_celsius offset 10m",
    "node_temperature_celsius offset -7m",
    "node_temperature_celsius @ 1767230000",
    "node_temperature_celsius @ 1767230000.5 offset 3m",
    "http_requests_total @ start()",
    "http_requests_total @ end()",
    "up offset 1h",
    "build_info",
]


@pytest.fixture(scope="module")
def oracle(tmp_path_factory) -> Iterator[Prometheus]:
    prometheus = Prometheus(tmp_path_factory.mktemp("prometheus"), DATA)
    try:
        yield prometheus
    finally:
        prometheus.stop()


DATA = generate()


@pytest.fixture(scope="module")
def pgpulse(pg_server, template_db) -> Iterator:
    name = f"pgpulse_oracle_{__import__('os').getpid()}"
    with pg_server.janitor(name, template_dbname=template_db):
        url = pg_server.url(name)
        with psycopg.connect(url) as conn:
            load_into_pgpulse(DATA, conn)
        app = create_app({"DATABASE_URL": url, "PGPULSE_AUTH": "off", "TESTING": True})
        try:
            yield app.test_client()
        finally:
            close_app(app)


def _fmt(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def _compare(oracle, pgpulse, path: str, params: dict[str, str]) -> list[str]:
    status, expected = oracle.get(path, params)
    r = pgpulse.get(path, query_string=params)
    got = r.get_json()
    if status != 200:
        return [] if r.status_code == status else [f"{path} {params}: pgpulse answered "
                                                   f"{r.status_code} {got}, Prometheus {status} "
                                                   f"{expected}"]
    if r.status_code != 200:
        return [f"{path} {params}: pgpulse answered {r.status_code}: {got}"]
    problems = differences(expected["data"], got["data"])
    return [f"{path} {params}: {p}" for p in problems]


@pytest.mark.parametrize("expr", CORPUS)
def test_same_answers_as_prometheus(oracle, pgpulse, expr):
    problems: list[str] = []
    for t in INSTANT_TIMES:
        problems += _compare(oracle, pgpulse, "/api/v1/query", {"query": expr, "time": _fmt(t)})
    for start, end, step in RANGES:
        params = {"query": expr, "start": _fmt(start), "end": _fmt(end), "step": _fmt(step)}
        problems += _compare(oracle, pgpulse, "/api/v1/query_range", params)
    assert not problems, "\n".join(problems[:10])
