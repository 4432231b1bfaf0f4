"""Every SQL query of the provisioned Grafana dashboards and alert rules runs, and
shows data, in both engine modes (their PromQL queries: test_dashboards_promql.py).

Each dashboard JSON is loaded; its variables are resolved the way Grafana does
(query variables by running their SQL, multi-value ones set to "All", textboxes at
their default), and every PostgreSQL target is rendered like Grafana renders it
(template variables, then the data source's macros: see ``grafana_sql.py``), for
three time ranges that select the raw, 5-minute and 1-hour tiers. The SQL then runs,
as the read-only role ``pgpulse_reader`` Grafana uses, against a migrated database
holding generated snapshots, samples, readings, ETL runs and rejects:

* portable: a database of the real PostgreSQL server (``conftest.py``), rolled up
  with ``pgpulse_refresh_tiers``;
* timescale: PGlite with TimescaleDB (``tests/pglite_runner.py``), a stand-in for a
  TimescaleDB server, which cannot be installed on these machines (the full stack
  runs the real one); its continuous aggregates are refreshed explicitly.

A query that fails, or returns no row (or only NULLs) on data that should show,
fails its test. Loki targets are checked against the labels the log shippers set.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from grafana_sql import TimeRange, Variable, interpolate, render
from pglite_runner import PGliteError, PGliteRunner, exec_, query
from psycopg.rows import dict_row

from pgpulse import schema, tiers

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
ALERTS = GRAFANA / "provisioning" / "alerting" / "pgpulse-rules.yml"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "pgpulse.yml"

PG_UID = "pgpulse-postgres"
LOKI_UID = "pgpulse-loki"
PROM_UID = "pgpulse-prometheus"

# Time range -> the tier the dashboards must choose for it.
RANGES = {"1h": (timedelta(hours=1), "raw"), "2d": (timedelta(days=2), "5m"), "30d": (timedelta(days=30), "1h")}
# Variable values to choose instead of Grafana's default (the first value).
SELECTIONS: dict[str, dict[str, str]] = {}

# Generated data, relative to now(): two hosts and five series every 30 s for the
# last 3 hours and every 30 min back to 20 days; three days of readings, ETL runs
# (some failed) and rejects.
SEED = """
INSERT INTO system_metrics (time, host, data)
SELECT ts.t, h.host, jsonb_build_object(
    'version', 1,
    'cpu', jsonb_build_object('percent', 20 + 10 * h.k + 15 * sin(extract(epoch FROM ts.t) / 900),
                              'iowait', 1.5 * h.k),
    'load', jsonb_build_object('load1', 0.5 * h.k + 0.3, 'load5', 0.4 * h.k, 'load15', 0.3 * h.k),
    'memory', jsonb_build_object('percent', 40 + 5 * h.k),
    'swap', jsonb_build_object('percent', 2.5 * h.k),
    'filesystems', jsonb_build_object(
        '/', jsonb_build_object('percent', 55 + h.k, 'used', 55e9, 'total', 100e9),
        '/data', jsonb_build_object('percent', 70 + h.k)),
    'disk', jsonb_build_object('read_bytes_per_s', 1000 * h.k, 'write_bytes_per_s', 2000 * h.k),
    'network', jsonb_build_object('rx_bytes_per_s', 5000 * h.k, 'tx_bytes_per_s', 3000 * h.k),
    'processes', jsonb_build_object('count', 100 + h.k))
FROM (SELECT generate_series(date_trunc('minute', now()) - INTERVAL '3 hours', now(), INTERVAL '30 seconds') AS t
      UNION ALL
      SELECT generate_series(date_trunc('hour', now()) - INTERVAL '20 days',
                             date_trunc('minute', now()) - INTERVAL '3 hours 1 second',
                             INTERVAL '30 minutes')) AS ts
CROSS JOIN (VALUES ('alpha', 1), ('beta', 2)) AS h (host, k);

INSERT INTO series (name, labels, type) VALUES
    ('requests_total', '{"service": "api", "route": "/a"}', 'counter'),
    ('requests_total', '{"service": "api", "route": "/b"}', 'counter'),
    ('cpu_temp', '{"host": "alpha"}', 'gauge'),
    ('cpu_temp', '{"host": "beta"}', 'gauge'),
    ('queue_depth', '{}', 'gauge');
UPDATE series SET created_at = now() - id * INTERVAL '10 minutes';

INSERT INTO samples (time, series_id, value)
SELECT ts.t, s.id,
       CASE WHEN s.type = 'counter'
            THEN s.id * 1000 + extract(epoch FROM ts.t - date_trunc('day', now() - INTERVAL '21 days')) / 10
            ELSE 40 + s.id + 5 * sin(extract(epoch FROM ts.t) / 600) END
FROM (SELECT generate_series(date_trunc('minute', now()) - INTERVAL '3 hours', now(), INTERVAL '30 seconds') AS t
      UNION ALL
      SELECT generate_series(date_trunc('hour', now()) - INTERVAL '20 days',
                             date_trunc('minute', now()) - INTERVAL '3 hours 1 second',
                             INTERVAL '30 minutes')) AS ts
CROSS JOIN series s;

INSERT INTO reading_analytics (mongo_id, reading_time, source_id, synced_at, payload)
SELECT 'r' || n, now() - n * INTERVAL '5 minutes',
       CASE WHEN n % 10 = 9 THEN NULL ELSE 'sensor-' || (n % 3) END,
       now() - n * INTERVAL '5 minutes' + INTERVAL '1 minute', jsonb_build_object('value', n)
FROM generate_series(0, 3 * 288) AS n;

INSERT INTO etl_runs (id, started_at, finished_at, status, trigger, claimed, loaded, rejected, error)
SELECT md5('run' || n)::uuid, now() - n * INTERVAL '30 minutes',
       now() - n * INTERVAL '30 minutes' + INTERVAL '20 seconds',
       CASE WHEN n % 7 = 1 THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN n % 2 = 0 THEN 'schedule' ELSE 'api' END,
       100, CASE WHEN n % 7 = 1 THEN 0 ELSE 98 END, CASE WHEN n % 7 = 1 THEN 0 ELSE 2 END,
       CASE WHEN n % 7 = 1 THEN 'mongo unreachable' END
FROM generate_series(0, 144) AS n;

INSERT INTO etl_rejects (run_id, mongo_id, reason, document, created_at, source_id, replayed_at)
SELECT r.id, 'bad-' || r.n || '-' || k,
       (ARRAY['missing timestamp', 'value not a number', 'unknown source'])[1 + (r.n + k) % 3],
       jsonb_build_object('_id', 'bad-' || r.n || '-' || k), r.started_at + INTERVAL '10 seconds',
       'sensor-' || k, CASE WHEN r.n > 100 THEN r.started_at + INTERVAL '1 day' END
FROM (SELECT id, started_at, row_number() OVER (ORDER BY started_at DESC) AS n
      FROM etl_runs WHERE status = 'succeeded') AS r
CROSS JOIN generate_series(1, 2) AS k;
"""

PORTABLE_REFRESH = "SELECT * FROM pgpulse_refresh_tiers(INTERVAL '1 hour', INTERVAL '14 days', INTERVAL '90 days')"
TIMESCALE_CONFIGURE = ("SELECT pgpulse_configure(INTERVAL '14 days', INTERVAL '90 days', INTERVAL '365 days', "
                       "INTERVAL '1 hour', INTERVAL '3 days')")
TIMESCALE_REFRESH = [f"CALL refresh_continuous_aggregate('{cagg}', NULL, NULL)" for cagg in tiers.CAGGS]


# -- what the provisioning says -------------------------------------------------------


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


def datasource_settings() -> dict:
    sources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return next(s for s in sources if s["uid"] == PG_UID)["jsonData"]


JSON_DATA = datasource_settings()
MIN_INTERVAL = JSON_DATA.get("timeInterval")
TIMESCALEDB_MACROS = bool(JSON_DATA.get("timescaledb"))


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def pg_targets(dashboard: dict) -> list[tuple[dict, dict]]:
    return [
        (panel, t) for panel in panels(dashboard) for t in panel.get("targets", [])
        if (t.get("datasource") or panel.get("datasource") or {}).get("uid") == PG_UID
    ]


def alert_queries() -> list[tuple[str, dict, int]]:
    """(rule uid, query model, seconds back) of every rule's SQL step."""
    out = []
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            for step in rule["data"]:
                if step["datasourceUid"] == PG_UID:
                    out.append((rule["uid"], step["model"], step["relativeTimeRange"]["from"]))
    return out


# -- running SQL on the two engines -----------------------------------------------------


@dataclasses.dataclass
class Outcome:
    rows: list[dict[str, Any]] | None = None
    error: str | None = None


class PortableEngine:
    name = "portable"

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, sqls: list[str]) -> list[Outcome]:
        out = []
        with psycopg.connect(self.url, autocommit=True, row_factory=dict_row) as conn:
            conn.execute("SET ROLE pgpulse_reader")  # what Grafana's login may do
            for sql in sqls:
                try:
                    out.append(Outcome(rows=conn.execute(sql).fetchall()))
                except psycopg.Error as exc:
                    out.append(Outcome(error=str(exc).strip()))
        return out


class TimescaleEngine:
    """PGlite with TimescaleDB: one fresh database per run, so every run sets up the
    schema and data first; a failing step is recorded and the rest run again."""

    name = "timescale"

    def __init__(self) -> None:
        self.runner = PGliteRunner(timeout=600)
        self.setup = [
            exec_(schema.offline_sql("timescale")),
            query(TIMESCALE_CONFIGURE),
            exec_(SEED),
            *(exec_(sql) for sql in TIMESCALE_REFRESH),
            exec_("SET ROLE pgpulse_reader"),
        ]

    def run(self, sqls: list[str]) -> list[Outcome]:
        out: list[Outcome | None] = [None] * len(sqls)
        pending = list(range(len(sqls)))
        while pending:
            try:
                results = self.runner.run([*self.setup, *(query(sqls[i]) for i in pending)])
            except PGliteError as exc:
                if exc.step is None or exc.step < len(self.setup):
                    raise
                failed = pending[exc.step - len(self.setup)]
                out[failed] = Outcome(error=str(exc).split("\n--- SQL", 1)[0])
                pending.remove(failed)
                continue
            for i, rows in zip(pending, results[len(self.setup):], strict=True):
                out[i] = Outcome(rows=rows)
            pending = []
        return out  # type: ignore[return-value]


# -- resolving variables and rendering every query ---------------------------------------


def variable_default(var: dict, values: list[str], override: str | None) -> Variable:
    if override is not None:
        assert override in values, f"variable {var['name']}: {override!r} not among {values}"
        return Variable(var["name"], [override] if var.get("multi") else override,
                        bool(var.get("multi")), bool(var.get("includeAll")))
    if var.get("includeAll"):
        return Variable(var["name"], values, bool(var.get("multi")), True)
    assert values, f"variable {var['name']} has no values"
    chosen = values[0]
    return Variable(var["name"], [chosen] if var.get("multi") else chosen, bool(var.get("multi")), False)


@dataclasses.dataclass(frozen=True)
class Case:
    """One dashboard at one time range."""

    dashboard: str
    range_name: str


def evaluate(engine) -> dict[str, Any]:
    """Resolve every dashboard's variables, then run every panel and alert query,
    for time ranges ending now."""
    now = datetime.now(UTC)
    ranges = {name: TimeRange.last(span, now) for name, (span, _) in RANGES.items()}
    cases = [Case(path.name, r) for path in DASHBOARDS for r in RANGES]
    var_sql: list[str] = []
    var_keys: list[tuple[Case, dict]] = []
    for case in cases:
        dash = load_json(GRAFANA / "dashboards" / case.dashboard)
        for var in dash["templating"]["list"]:
            if var["type"] == "query" and var["datasource"]["uid"] == PG_UID:
                var_sql.append(render(var["query"], ranges[case.range_name], {}, min_interval=MIN_INTERVAL,
                                      timescaledb=TIMESCALEDB_MACROS))
                var_keys.append((case, var))
    var_outcomes = engine.run(var_sql)
    variables: dict[Case, dict[str, Variable]] = {case: {} for case in cases}
    var_values: dict[tuple[Case, str], list[str] | str] = {}
    for (case, var), outcome in zip(var_keys, var_outcomes, strict=True):
        if outcome.error:
            var_values[(case, var["name"])] = f"ERROR: {outcome.error}"
            continue
        values = [str(next(iter(row.values()))) for row in outcome.rows]
        var_values[(case, var["name"])] = values
        override = SELECTIONS.get(case.dashboard, {}).get(var["name"])
        variables[case][var["name"]] = variable_default(var, values, override)
    for case in cases:
        dash = load_json(GRAFANA / "dashboards" / case.dashboard)
        for var in dash["templating"]["list"]:
            if var["type"] == "textbox":
                variables[case][var["name"]] = Variable(var["name"], var["query"])

    panel_sql: list[str] = []
    panel_keys: list[str] = []
    for case in cases:
        dash = load_json(GRAFANA / "dashboards" / case.dashboard)
        for panel, t in pg_targets(dash):
            panel_keys.append(panel_key(case, panel, t))
            panel_sql.append(render(t["rawSql"], ranges[case.range_name], variables[case],
                                    min_interval=MIN_INTERVAL, timescaledb=TIMESCALEDB_MACROS))
    alert_keys = []
    for uid, model, seconds in alert_queries():
        alert_keys.append(uid)
        panel_sql.append(render(model["rawSql"], TimeRange.last(timedelta(seconds=seconds), now), {},
                                min_interval=MIN_INTERVAL, timescaledb=TIMESCALEDB_MACROS))
    outcomes = engine.run(panel_sql)
    by_key = dict(zip(panel_keys + alert_keys, zip(panel_sql, outcomes, strict=True), strict=True))
    return {"vars": var_values, "queries": by_key}


def panel_key(case: Case, panel: dict, target: dict) -> str:
    return f"{case.dashboard}|{case.range_name}|{panel['id']}|{target['refId']}"


@pytest.fixture(scope="module")
def portable(pg_server, template_db) -> dict[str, Any]:
    name = f"pgpulse_dash_{datetime.now(UTC).strftime('%H%M%S%f')}"
    with pg_server.janitor(name, template_dbname=template_db):
        url = pg_server.url(name)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SEED)
            conn.execute(PORTABLE_REFRESH)
        yield evaluate(PortableEngine(url))


@pytest.fixture(scope="module")
def timescale() -> dict[str, Any]:
    return evaluate(TimescaleEngine())


@pytest.fixture(params=["portable", "timescale"])
def results(request) -> dict[str, Any]:
    return request.getfixturevalue(request.param)


# -- the tests ------------------------------------------------------------------------


def _panel_params() -> list:
    params = []
    for path in DASHBOARDS:
        dash = load_json(path)
        for panel, t in pg_targets(dash):
            for r in RANGES:
                params.append(pytest.param(Case(path.name, r), panel, t,
                                           id=f"{path.stem}-{r}-{panel['id']}-{panel['title'][:40]}"))
    return params


def _shows_data(rows: list[dict]) -> bool:
    return any(v is not None for row in rows for k, v in row.items() if k != "time")


@pytest.mark.parametrize(("case", "panel", "target"), _panel_params())
def test_panel_query_runs_and_shows_data(results, case, panel, target):
    sql, outcome = results["queries"][panel_key(case, panel, target)]
    assert outcome.error is None, f"{panel['title']}: {outcome.error}\n{sql}"
    assert outcome.rows, f"{panel['title']}: no rows\n{sql}"
    assert _shows_data(outcome.rows), f"{panel['title']}: only NULLs\n{sql}"
    if target["format"] == "time_series":
        assert list(outcome.rows[0])[0] == "time", f"{panel['title']}: first column must be time"


@pytest.mark.parametrize("range_name", list(RANGES))
def test_tier_follows_the_time_range(results, range_name):
    expected = RANGES[range_name][1]
    # The dashboards' rule is the registry's: the tier for a step of span / POINTS.
    builder = load_builder()
    span = RANGES[range_name][0]
    assert tiers.choose(span / builder.POINTS).name == expected
    for path in DASHBOARDS:
        dash = load_json(path)
        if any(v["name"] == "tier" for v in dash["templating"]["list"]):
            assert results["vars"][(Case(path.name, range_name), "tier")] == [expected], path.name


def test_variables_find_the_data(results):
    hosts = results["vars"][(Case("hosts.json", "1h"), "host")]
    assert hosts == ["alpha", "beta"]
    assert results["vars"][(Case("readings-etl.json", "1h"), "source")] == ["(none)", "sensor-0", "sensor-1", "sensor-2"]


@pytest.mark.parametrize(("uid", "model", "seconds"), alert_queries(), ids=[a[0] for a in alert_queries()])
def test_alert_query_returns_labelled_numbers(results, uid, model, seconds):
    sql, outcome = results["queries"][uid]
    assert outcome.error is None, f"{uid}: {outcome.error}\n{sql}"
    assert outcome.rows, f"{uid}: no rows\n{sql}"
    for row in outcome.rows:
        numbers = [k for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)]
        labels = [k for k, v in row.items() if isinstance(v, str)]
        # Grafana turns each row into one alert instance: string columns are its
        # labels, the one number its value.
        assert len(numbers) == 1 and len(numbers) + len(labels) == len(row), f"{uid}: {row}"


def test_alert_rules_cover_hosts_and_etl():
    rules = {uid for uid, _, _ in alert_queries()}
    assert {"pgpulse-host-cpu", "pgpulse-host-memory", "pgpulse-host-filesystem", "pgpulse-etl-failed"} <= rules
    doc = yaml.safe_load(ALERTS.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            condition = next(s for s in rule["data"] if s["refId"] == rule["condition"])
            assert condition["datasourceUid"] == "__expr__" and condition["model"]["type"] == "threshold"


# -- static checks --------------------------------------------------------------------


def load_builder():
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dashboard_files_are_generated_from_the_builder():
    module = load_builder()
    assert sorted(module.BUILDERS) == [p.name for p in DASHBOARDS]
    for name, build in module.BUILDERS.items():
        assert (GRAFANA / "dashboards" / name).read_text() == module.render(build), (
            f"{name} is out of date: run python grafana/build_dashboards.py")


def test_dashboards_are_well_formed():
    uids = set()
    for path in DASHBOARDS:
        dash = load_json(path)
        assert dash["uid"] not in uids
        uids.add(dash["uid"])
        ids = [p["id"] for p in panels(dash)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in panels(dash):
            if panel["type"] == "row":
                continue
            uid = panel["datasource"]["uid"]
            assert uid in (PG_UID, LOKI_UID, PROM_UID), f"{path.name}: {panel['title']} uses {uid}"
            assert panel.get("targets"), f"{path.name}: {panel['title']} has no query"
        for _, t in pg_targets(dash):
            assert t["format"] in ("time_series", "table") and t["rawQuery"]


def test_hosts_panels_read_every_tier():
    dash = load_json(GRAFANA / "dashboards" / "hosts.json")
    tiered = [t["rawSql"] for _, t in pg_targets(dash) if "'$tier'" in t["rawSql"]]
    assert len(tiered) >= 8
    for sql in tiered:
        for relation in ("FROM system_metrics\n", "FROM system_metrics_5m", "FROM system_metrics_1h"):
            assert relation in sql


def promtail_labels() -> set[str]:
    """Labels Promtail gives log lines (relabelled targets, static and labels stages)."""
    config = yaml.safe_load((ROOT / "promtail" / "promtail-config.yml").read_text())
    labels: set[str] = set()
    for job in config["scrape_configs"]:
        for rule in job.get("relabel_configs", []):
            target = rule.get("target_label", "")
            if target and not target.startswith("__"):
                labels.add(target)
        for stage in job.get("pipeline_stages", []):
            for key in ("labels", "static_labels"):
                labels.update((stage.get(key) or {}).keys())
            for inner in (stage.get("match") or {}).get("stages", []):
                labels.update((inner.get("labels") or {}).keys())
    return labels


def test_log_queries_use_the_labels_the_shippers_set():
    dash = load_json(GRAFANA / "dashboards" / "logs.json")
    shipped = promtail_labels()
    assert {"service", "level"} <= shipped
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    for name in ("service", "level"):
        assert variables[name]["datasource"]["uid"] == LOKI_UID
        assert variables[name]["definition"] == f"label_values({name})"
    built = {"__interval": "1m", "__range": "1h", "__auto": "1m"}
    loki_vars = {"service": Variable("service", ".+"), "level": Variable("level", ".*"),
                 "search": Variable("search", "")}
    for panel in panels(dash):
        for t in panel.get("targets", []):
            expr = interpolate(t["expr"], loki_vars, built)
            assert "$" not in expr, expr
            for selector in re.findall(r"\{([^}]*)\}", expr.replace("{{", "").replace("}}", "")):
                for matcher in filter(None, (m.strip() for m in selector.split(","))):
                    label = re.split(r"=~|!~|!=|=", matcher)[0].strip()
                    assert label in shipped, f"{panel['title']}: label {label!r} is never set"
