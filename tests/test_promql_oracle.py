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

import os
from collections.abc import Iterator

import psycopg
import pytest
from promql_oracle import SPAN_MS, T0, Prometheus, differences, generate, load_into_pgpulse

from proxy import close_app, create_app

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
    # range functions over counters (resets, gaps, late starts, early ends)
    "rate(http_requests_total[5m])",
    "rate(http_requests_total[1m])",
    "rate(http_requests_total[17m])",
    "rate(http_requests_total[1h])",
    "rate(http_requests_total[5m] offset 5m)",
    "rate(http_requests_total[5m] @ 1767232000)",
    "rate(http_requests_total[10m] offset -3m)",
    "increase(http_requests_total[5m])",
    "increase(http_requests_total[30m])",
    "increase(http_requests_total[2m] offset 1m)",
    "irate(http_requests_total[5m])",
    "irate(http_requests_total[45s])",
    "delta(node_temperature_celsius[5m])",
    "delta(node_temperature_celsius[20m])",
    "idelta(node_temperature_celsius[5m])",
    "idelta(http_requests_total[2m])",
    "deriv(node_temperature_celsius[10m])",
    "deriv(http_requests_total[5m])",
    "resets(http_requests_total[30m])",
    "resets(http_requests_total[1h])",
    "changes(up[30m])",
    "changes(node_temperature_celsius[5m])",
    "changes(queue_depth[15m])",
    "predict_linear(node_temperature_celsius[10m], 600)",
    "predict_linear(http_requests_total[30m], 3600)",
    "predict_linear(node_temperature_celsius[5m] offset 5m, -120)",
    # *_over_time
    "avg_over_time(node_temperature_celsius[5m])",
    "avg_over_time(node_temperature_celsius[1h])",
    "sum_over_time(node_temperature_celsius[10m])",
    "sum_over_time(queue_depth[30m])",
    "min_over_time(node_temperature_celsius[7m])",
    "max_over_time(node_temperature_celsius[7m])",
    "max_over_time(http_requests_total[1h])",
    "count_over_time(http_requests_total[5m])",
    "count_over_time(up[1h])",
    "last_over_time(node_temperature_celsius[5m])",
    "last_over_time(http_requests_total[15m])",
    "quantile_over_time(0.9, node_temperature_celsius[15m])",
    "quantile_over_time(0.5, queue_depth[30m])",
    "quantile_over_time(0, node_temperature_celsius[10m])",
    "quantile_over_time(1.5, node_temperature_celsius[10m])",
    "stddev_over_time(node_temperature_celsius[10m])",
    "stdvar_over_time(node_temperature_celsius[10m])",
    "stddev_over_time(queue_depth[1h])",
    "present_over_time(http_requests_total[5m])",
    "absent_over_time(http_requests_total[5m])",
    'absent_over_time(http_requests_total{instance="i1"}[3m])',
    'absent_over_time(nonexistent{job="x"}[5m])',
    'absent_over_time(http_requests_total{job="web",instance="i3",method="POST"}[10m])',
    # subqueries
    "max_over_time(rate(http_requests_total[5m])[30m:1m])",
    "avg_over_time(node_temperature_celsius[10m:])",
    "min_over_time(sum(node_temperature_celsius)[20m:2m])",
    "rate(http_requests_total[5m:30s])",
    "max_over_time(deriv(node_temperature_celsius[5m])[15m:1m] offset 5m)",
    "sum_over_time(up[10m:1m] @ 1767232000)",
    "count_over_time(node_temperature_celsius[1h:5m])",
    "last_over_time(http_requests_total[10m:45s])",
    "quantile_over_time(0.75, rate(http_requests_total[2m])[20m:1m])",
    "avg_over_time(max_over_time(node_temperature_celsius[5m])[30m:3m])",
    # math and value functions
    "abs(node_temperature_celsius)",
    "ceil(node_temperature_celsius)",
    "floor(node_temperature_celsius)",
    "round(node_temperature_celsius)",
    "round(node_temperature_celsius, 0.25)",
    "round(node_temperature_celsius, 5)",
    "exp(node_temperature_celsius / 10)",
    "exp(node_temperature_celsius * 100)",
    "sqrt(node_temperature_celsius)",
    "ln(node_temperature_celsius)",
    "log2(queue_depth)",
    "log10(http_requests_total)",
    "sin(node_temperature_celsius)",
    "cos(node_temperature_celsius)",
    "tan(node_temperature_celsius)",
    "asin(node_temperature_celsius / 100)",
    "acos(node_temperature_celsius / 100)",
    "atan(node_temperature_celsius)",
    "sinh(node_temperature_celsius / 10)",
    "cosh(node_temperature_celsius / 10)",
    "tanh(node_temperature_celsius)",
    "asinh(node_temperature_celsius)",
    "acosh(node_temperature_celsius)",
    "atanh(node_temperature_celsius / 100)",
    "rad(node_temperature_celsius)",
    "deg(node_temperature_celsius)",
    "sgn(node_temperature_celsius)",
    "clamp(node_temperature_celsius, 0, 30)",
    "clamp(node_temperature_celsius, 30, 0)",
    "clamp_max(node_temperature_celsius, 20)",
    "clamp_min(node_temperature_celsius, 10)",
    "pi()",
    "time()",
    "vector(1)",
    "vector(time())",
    "scalar(sum(up))",
    "scalar(up)",
    "scalar(node_temperature_celsius{host=\"h1\"})",
    "timestamp(node_temperature_celsius)",
    "timestamp(node_temperature_celsius offset 5m)",
    "timestamp(sum(node_temperature_celsius))",
    "timestamp(node_temperature_celsius @ 1767230000)",
    "absent(nonexistent)",
    'absent(nonexistent{job="a",instance=~"x"})',
    "absent(up)",
    'absent(sum(nonexistent{job="a"}))',
    "sort(node_temperature_celsius)",
    "sort_desc(node_temperature_celsius)",
    "sort(rate(http_requests_total[5m]))",
    "day_of_month()",
    "day_of_week()",
    "day_of_year()",
    "days_in_month()",
    "hour()",
    "minute()",
    "month()",
    "year()",
    "hour(timestamp(up))",
    "minute(vector(1767230000))",
    "days_in_month(vector(1767230000))",
    # label manipulation
    'label_replace(queue_depth, "name", "$1", "queue", "([a-z]+)-.*")',
    'label_replace(queue_depth, "num", "${2}x", "queue", "([a-z]+)-([0-9]+)")',
    'label_replace(queue_depth, "queue", "", "queue", ".*")',
    'label_replace(queue_depth, "foo", "$1", "nonexistent", "(.*)")',
    'label_replace(queue_depth, "foo", "$1x", "queue", "(.*)")',
    'label_replace(up, "host", "$1:$2", "instance", "(i)(.*)")',
    'label_join(up, "endpoint", "/", "job", "instance")',
    'label_join(up, "job", "", "instance")',
    'label_join(queue_depth, "all", ",", "env", "queue", "missing")',
    # histograms
    "histogram_quantile(0.9, rate(request_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.5, sum by (le) (rate(request_duration_seconds_bucket[10m])))",
    "histogram_quantile(0.99, sum by (job, le) (increase(request_duration_seconds_bucket[1h])))",
    "histogram_quantile(0, request_duration_seconds_bucket)",
    "histogram_quantile(1, request_duration_seconds_bucket)",
    "histogram_quantile(1.5, request_duration_seconds_bucket)",
    "histogram_quantile(0.3, request_duration_seconds_bucket offset 1h)",
    'histogram_quantile(0.9, request_duration_seconds_bucket{le!="+Inf"})',
    "rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])",
    # aggregations
    "sum(http_requests_total)",
    "sum by (job) (rate(http_requests_total[5m]))",
    "sum without (instance) (rate(http_requests_total[5m]))",
    "sum by (job, method) (http_requests_total)",
    "sum(rate(http_requests_total[5m])) by (instance)",
    "avg(node_temperature_celsius)",
    "avg by (zone) (node_temperature_celsius)",
    "min(node_temperature_celsius)",
    "max by (zone) (node_temperature_celsius)",
    "count(http_requests_total)",
    "count by (job) (up == 1)",
    "group(http_requests_total)",
    "group by (job) (http_requests_total)",
    "stddev(node_temperature_celsius)",
    "stddev by (zone) (node_temperature_celsius)",
    "stdvar(node_temperature_celsius)",
    "stdvar without (host) (node_temperature_celsius)",
    "topk(3, node_temperature_celsius)",
    "topk(2, rate(http_requests_total[5m])) by (job)",
    "bottomk(2, node_temperature_celsius)",
    "bottomk(1, http_requests_total) by (method)",
    "topk(scalar(count(up)) - 4, node_temperature_celsius)",
    "topk(0, node_temperature_celsius)",
    "quantile(0.5, node_temperature_celsius)",
    "quantile by (zone) (0.9, node_temperature_celsius)",
    "quantile(-1, node_temperature_celsius)",
    'count_values("value", queue_depth)',
    'count_values by (env) ("v", queue_depth)',
    'count_values("value", up)',
    'count_values without (instance) ("state", up)',
    "sum(sum by (job) (http_requests_total))",
    "max(max_over_time(node_temperature_celsius[10m])) by (zone)",
    "avg without (job, instance, method) (rate(http_requests_total[5m]))",
    "sum by (__name__) ({__name__=~\"request_duration_seconds_(sum|count)\"})",
    "count without () (up)",
    "sum by () (up)",
    # binary operators with scalars
    "node_temperature_celsius + 1",
    "1 - node_temperature_celsius",
    "node_temperature_celsius * 1.8 + 32",
    "node_temperature_celsius / 0",
    "0 / node_temperature_celsius",
    "node_temperature_celsius % 7",
    "-node_temperature_celsius % 7",
    "node_temperature_celsius ^ 2",
    "2 ^ node_temperature_celsius",
    "node_temperature_celsius ^ 0.5",
    "node_temperature_celsius atan2 10",
    "node_temperature_celsius > 20",
    "node_temperature_celsius > bool 20",
    "20 < node_temperature_celsius",
    "20 > bool node_temperature_celsius",
    "node_temperature_celsius == 0",
    "up == 1",
    "up != bool 1",
    "queue_depth >= 20",
    "queue_depth <= bool 20",
    "-up",
    "-(-node_temperature_celsius)",
    "1 + 2 * 3",
    "2 ^ 3 ^ 2",
    "10 % 3",
    "5 > bool 3",
    "time() - 1767230000",
    "(1 + 2) / 0",
    "-1 ^ 0.5",
    # binary operators between vectors
    "rate(http_requests_total[5m]) / on(job, instance, method) http_requests_total",
    "http_requests_total - http_requests_total offset 5m",
    "node_temperature_celsius - ignoring(zone) node_temperature_celsius offset 1m",
    "sum by (job) (rate(http_requests_total[5m])) / on(job) group_left sum by (job) (up)",
    "rate(http_requests_total[5m]) / on(job) group_left sum by (job) (rate(http_requests_total[5m]))",
    "rate(http_requests_total[5m]) * on(job) group_left(version) build_info",
    "build_info * on(job) group_right(version) up",
    "up * on(job) group_right build_info",
    "up > on(job, instance) group_left rate(http_requests_total{method=\"GET\"}[5m])",
    "up == bool on(job, instance) up offset 10m",
    "node_temperature_celsius > ignoring(host, zone) group_left avg(node_temperature_celsius)",
    "node_temperature_celsius / ignoring(host, zone) group_left sum(node_temperature_celsius)",
    "up + on() group_left sum(up)",
    'http_requests_total{method="GET"} + ignoring(method) http_requests_total{method="POST"}',
    'http_requests_total{method="GET"} > bool ignoring(method) http_requests_total{method="POST"}',
    'http_requests_total{method="GET"} / on(job, instance) http_requests_total{method="POST"}',
    "request_duration_seconds_sum / request_duration_seconds_count",
    "up and on(job) build_info",
    "up and up > 0",
    "http_requests_total and on(instance) up == 0",
    "node_temperature_celsius or up",
    'http_requests_total{job="api"} or http_requests_total{method="GET"}',
    "up or on(job) build_info",
    "node_temperature_celsius unless node_temperature_celsius > 25",
    "up unless on(instance) http_requests_total",
    'http_requests_total unless ignoring(method) http_requests_total{method="GET"}',
    "(up == 1) or vector(0)",
    "sum(up) or vector(0)",
    "absent(up{job=\"db\"}) or sum(up)",
    "vector(1) and on() (sum(up) > 3)",
    "node_temperature_celsius atan2 node_temperature_celsius offset 5m",
    "node_temperature_celsius ^ ignoring() (node_temperature_celsius offset 1m / 100)",
    "rate(http_requests_total[5m]) > 0.5 and rate(http_requests_total[5m]) < 2",
    "scalar(sum(up)) * node_temperature_celsius",
    "node_temperature_celsius - scalar(avg(node_temperature_celsius))",
    "-sum by (job) (up)",
    "(node_temperature_celsius > 10) * 2",
    "sum(rate(http_requests_total[5m])) / sum(rate(http_requests_total[5m] offset 1h))",
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
    name = f"pgpulse_oracle_{os.getpid()}"
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


# Queries both refuse: the same status and errorType (never a 500).
BAD = [
    ("/api/v1/query", {"query": "sum("}),
    ("/api/v1/query", {"query": "rate(http_requests_total)"}),
    ("/api/v1/query", {"query": "nosuchfunction(up)"}),
    ("/api/v1/query", {"query": "{}"}),
    ("/api/v1/query", {"query": '{job=""}'}),
    ("/api/v1/query", {"query": 'up{job=~"("}'}),
    ("/api/v1/query", {"query": "up + "}),
    ("/api/v1/query", {"query": 'topk("a", up)'}),
    ("/api/v1/query", {"query": "count_values(3, up)"}),
    ("/api/v1/query", {"query": "up[5m] offset"}),
    ("/api/v1/query", {"query": "1 > 2"}),
    ("/api/v1/query", {"query": "up and 1"}),
    ("/api/v1/query", {"query": "up", "time": "yesterday"}),
    ("/api/v1/query", {"query": 'label_replace(up, "1bad", "", "job", ".*")'}),
    ("/api/v1/query", {"query": 'label_replace(up, "a", "", "job", "(")'}),
    ("/api/v1/query", {"query": 'label_join(up, "a", ",", "1bad")'}),
    ("/api/v1/query", {"query": "up / on(job) up", "time": "1767231000"}),
    ("/api/v1/query", {"query": "http_requests_total + on(job) group_left up", "time": "1767231000"}),
    ("/api/v1/query", {"query": "rate({__name__=~\"request_duration_seconds_(sum|count)\"}[5m])", "time": "1767231000"}),
    ("/api/v1/query_range", {"query": "up", "start": "1767228000", "end": "1767230000",
                             "step": "0"}),
    ("/api/v1/query_range", {"query": "up", "start": "1767228000", "end": "1767230000",
                             "step": "-5"}),
    ("/api/v1/query_range", {"query": "up", "start": "1767230000", "end": "1767228000",
                             "step": "60"}),
    ("/api/v1/query_range", {"query": "up", "start": "1767228000", "end": "1767238000",
                             "step": "0.5"}),
    ("/api/v1/query_range", {"query": "up[5m]", "start": "1767228000", "end": "1767230000",
                             "step": "60"}),
    ("/api/v1/query_range", {"query": '"text"', "start": "1767228000", "end": "1767230000",
                             "step": "60"}),
    ("/api/v1/query_range", {"query": "up", "start": "1767228000", "end": "1767230000",
                             "step": "a minute"}),
    ("/api/v1/query_range", {"query": "up", "end": "1767230000", "step": "60"}),
    ("/api/v1/series", {}),
    ("/api/v1/series", {"match[]": "rate(up[5m])"}),
]


@pytest.mark.parametrize(("path", "params"), BAD)
def test_bad_queries_are_refused_as_prometheus_refuses_them(oracle, pgpulse, path, params):
    status, expected = oracle.get(path, params)
    r = pgpulse.get(path, query_string=params)
    got = r.get_json()
    assert status >= 400, expected
    assert r.status_code == status, (got, expected)
    assert got["status"] == "error" and got["errorType"] == expected["errorType"], (got, expected)
    assert got["error"]
