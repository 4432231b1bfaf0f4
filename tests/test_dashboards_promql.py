"""Every PromQL query of the provisioned Grafana dashboards and alert rules runs, and
shows data, through the proxy's Prometheus API with the data source's read-only key.

Grafana cannot run on these machines: this test is its stand-in (the full stack runs
the real one). It does what Grafana's Prometheus data source does with the
provisioned files (``grafana_prom.py``): reads the data source from
``grafana/provisioning/datasources/pgpulse.yml`` (its header, with
``${GRAFANA_QUERY_KEY}`` set to a key of the ``query`` scope, its HTTP method and
``timeInterval``); resolves each dashboard's variables with ``label_values()``
queries; replaces template variables, ``$__interval``, ``$__rate_interval`` and
``$__range`` as Grafana would; and sends every target as a range query (start and
end aligned to the step) or an instant query, for three time ranges (1 hour, 2 days,
30 days), to a live proxy (werkzeug, auth on) over a real PostgreSQL.

The data arrives through pgpulse's own remote write API (``/api/v1/write``, snappy
protobuf, an ingest key): the demo app's OpenTelemetry HTTP metrics as OTLP maps
them (``http_server_request_duration_seconds_bucket{le}``, ``_sum``, ``_count``,
``http_server_active_requests``, ``demo_requests_total``, ``demo_errors_total``)
with the demo's bucket bounds, every ``timeInterval`` of the data source (10 s, the
interval of ``make demo``'s exports) over the last 3 hours and every 30 minutes back
to 20 days, then rolled up into the tiers. Routes have exponential
durations of known means and known request rates, so the RED panels' numbers are
checked, not only their presence.

A query that fails, or answers no series (or only NaN) on data that should show,
fails its test. The database is the one of the engine under test
(``PGPULSE_TEST_ENGINE``, conftest.py).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cramjam
import pytest
import requests
import yaml
from grafana_prom import (
    Query,
    chosen,
    format_interval,
    go_duration,
    interpolate,
    label_values_request,
    variable_options,
)
from grafana_sql import TimeRange, Variable, interval_to_ms
from proxy_helpers import new_key, serving

from demo.telemetry import DURATION_BUCKETS
from pgpulse import tiers
from pgpulse.protocols.prompb import MetricMetadata, WriteRequest
from pgpulse.settings import load_core
from proxy import create_app

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
ALERTS = GRAFANA / "provisioning" / "alerting" / "pgpulse-rules.yml"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "pgpulse.yml"
COMPOSE = ROOT / "docker-compose.yml"
PROM_UID = "pgpulse-prometheus"
RANGES = {"1h": timedelta(hours=1), "2d": timedelta(days=2), "30d": timedelta(days=30)}

# The demo's routes: (method, route, status, mean duration in s, requests per second,
# error type of a failure).
ROUTES = [("GET", "/api/items", "200", 0.02, 3.0, None), ("POST", "/api/orders", "201", 0.1, 1.0, None),
          ("POST", "/api/orders", "500", 0.6, 0.05, "PaymentTimeout"), ("GET", "/api/report", "200", 1.2, 0.3, None)]
JOB, INSTANCE = "pgpulse-demo", "demo-1:4242"
DURATION = "http_server_request_duration_seconds"


# -- the provisioned data source ---------------------------------------------------------


def datasource() -> dict:
    sources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return next(s for s in sources if s["uid"] == PROM_UID)


def provisioned_headers(key: str) -> dict[str, str]:
    """The headers Grafana adds to every request of the data source: each
    ``httpHeaderNameN`` with its ``secureJsonData.httpHeaderValueN``, ``${VAR}``
    expanded from the environment as Grafana's provisioning does."""
    source = datasource()
    env = {"GRAFANA_QUERY_KEY": key}
    headers = {}
    for field, name in source["jsonData"].items():
        m = re.fullmatch(r"httpHeaderName(\d+)", field)
        if m:
            value = source["secureJsonData"][f"httpHeaderValue{m.group(1)}"]
            headers[name] = re.sub(r"\$\{(\w+)\}", lambda v: env[v.group(1)], value)
    return headers


def test_the_datasource_points_at_the_proxy_with_a_key_in_a_header():
    source = datasource()
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    compose = yaml.safe_load(COMPOSE.read_text())
    proxy = compose["services"]["proxy"]["environment"]
    assert source["url"] == f"http://proxy:{proxy['PORT']}" and proxy["PGPULSE_AUTH"] == "on"
    assert source["jsonData"]["httpMethod"] == "POST"
    # The key is a secret: in secureJsonData, from the environment, never in the URL.
    assert provisioned_headers("pgpk_example") == {"Authorization": "Bearer pgpk_example"}
    assert "GRAFANA_QUERY_KEY" not in source["url"]
    # Only Grafana is given the key.
    given = {name for name, svc in compose["services"].items()
             if isinstance(svc.get("environment"), dict) and "GRAFANA_QUERY_KEY" in svc["environment"]}
    assert given == {"grafana"}
    assert compose["services"]["grafana"]["environment"]["GRAFANA_QUERY_KEY"] == "${GRAFANA_QUERY_KEY:-}"


# -- the data: the demo app's metrics, through remote write --------------------------------


def sample_times(now: float) -> list[int]:
    """Every ``timeInterval`` of the data source (what it tells Grafana the senders'
    interval is) over the last 3 hours, every 30 minutes back to 20 days (ms)."""
    every = interval_to_ms(datasource()["jsonData"]["timeInterval"]) // 1000
    recent_start = (now - 3 * 3600) // 60 * 60
    recent = [recent_start + every * i for i in range(int((now - recent_start) // every) + 1)]
    old_start = (now - 20 * 86400) // 3600 * 3600
    old = [old_start + 1800 * i for i in range(int((recent_start - 1 - old_start) // 1800) + 1)]
    return [int(t * 1000) for t in old + recent]


def demo_series(times: list[int]) -> list[tuple[dict[str, str], list[tuple[float, int]]]]:
    """(labels, [(value, ms)]) of every series, counters growing at each route's rate
    since 21 days ago, buckets following the exponential distribution of its mean."""
    base = times[0] / 1000 - 86400
    out = []
    for method, route, status, mean, rps, error in ROUTES:
        common = {"job": JOB, "instance": INSTANCE, "http_request_method": method, "http_route": route,
                  "http_response_status_code": status}
        if error:
            common["error_type"] = error

        def counter(name: str, factor: float, extra: dict[str, str] | None = None, labels=common,
                    rps=rps) -> None:
            out.append(({"__name__": name, **labels, **(extra or {})},
                        [(rps * factor * (t / 1000 - base), t) for t in times]))

        for le in DURATION_BUCKETS:
            counter(f"{DURATION}_bucket", 1 - math.exp(-le / mean), {"le": f"{le:g}"})
        counter(f"{DURATION}_bucket", 1, {"le": "+Inf"})
        counter(f"{DURATION}_sum", mean)
        counter(f"{DURATION}_count", 1)
        counter("demo_requests_total", 1)
        if error:
            counter("demo_errors_total", 1, labels={"job": JOB, "instance": INSTANCE, "http_route": route,
                                                    "error_type": error})
    for method, route in {(m, r) for m, r, *_ in ROUTES}:
        out.append(({"__name__": "http_server_active_requests", "job": JOB, "instance": INSTANCE,
                     "http_request_method": method, "http_route": route},
                    [(2 + math.sin(t / 300_000), t) for t in times]))
    return out


METADATA = [(DURATION, MetricMetadata.HISTOGRAM, "Duration of HTTP server requests.", "s"),
            ("http_server_active_requests", MetricMetadata.GAUGE, "HTTP server requests in flight.", ""),
            ("demo_requests_total", MetricMetadata.COUNTER, "Requests answered.", ""),
            ("demo_errors_total", MetricMetadata.COUNTER, "Requests that failed.", "")]


def remote_write(base: str, key: str, series: list) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Encoding": "snappy",
               "Content-Type": "application/x-protobuf", "X-Prometheus-Remote-Write-Version": "0.1.0"}
    per_request = 20
    for i in range(0, len(series), per_request):
        req = WriteRequest()
        for labels, points in series[i:i + per_request]:
            ts = req.timeseries.add()
            for name, value in sorted(labels.items()):
                ts.labels.add(name=name, value=value)
            for value, t in points:
                ts.samples.add(value=value, timestamp=t)
        if i == 0:
            for family, typ, help_, unit in METADATA:
                req.metadata.add(metric_family_name=family, type=typ, help=help_, unit=unit)
        body = bytes(cramjam.snappy.compress_raw(req.SerializeToString()))
        r = requests.post(f"{base}/api/v1/write", data=body, headers=headers, timeout=120)
        assert r.status_code in (200, 204), r.text


# -- resolving variables and running every query, as Grafana ------------------------------


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def prom_targets(dashboard: dict) -> list[tuple[dict, dict]]:
    return [(panel, t) for panel in panels(dashboard) for t in panel.get("targets", [])
            if (t.get("datasource") or panel.get("datasource") or {}).get("uid") == PROM_UID]


def prom_dashboards() -> list[Path]:
    return [p for p in DASHBOARDS if prom_targets(load_json(p))]


def alert_queries() -> list[tuple[str, dict, int]]:
    """(rule uid, query model, seconds back) of every rule's PromQL step."""
    out = []
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            for step in rule["data"]:
                if step["datasourceUid"] == PROM_UID:
                    out.append((rule["uid"], step["model"], step["relativeTimeRange"]["from"]))
    return out


@dataclasses.dataclass
class Answer:
    params: dict[str, str]
    status: int
    body: dict[str, Any]


class Grafana:
    """The requests of Grafana's Prometheus data source to ``base``."""

    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.headers = provisioned_headers(key)
        self.method = datasource()["jsonData"]["httpMethod"]
        self.time_interval = datasource()["jsonData"].get("timeInterval")

    def call(self, path: str, params: dict[str, str], method: str | None = None) -> Answer:
        if (method or self.method) == "POST":
            r = requests.post(self.base + path, data=params, headers=self.headers, timeout=300)
        else:
            r = requests.get(self.base + path, params=params, headers=self.headers, timeout=300)
        return Answer(params, r.status_code, r.json())

    def variables(self, dashboard: dict, time_range: TimeRange) -> tuple[dict[str, Variable], dict[str, list]]:
        """Each query variable, in order (a later one may use an earlier one)."""
        chosen_vars: dict[str, Variable] = {}
        options: dict[str, list] = {}
        for var in dashboard["templating"]["list"]:
            if var["type"] != "query" or var["datasource"]["uid"] != PROM_UID:
                continue
            path, params = label_values_request(var["query"]["query"], chosen_vars)
            params |= {"start": str(int(time_range.start.timestamp())), "end": str(int(time_range.end.timestamp()))}
            answer = self.call(path, params, "GET")  # a GET-only endpoint, in Prometheus too
            assert answer.status == 200, (var["name"], answer.body)
            options[var["name"]] = variable_options(answer.body["data"], var.get("regex", ""))
            chosen_vars[var["name"]] = chosen(var, options[var["name"]])
        return chosen_vars, options

    def run(self, target: dict, time_range: TimeRange, variables: dict[str, Variable]) -> Answer:
        query = Query(target["expr"], time_range, variables, time_interval=self.time_interval)
        if target.get("instant") and not target.get("range"):
            return self.call("/api/v1/query", query.instant_params())
        return self.call("/api/v1/query_range", query.range_params())


def target_key(dashboard: str, range_name: str, panel: dict, target: dict) -> str:
    return f"{dashboard}|{range_name}|{panel['id']}|{target['refId']}"


@pytest.fixture(scope="module")
def grafana(module_db_url) -> Any:
    config = {"DATABASE_URL": module_db_url, "PGPULSE_AUTH": "on",
              "PROXY_MAX_SAMPLE_AGE_SECONDS": str(31 * 86400)}
    with serving(create_app(config)) as base:
        now = datetime.now(UTC).replace(microsecond=0)
        remote_write(base, new_key(module_db_url, "ingest"), demo_series(sample_times(now.timestamp())))
        tiers.refresh(module_db_url, load_core({}, database_url=module_db_url), backfill=True)
        yield Grafana(base, new_key(module_db_url, "query")), now


@pytest.fixture(scope="module")
def results(grafana) -> dict[str, Any]:
    client, now = grafana
    out: dict[str, Any] = {"vars": {}, "answers": {}}
    for path in prom_dashboards():
        dash = load_json(path)
        for range_name, span in RANGES.items():
            time_range = TimeRange.last(span, now)
            variables, options = client.variables(dash, time_range)
            out["vars"][(path.name, range_name)] = options
            for panel, t in prom_targets(dash):
                out["answers"][target_key(path.name, range_name, panel, t)] = client.run(t, time_range, variables)
    for uid, model, seconds in alert_queries():
        out["answers"][uid] = client.run(model, TimeRange.last(timedelta(seconds=seconds), now), {})
    return out


# -- the tests ----------------------------------------------------------------------------


def _target_params() -> list:
    params = []
    for path in prom_dashboards():
        for panel, t in prom_targets(load_json(path)):
            for r in RANGES:
                params.append(pytest.param(path.name, r, panel, t,
                                           id=f"{path.stem}-{r}-{panel['id']}{t['refId']}-{panel['title'][:40]}"))
    return params


def values(answer: Answer) -> list[float]:
    data = answer.body["data"]
    if data["resultType"] == "matrix":
        return [float(v) for s in data["result"] for _, v in s["values"]]
    if data["resultType"] == "vector":
        return [float(s["value"][1]) for s in data["result"]]
    return [float(data["result"][1])]


@pytest.mark.parametrize(("dashboard", "range_name", "panel", "target"), _target_params())
def test_panel_query_runs_and_shows_data(results, dashboard, range_name, panel, target):
    answer = results["answers"][target_key(dashboard, range_name, panel, target)]
    assert answer.status == 200, f"{panel['title']}: {answer.body}\n{answer.params}"
    assert answer.body["status"] == "success"
    assert "$" not in answer.params["query"], f"a variable left in {answer.params['query']}"
    expected = "vector" if target.get("instant") and not target.get("range") else "matrix"
    assert answer.body["data"]["resultType"] == expected, answer.body["data"]["resultType"]
    assert any(not math.isnan(v) for v in values(answer)), f"{panel['title']}: no data\n{answer.params}"


@pytest.mark.parametrize(("uid", "model", "seconds"), alert_queries(), ids=[a[0] for a in alert_queries()])
def test_alert_query_returns_labelled_numbers(results, uid, model, seconds):
    answer = results["answers"][uid]
    assert answer.status == 200, f"{uid}: {answer.body}"
    assert model.get("instant") and not model.get("range"), "alert rules evaluate instant queries"
    result = answer.body["data"]["result"]
    assert answer.body["data"]["resultType"] == "vector" and result, f"{uid}: no series\n{answer.params}"
    # Grafana makes one alert instance per series, labelled by the series' labels.
    assert len({json.dumps(s["metric"], sort_keys=True) for s in result}) == len(result)
    assert all(not math.isnan(float(s["value"][1])) for s in result)


def test_the_alert_rules_use_promql_where_they_are_about_application_metrics():
    assert [uid for uid, _, _ in alert_queries()] == ["pgpulse-http-errors"]


def test_variables_find_the_data(results):
    options = results["vars"][("app-metrics.json", "1h")]
    assert options["metric"] == ["demo_errors_total", "demo_requests_total", "http_server_active_requests",
                                 f"{DURATION}_bucket", f"{DURATION}_count", f"{DURATION}_sum"]
    assert options["job"] == [JOB]
    assert options["histogram"] == [DURATION]
    for range_name in RANGES:
        red = results["vars"][("http-red.json", range_name)]
        assert red["job"] == [JOB]
        assert red["route"] == ["/api/items", "/api/orders", "/api/report"]


def test_save_and_test_passes(grafana):
    """Grafana's "Save & test" of the data source: the instant query ``1+1`` (its
    health check) with the provisioned header, and the build information it reads
    to know which Prometheus it speaks to."""
    client, now = grafana
    r = client.call("/api/v1/query", {"query": "1+1", "time": str(int(now.timestamp()))})
    assert r.status == 200 and r.body["data"] == {"resultType": "scalar", "result": [int(now.timestamp()), "2"]}
    r = client.call("/api/v1/status/buildinfo", {}, "GET")
    assert r.status == 200 and r.body["data"]["version"] == datasource()["jsonData"]["prometheusVersion"]


def test_the_key_is_read_only(grafana):
    client, _ = grafana
    r = requests.post(client.base + "/api/v1/write", data=b"", headers=client.headers, timeout=60)
    assert r.status_code == 403, r.text
    r = requests.post(client.base + "/api/ingest", json={"metrics": []}, headers=client.headers, timeout=60)
    assert r.status_code == 403, r.text


def test_without_the_key_the_datasource_is_refused(grafana):
    client, _ = grafana
    r = requests.post(client.base + "/api/v1/query", data={"query": "1"}, timeout=60)
    assert r.status_code == 401 and r.json()["errorType"] == "unauthorized"


def _by_label(answer: Answer, label: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    data = answer.body["data"]
    for s in data["result"]:
        points = s["values"] if data["resultType"] == "matrix" else [s["value"]]
        out.setdefault(s["metric"].get(label, ""), []).extend(float(v) for _, v in points)
    return out


def _cdf(le: float, mean: float) -> float:
    return 1 - math.exp(-le / mean)


def _quantile(q: float, mean: float) -> float:
    """histogram_quantile() of the demo's buckets for an exponential distribution."""
    lower = 0.0
    for le in DURATION_BUCKETS:
        if _cdf(le, mean) >= q:
            lo = _cdf(lower, mean) if lower else 0.0
            return lower + (le - lower) * (q - lo) / (_cdf(le, mean) - lo)
        lower = le
    return DURATION_BUCKETS[-1]


def test_red_panels_give_the_seeded_rates_and_quantiles(results):
    """The routes' request rates, 5xx share and p95 durations, as the RED panels show
    them over the last hour (raw samples every 10 s: rates exact)."""
    dash = load_json(GRAFANA / "dashboards" / "http-red.json")
    by_title = {(panel["title"], t["refId"]): (panel, t) for panel, t in prom_targets(dash)}

    def answer(title: str, ref: str = "A") -> Answer:
        panel, t = by_title[(title, ref)]
        return results["answers"][target_key("http-red.json", "1h", panel, t)]

    rate = _by_label(answer("Requests per second by route"), "http_route")
    assert rate["/api/items"] and all(v == pytest.approx(3.0, rel=1e-9) for v in rate["/api/items"])
    assert all(v == pytest.approx(1.05, rel=1e-9) for v in rate["/api/orders"])
    share = _by_label(answer("5xx share by route"), "http_route")
    assert set(share) == {"/api/orders"}
    assert all(v == pytest.approx(100 * 0.05 / 1.05, rel=1e-9) for v in share["/api/orders"])
    p95 = _by_label(answer("Duration p95 by route"), "http_route")
    assert all(v == pytest.approx(_quantile(0.95, 0.02), rel=1e-9) for v in p95["/api/items"])
    assert all(v == pytest.approx(_quantile(0.95, 1.2), rel=1e-9) for v in p95["/api/report"])
    total = values(answer("Requests per second"))
    assert total == [pytest.approx(3 + 1 + 0.05 + 0.3, rel=1e-6)]
    failures = answer("Failures per second by error type").body["data"]["result"]
    assert {(s["metric"].get("error_type"), s["metric"]["http_response_status_code"]) for s in failures} == {
        ("PaymentTimeout", "500")}


def test_a_selection_of_routes_is_a_regex_of_those_routes(grafana):
    """Two routes picked in the ``route`` variable: Grafana sends ``(a|b)``, each
    escaped for a regular expression; the panel shows those routes only."""
    client, now = grafana
    dash = load_json(GRAFANA / "dashboards" / "http-red.json")
    time_range = TimeRange.last(RANGES["1h"], now)
    variables, _ = client.variables(dash, time_range)
    variables["route"] = Variable("route", ["/api/items", "/api/report"], True, True)
    panel, target = next((p, t) for p, t in prom_targets(dash) if p["title"] == "Requests per second by route")
    answer = client.run(target, time_range, variables)
    assert 'http_route=~"(/api/items|/api/report)"' in answer.params["query"]
    rate = _by_label(answer, "http_route")
    assert set(rate) == {"/api/items", "/api/report"}
    assert all(v == pytest.approx(0.3, rel=1e-9) for v in rate["/api/report"])


def test_variables_and_intervals_are_written_as_grafana_writes_them():
    now = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
    multi = {"route": Variable("route", ["/a.b", "/c"], True, True), "job": Variable("job", 'x"y')}
    assert interpolate('{job="$job", r=~"$route"}', multi) == '{job="x\\"y", r=~"(/a\\\\.b|/c)"}'
    # 1 hour over 1,000 points: 3.6 s, rounded to 5 s, raised to timeInterval 10 s;
    # $__rate_interval = max(10 s + 10 s, 4 x 10 s).
    q = Query("rate(x[$__rate_interval]) $__interval $__range", TimeRange.last(RANGES["1h"], now), {},
              time_interval="10s")
    assert q.expr == "rate(x[40s]) 10s 3600s" and q.step_ms == 10_000
    # 30 days: 2,592 s rounded to 30 minutes; the rate interval one scrape more.
    q = Query("rate(x[$__rate_interval]) $__interval_ms", TimeRange.last(RANGES["30d"], now), {},
              time_interval="10s")
    assert q.expr == "rate(x[30m10s]) 1800000"
    params = q.range_params()
    assert int(params["start"]) % 1800 == 0 and params["step"] == "1800"
    assert go_duration(3_600_000) == "1h0m0s" and go_duration(130_000) == "2m10s" and go_duration(1_500) == "1.5s"
    assert format_interval(7_200_000) == "2h"


# -- static checks ------------------------------------------------------------------------


def load_builder():
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_application_metrics_dashboards_speak_promql():
    for name in ("app-metrics.json", "http-red.json"):
        dash = load_json(GRAFANA / "dashboards" / name)
        exprs = [t["expr"] for _, t in prom_targets(dash)]
        assert exprs and len(exprs) == sum(len(p.get("targets", [])) for p in panels(dash)), name
        assert any("$__rate_interval" in e for e in exprs)
        for var in dash["templating"]["list"]:
            assert var["datasource"]["uid"] == PROM_UID, (name, var["name"])
    text = " ".join(t["expr"] for name in ("app-metrics.json", "http-red.json")
                    for _, t in prom_targets(load_json(GRAFANA / "dashboards" / name)))
    for needed in ("rate(", "histogram_quantile(", "sum by (", "increase("):
        assert needed in text, needed


def test_expressions_parse_as_promql():
    """Every expression, its variables replaced, is PromQL for the parser the proxy uses."""
    import promql_parser

    now = datetime.now(UTC)
    stand_in = {"metric": Variable("metric", "x_total"), "histogram": Variable("histogram", "h"),
                "job": Variable("job", ".*", True, True), "route": Variable("route", ".*", True, True)}
    exprs = [t["expr"] for p in prom_dashboards() for _, t in prom_targets(load_json(p))]
    exprs += [m["expr"] for _, m, _ in alert_queries()]
    for expr in exprs:
        query = Query(expr, TimeRange.last(RANGES["2d"], now), stand_in, time_interval="10s")
        promql_parser.parse(query.expr)
    assert load_builder().PROM["uid"] == PROM_UID
