"""Writes pgpulse's Grafana dashboards (grafana/dashboards/*.json) from this file.

The JSON files are what Grafana loads (provisioned from grafana/dashboards); this
script is where they are edited: change it, run ``python grafana/build_dashboards.py``
and commit both. tests/test_dashboards.py checks the files are up to date and runs
every panel's SQL against a database with data, in both engine modes;
tests/test_dashboards_promql.py runs every PromQL query through the proxy's
Prometheus API as Grafana sends it.

Two data sources: host, ETL and pgpulse's own panels are SQL (the PostgreSQL data
source); application metrics (the *Application metrics* and *HTTP services (RED)*
dashboards) are PromQL through the Prometheus data source on the proxy, whose
engine chooses what to read.

Tiers: host metrics are read from the raw table, the 5-minute or the 1-hour tier,
whichever suits the time range. The ``tier`` variable (shown at the
top of a dashboard) is computed by SQL made from the tier registry
(``pgpulse.tiers``): the rule of ``pgpulse.tiers.choose`` for a step of the range's
span over ``POINTS``, with the retention recorded in ``pgpulse_meta`` (defaults: the
settings' declared defaults). Every tiered panel is a UNION ALL of one branch per
tier, each guarded by ``'$tier' = '<tier>'``, a constant the planner folds, so only
one branch runs; the aggregates' SQL comes from the registry too.

Macros are those of Grafana's PostgreSQL data source with ``timescaledb: false``
(``$__timeGroup`` becomes ``floor(extract(epoch from col)/s)*s``), which works on
both engines.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from pgpulse import tiers
from pgpulse.settings import CoreSettings

# Headline snapshot numbers with their JSON paths: the tier columns are named after them.
from pgpulse.tiers import HOST_FIELDS, TIERS

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

PG = {"type": "grafana-postgresql-datasource", "uid": "pgpulse-postgres"}
LOKI = {"type": "loki", "uid": "pgpulse-loki"}
# PromQL through the proxy's Prometheus API, with a read-only (query scope) key.
PROM = {"type": "prometheus", "uid": "pgpulse-prometheus"}


# -- template variables ----------------------------------------------------------------

# About how many steps a panel shows: the step the tier is chosen for is span / POINTS.
POINTS = 100
_DEFAULT_DAYS = {f.name: f.default for f in dataclasses.fields(CoreSettings)}


def tier_sql() -> str:
    """The ``tier`` variable: :func:`pgpulse.tiers.choose` for step = span / POINTS."""
    whens = []
    for t in TIERS[:-1]:
        wider = tiers.coarser(t)
        whens.append(
            f"  WHEN span / {POINTS} < INTERVAL '{int(wider.width.total_seconds())} seconds' "
            f"AND $__timeFrom()::timestamptz >= now() - keep_{t.name} THEN '{t.name}'"
        )
    keeps = ",\n".join(
        f"             coalesce((SELECT value::interval FROM pgpulse_meta WHERE key = '{t.meta_key}'),\n"
        f"                      INTERVAL '{_DEFAULT_DAYS[t.retention_setting]} days') AS keep_{t.name}"
        for t in TIERS[:-1]
    )
    return ("SELECT CASE\n" + "\n".join(whens) + f"\n  ELSE '{TIERS[-1].name}'\nEND AS tier\n"
            "FROM (SELECT $__timeTo()::timestamptz - $__timeFrom()::timestamptz AS span,\n"
            + keeps + ") AS r")


TIER_SQL = tier_sql()


def query_var(name: str, sql: str, *, label: str | None = None, multi: bool = False,
              include_all: bool = False, hide: int = 0, description: str = "") -> dict:
    return {
        "name": name,
        "label": label or name,
        "description": description,
        "type": "query",
        "datasource": PG,
        "definition": sql,
        "query": sql,
        "refresh": 2,  # on time range change
        "multi": multi,
        "includeAll": include_all,
        "hide": hide,
        "sort": 1,
        "regex": "",
        "current": {},
        "options": [],
    }


TIER_VAR = query_var(
    "tier", TIER_SQL,
    description=f"Which tier serves the panels: the coarsest one not wider than the range / {POINTS}, "
    "or the next coarser tier when the range starts before a tier's retention.",
)


def textbox_var(name: str, default: str, label: str, description: str) -> dict:
    return {
        "name": name, "label": label, "description": description, "type": "textbox",
        "query": default, "current": {"text": default, "value": default},
        "options": [{"selected": True, "text": default, "value": default}], "hide": 0,
    }


def loki_var(name: str, label_name: str, all_value: str) -> dict:
    return {
        "name": name, "label": name, "type": "query", "datasource": LOKI,
        "definition": f"label_values({label_name})",
        "query": {"qryType": 1, "label": label_name, "stream": "",
                  "query": f"label_values({label_name})", "refId": "LokiVariableQueryEditor-VariableQuery"},
        "refresh": 2, "multi": True, "includeAll": True, "allValue": all_value,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0, "sort": 1, "regex": "", "options": [],
    }


def prom_var(name: str, query: str, *, multi: bool = False, include_all: bool = False,
             all_value: str | None = None, regex: str = "", description: str = "") -> dict:
    """A query variable of the Prometheus data source: ``label_values(label)`` or
    ``label_values(selector, label)``, as Grafana's variable editor writes them."""
    return {
        "name": name, "label": name, "description": description, "type": "query", "datasource": PROM,
        "definition": query,
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2, "multi": multi, "includeAll": include_all, "allValue": all_value,
        "hide": 0, "sort": 1, "regex": regex, "current": {}, "options": [],
    }


# -- SQL building blocks -------------------------------------------------------------


def raw_value(path: tuple[str, ...], column: str = "data") -> str:
    """A snapshot number as float8; anything that is not a JSON number is NULL."""
    p = "{" + ",".join(path) + "}"
    return f"CASE WHEN jsonb_typeof({column} #> '{p}') = 'number' THEN ({column} #>> '{p}')::float8 END"


def host_tiered(columns: list[tuple[str, str, str]], *, where: str = "host IN ($host)") -> str:
    """Per-host time series of headline fields from the tier chosen by ``$tier``.

    ``columns``: (alias, field, agg) with agg ``avg`` or ``max``.
    """
    def raw_expr(field: str, agg: str) -> str:
        return TIERS[0].aggregate(agg, value=raw_value(HOST_FIELDS[field]))

    def tier_expr(t: tiers.Tier, field: str, agg: str) -> str:
        return t.aggregate(agg, prefix=field + "_")

    raw_cols = ",\n       ".join(f'{raw_expr(f, a)} AS "{alias}"' for alias, f, a in columns)
    branches = [
        f"""SELECT $__timeGroupAlias(time, $__interval), host AS metric,
       {raw_cols}
FROM {TIERS[0].hosts}
WHERE '$tier' = '{TIERS[0].name}' AND $__timeFilter(time) AND {where}
GROUP BY 1, 2"""
    ]
    for t in tiers.ROLLED_UP:
        tier_cols = ",\n       ".join(f'{tier_expr(t, f, a)} AS "{alias}"' for alias, f, a in columns)
        branches.append(
            f"""SELECT $__timeGroupAlias(bucket, $__interval), host AS metric,
       {tier_cols}
FROM {t.hosts}
WHERE '$tier' = '{t.name}' AND $__timeFilter(bucket) AND {where}
GROUP BY 1, 2"""
        )
    return "\nUNION ALL\n".join(branches) + "\nORDER BY 1, 2"


LATEST_SNAPSHOTS = """SELECT DISTINCT ON (host) host, time, data
      FROM system_metrics
      WHERE host IN ($host) AND time <= $__timeTo()
        AND time > $__timeTo()::timestamptz - INTERVAL '1 hour'
      ORDER BY host, time DESC"""


# -- panels ---------------------------------------------------------------------------

_ids = iter(range(1, 10_000))


def reset_ids() -> None:
    global _ids
    _ids = iter(range(1, 10_000))


def target(sql: str, fmt: str = "time_series", ref: str = "A") -> dict:
    return {"refId": ref, "datasource": PG, "editorMode": "code", "format": fmt,
            "rawQuery": True, "rawSql": sql}


def prom(expr: str, legend: str = "__auto", ref: str = "A", *, instant: bool = False) -> dict:
    """A PromQL target: a range query (a line per series), or an instant query at the
    end of the range (a table row or a stat)."""
    return {"refId": ref, "datasource": PROM, "editorMode": "code", "expr": expr, "legendFormat": legend,
            "range": not instant, "instant": instant, "format": "table" if instant else "time_series"}


Query = str | list[dict]


def targets(query: Query, fmt: str) -> tuple[dict, list[dict]]:
    """(panel data source, targets): SQL text is one PostgreSQL target, else the PromQL targets."""
    if isinstance(query, str):
        return PG, [target(query, fmt)]
    return PROM, query


def grid(x: int, y: int, w: int, h: int) -> dict:
    return {"x": x, "y": y, "w": w, "h": h}


def timeseries(title: str, sql: Query, pos: dict, *, unit: str = "short", description: str = "",
               bars: bool = False, stack: bool = False, decimals: int | None = None,
               max_value: float | None = None) -> dict:
    defaults: dict = {
        "unit": unit,
        "custom": {
            "drawStyle": "bars" if bars else "line",
            "lineWidth": 1,
            "fillOpacity": 60 if bars else 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        },
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if max_value is not None:
        defaults["max"] = max_value
        defaults["min"] = 0
    return {
        "id": next(_ids), "type": "timeseries", "title": title, "description": description,
        "datasource": targets(sql, "time_series")[0], "gridPos": pos, "targets": targets(sql, "time_series")[1],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def table(title: str, sql: Query, pos: dict, *, description: str = "", units: dict | None = None) -> dict:
    overrides = [
        {"matcher": {"id": "byName", "options": name},
         "properties": [{"id": "unit", "value": unit}]}
        for name, unit in (units or {}).items()
    ]
    source, queries = targets(sql, "table")
    panel = {
        "id": next(_ids), "type": "table", "title": title, "description": description,
        "datasource": source, "gridPos": pos, "targets": queries,
        "fieldConfig": {"defaults": {}, "overrides": overrides},
        "options": {"showHeader": True, "cellHeight": "sm"},
    }
    if len(queries) > 1:  # instant queries side by side: one row per label set
        panel["transformations"] = [{"id": "merge", "options": {}}]
    return panel


def stat(title: str, sql: Query, pos: dict, *, unit: str = "short", description: str = "",
         thresholds: list[tuple[float | None, str]] | None = None) -> dict:
    steps = [{"color": color, "value": value} for value, color in (thresholds or [(None, "green")])]
    return {
        "id": next(_ids), "type": "stat", "title": title, "description": description,
        "datasource": targets(sql, "table")[0], "gridPos": pos, "targets": targets(sql, "table")[1],
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
                        "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "none", "textMode": "auto"},
    }


def bargauge(title: str, sql: str, pos: dict, *, unit: str = "percent", description: str = "",
             max_value: float = 100) -> dict:
    return {
        "id": next(_ids), "type": "bargauge", "title": title, "description": description,
        "datasource": PG, "gridPos": pos, "targets": [target(sql, "table")],
        "fieldConfig": {"defaults": {
            "unit": unit, "min": 0, "max": max_value,
            "thresholds": {"mode": "absolute", "steps": [
                {"color": "green", "value": None}, {"color": "orange", "value": 80},
                {"color": "red", "value": 90}]}}, "overrides": []},
        "options": {"orientation": "horizontal", "displayMode": "gradient",
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True}},
    }


def row(title: str, y: int) -> dict:
    return {"id": next(_ids), "type": "row", "title": title, "collapsed": False,
            "gridPos": grid(0, y, 24, 1), "panels": []}


def dashboard(uid: str, title: str, description: str, panels: list[dict], variables: list[dict], *,
              time_from: str = "now-6h", tags: tuple[str, ...] = ()) -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["pgpulse", *tags],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["pgpulse"], "asDropdown": True, "title": "pgpulse",
                   "includeVars": False, "keepTime": True}],
        "panels": panels,
    }


# -- Hosts ----------------------------------------------------------------------------


def hosts() -> dict:
    reset_ids()
    host_var = query_var(
        "host",
        "SELECT DISTINCT host FROM system_metrics_1h\n"
        "WHERE bucket > $__timeFrom()::timestamptz - INTERVAL '1 hour' AND bucket <= $__timeTo()\n"
        "ORDER BY 1",
        multi=True, include_all=True, description="Hosts that reported in the time range.",
    )
    overview = f"""SELECT s.host,
       s.time AS "last snapshot",
       extract(epoch FROM $__timeTo()::timestamptz - s.time) AS "age",
       {raw_value(HOST_FIELDS['cpu_percent'], 's.data')} AS "cpu",
       {raw_value(HOST_FIELDS['mem_percent'], 's.data')} AS "memory",
       {raw_value(HOST_FIELDS['rootfs_percent'], 's.data')} AS "root fs",
       {raw_value(HOST_FIELDS['load1'], 's.data')} AS "load 1m",
       {raw_value(HOST_FIELDS['procs'], 's.data')} AS "processes"
FROM ({LATEST_SNAPSHOTS}) AS s
ORDER BY s.host"""
    filesystems = f"""SELECT s.host, fs.key AS mountpoint,
       {raw_value(('percent',), 'fs.value')} AS "used",
       {raw_value(('used',), 'fs.value')} AS "used bytes",
       {raw_value(('total',), 'fs.value')} AS "size"
FROM ({LATEST_SNAPSHOTS}) AS s
CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(s.data -> 'filesystems') = 'object'
                                   THEN s.data -> 'filesystems' ELSE '{{}}'::jsonb END) AS fs
ORDER BY 3 DESC NULLS LAST, 1, 2"""
    latest_cpu = f"""SELECT s.host, {raw_value(HOST_FIELDS['cpu_percent'], 's.data')} AS cpu
FROM ({LATEST_SNAPSHOTS}) AS s
ORDER BY s.host"""
    latest_mem = f"""SELECT s.host, {raw_value(HOST_FIELDS['mem_percent'], 's.data')} AS memory
FROM ({LATEST_SNAPSHOTS}) AS s
ORDER BY s.host"""
    panels = [
        table("Hosts: latest snapshot", overview, grid(0, 0, 14, 7),
              description="The newest snapshot of each host in the hour before the end of the range.",
              units={"age": "s", "cpu": "percent", "memory": "percent", "root fs": "percent"}),
        bargauge("CPU busy now", latest_cpu, grid(14, 0, 5, 7)),
        bargauge("Memory used now", latest_mem, grid(19, 0, 5, 7)),
        row("CPU and load", 7),
        timeseries("CPU busy", host_tiered([("cpu", "cpu_percent", "avg")]), grid(0, 8, 12, 8),
                   unit="percent", max_value=100, description="Average CPU busy percentage per host."),
        timeseries("CPU iowait", host_tiered([("iowait", "cpu_iowait", "avg")]), grid(12, 8, 12, 8),
                   unit="percent", description="Average share of CPU time waiting for I/O."),
        timeseries("Load average",
                   host_tiered([("1m", "load1", "avg"), ("5m", "load5", "avg"), ("15m", "load15", "avg")]),
                   grid(0, 16, 12, 8), decimals=2),
        timeseries("Processes", host_tiered([("processes", "procs", "avg")]), grid(12, 16, 12, 8)),
        row("Memory and filesystems", 24),
        timeseries("Memory used", host_tiered([("memory", "mem_percent", "avg")]), grid(0, 25, 8, 8),
                   unit="percent", max_value=100),
        timeseries("Swap used", host_tiered([("swap", "swap_percent", "avg")]), grid(8, 25, 8, 8),
                   unit="percent", max_value=100),
        timeseries("Root filesystem used", host_tiered([("peak", "rootfs_percent", "max")]),
                   grid(16, 25, 8, 8), unit="percent", max_value=100,
                   description="Highest use of / per step."),
        table("Filesystems (latest snapshot)", filesystems, grid(0, 33, 24, 7),
              units={"used": "percent", "used bytes": "bytes", "size": "bytes"}),
        row("Disk and network", 40),
        timeseries("Disk throughput",
                   host_tiered([("read", "disk_read_bps", "avg"), ("write", "disk_write_bps", "avg")]),
                   grid(0, 41, 12, 8), unit="Bps"),
        timeseries("Network throughput",
                   host_tiered([("rx", "net_rx_bps", "avg"), ("tx", "net_tx_bps", "avg")]),
                   grid(12, 41, 12, 8), unit="Bps"),
    ]
    return dashboard(
        "pgpulse-hosts", "Hosts",
        "Host metrics from the collector: raw snapshots for short ranges, 5-minute and 1-hour tiers for long ones.",
        panels, [TIER_VAR, host_var], tags=("hosts",),
    )


# -- Application metrics (PromQL) --------------------------------------------------------

# Every application-metrics panel is PromQL through the Prometheus data source (the
# proxy's /api/v1 API): rate(), increase(), histogram_quantile() and sum by () as in
# any Prometheus dashboard; the engine picks the tier, so no panel names one.
# ``$__rate_interval`` is Grafana's: at least four of the data source's timeInterval
# (the collector's and demo's export interval), so a rate always spans several samples.
RATE = "[$__rate_interval]"


def app_metrics() -> dict:
    reset_ids()
    metric_var = prom_var("metric", "label_values(__name__)",
                          description="Metric name (every name with a sample in the range).")
    job_var = prom_var("job", "label_values($metric, job)", multi=True, include_all=True, all_value=".*",
                       description="The sending service (OpenTelemetry's service.name, Prometheus's job); "
                       "All includes series without one.")
    histogram_var = prom_var(
        "histogram", 'label_values({__name__=~".+_bucket"}, __name__)',
        regex="/(.+)_bucket$/",
        description="A histogram (the family of a *_bucket metric), for the quantile panel.")
    sel = '$metric{job=~"$job"}'
    buckets = '${histogram}_bucket{job=~"$job"}'
    panels = [
        timeseries("$metric", [prom(sel, "{{__name__}} {{job}} {{instance}}")], grid(0, 0, 24, 9),
                   description="The series as stored: one line per label set."),
        timeseries("$metric: per-second rate (counters)", [prom(f"rate({sel}{RATE})")],
                   grid(0, 9, 12, 8), unit="short",
                   description="rate() over $__rate_interval: the increase per second, counter resets "
                   "counted from zero. Only meaningful for counters."),
        timeseries("$metric: per-second rate by job", [prom(f"sum by (job) (rate({sel}{RATE}))", "{{job}}")],
                   grid(12, 9, 12, 8)),
        timeseries("$histogram: quantiles",
                   [prom(f"histogram_quantile({q}, sum by (le) (rate({buckets}{RATE})))", name, ref)
                    for (q, name), ref in zip(((0.5, "p50"), (0.9, "p90"), (0.99, "p99")), "ABC", strict=True)],
                   grid(0, 17, 12, 8),
                   description="histogram_quantile() over the buckets' rates, every series of the job summed."),
        timeseries("$histogram: observations per second by job",
                   [prom(f'sum by (job) (rate(${{histogram}}_count{{job=~"$job"}}{RATE}))', "{{job}}")],
                   grid(12, 17, 12, 8)),
        table("Series of $metric (latest value)", [prom(sel, instant=True)], grid(0, 25, 24, 8),
              description="The newest value of every series at the end of the range (Prometheus's "
              "5-minute lookback)."),
    ]
    return dashboard(
        "pgpulse-app-metrics", "Application metrics",
        "Any metric sent to pgpulse (its ingest API, OTLP, remote write, Influx), by name and job, in PromQL "
        "through the pgpulse (PromQL) data source.",
        panels, [metric_var, job_var, histogram_var], tags=("metrics",),
    )


# -- HTTP services: rate, errors, duration (RED) -----------------------------------------

# OpenTelemetry's HTTP server metrics as pgpulse stores them (the OTLP mapping of the
# Prometheus compatibility spec): the duration histogram's _bucket{le}/_sum/_count
# counters and the active requests gauge, labelled job, instance, http_route,
# http_request_method, http_response_status_code and error_type. The demo app
# (demo/) sends them; so does any server instrumented by the semantic conventions.
HTTP_DURATION = "http_server_request_duration_seconds"
HTTP_ACTIVE = "http_server_active_requests"
RED = 'job="$job", http_route=~"$route"'
FIVE_XX = 'http_response_status_code=~"5.."'
HAS_ERROR_TYPE = 'error_type!=""'


def red() -> dict:
    reset_ids()
    count = f"{HTTP_DURATION}_count"
    job_var = prom_var("job", f"label_values({count}, job)",
                       description="The service (OpenTelemetry's service.name, pgpulse's job label).")
    route_var = prom_var(
        "route", f'label_values({count}{{job="$job"}}, http_route)', multi=True, include_all=True,
        all_value=".*", description="Routes of the service (All also counts requests no route matched).")

    def rate(name: str, extra: str = "", window: str = RATE) -> str:
        return f"rate({name}{{{RED}{', ' + extra if extra else ''}}}{window})"

    def quantile(q: float, by: str = "le") -> str:
        return f"histogram_quantile({q}, sum by ({by}) ({rate(HTTP_DURATION + '_bucket')}))"

    whole = "[$__range]"
    share = (f"100 * (sum({rate(count, FIVE_XX, whole)}) or vector(0))\n  / sum({rate(count, window=whole)})")
    by_route_share = (f"100 * sum by (http_route) ({rate(count, FIVE_XX)})\n"
                      f"  / sum by (http_route) ({rate(count)})")
    failures = (f"sum by (error_type, http_response_status_code) (\n"
                f"  {rate(count, FIVE_XX)}\n  or {rate(count, HAS_ERROR_TYPE)}\n)")
    mean = (f"sum by (http_route) ({rate(HTTP_DURATION + '_sum')})\n"
            f"  / sum by (http_route) ({rate(count)})")
    routes = [
        prom(f"sum by (http_route) (increase({count}{{{RED}}}{whole}))", instant=True, ref="A"),
        prom(f"sum by (http_route) ({rate(count, window=whole)})", instant=True, ref="B"),
        prom(f"100 * (sum by (http_route) ({rate(count, FIVE_XX, whole)})\n"
             f"  or 0 * sum by (http_route) ({rate(count, window=whole)}))\n"
             f"  / sum by (http_route) ({rate(count, window=whole)})", instant=True, ref="C"),
        prom(f"sum by (http_route) ({rate(HTTP_DURATION + '_sum', window=whole)})\n"
             f"  / sum by (http_route) ({rate(count, window=whole)})", instant=True, ref="D"),
    ]
    panels = [
        stat("Requests per second", [prom(f"sum({rate(count, window=whole)})", instant=True)],
             grid(0, 0, 6, 4), unit="reqps", description="Average over the time range."),
        stat("Errors (5xx)", [prom(share, instant=True)], grid(6, 0, 6, 4), unit="percent",
             thresholds=[(None, "green"), (1, "orange"), (5, "red")],
             description="Share of requests answered 5xx over the time range."),
        stat("Duration p95 (now)", [prom(quantile(0.95), instant=True)], grid(12, 0, 6, 4), unit="s",
             thresholds=[(None, "green"), (0.5, "orange"), (2, "red")]),
        stat("In flight (now)", [prom(f"sum({HTTP_ACTIVE}{{{RED}}})", instant=True)], grid(18, 0, 6, 4)),
        row("Rate", 4),
        timeseries("Requests per second by route",
                   [prom(f"sum by (http_route) ({rate(count)})", "{{http_route}}")], grid(0, 5, 12, 8),
                   unit="reqps", stack=True, description="From the duration histogram's count: every answered request."),
        timeseries("Requests per second by status",
                   [prom(f"sum by (http_response_status_code) ({rate(count)})", "{{http_response_status_code}}")],
                   grid(12, 5, 12, 8), unit="reqps", stack=True),
        row("Errors", 13),
        timeseries("5xx share by route", [prom(by_route_share, "{{http_route}}")], grid(0, 14, 12, 8),
                   unit="percent", description="Requests answered 5xx, in percent of the route's requests."),
        timeseries("Failures per second by error type",
                   [prom(failures, "{{error_type}} {{http_response_status_code}}")], grid(12, 14, 12, 8),
                   unit="reqps", bars=True, stack=True,
                   description="error.type of failed requests (the exception's class), and 5xx answers."),
        row("Duration", 22),
        timeseries("Duration percentiles",
                   [prom(quantile(q), name, ref) for q, name, ref in ((0.5, "p50", "A"), (0.95, "p95", "B"),
                                                                      (0.99, "p99", "C"))],
                   grid(0, 23, 12, 8), unit="s",
                   description="histogram_quantile() over the buckets' rates: linear inside a bucket."),
        timeseries("Duration p95 by route", [prom(quantile(0.95, "le, http_route"), "{{http_route}}")],
                   grid(12, 23, 12, 8), unit="s"),
        timeseries("Mean duration by route", [prom(mean, "{{http_route}}")], grid(0, 31, 12, 8), unit="s",
                   description="The histogram's sum over its count, as rates."),
        timeseries("Requests in flight",
                   [prom(f"sum by (http_route) (max_over_time({HTTP_ACTIVE}{{{RED}}}[$__interval]))",
                         "{{http_route}}")], grid(12, 31, 12, 8),
                   description="http.server.active_requests, the highest value of each step."),
        table("Routes", routes, grid(0, 39, 24, 8),
              units={"Value #A": "short", "Value #B": "reqps", "Value #C": "percent", "Value #D": "s"},
              description="Over the time range: requests (A), per second (B), 5xx share (C), mean duration (D)."),
    ]
    return dashboard(
        "pgpulse-http-red", "HTTP services (RED)",
        "Rate, errors and duration of HTTP services instrumented with OpenTelemetry "
        "(http.server.request.duration, http.server.active_requests), e.g. the demo app of `make demo`, "
        "in PromQL through the pgpulse (PromQL) data source.",
        panels, [job_var, route_var], time_from="now-1h", tags=("metrics", "red"),
    )


# -- Readings and ETL ------------------------------------------------------------------


def readings_etl() -> dict:
    reset_ids()
    source_var = query_var(
        "source",
        "SELECT DISTINCT coalesce(source_id, '(none)') FROM reading_analytics\n"
        "WHERE $__timeFilter(reading_time)\nORDER BY 1",
        multi=True, include_all=True, description="Reading sources in the time range.",
    )
    src = "coalesce(source_id, '(none)') IN ($source)"
    panels = [
        stat("Readings in range",
             f"SELECT count(*) AS readings FROM reading_analytics WHERE $__timeFilter(reading_time) AND {src}",
             grid(0, 0, 6, 4)),
        stat("Newest sync", "SELECT max(synced_at) AS \"newest sync\" FROM reading_analytics",
             grid(6, 0, 6, 4), unit="dateTimeFromNow"),
        stat("ETL runs failed",
             "SELECT count(*) FILTER (WHERE status = 'failed') AS failed FROM etl_runs WHERE $__timeFilter(started_at)",
             grid(12, 0, 6, 4), thresholds=[(None, "green"), (1, "red")]),
        stat("Open rejects",
             "SELECT count(*) AS \"open rejects\" FROM etl_rejects WHERE replayed_at IS NULL",
             grid(18, 0, 6, 4), thresholds=[(None, "green"), (1, "orange")]),
        timeseries("Readings per step, by source",
                   f"""SELECT $__timeGroupAlias(reading_time, $__interval), coalesce(source_id, '(none)') AS metric,
       count(*) AS readings
FROM reading_analytics
WHERE $__timeFilter(reading_time) AND {src}
GROUP BY 1, 2
ORDER BY 1, 2""", grid(0, 4, 12, 8), bars=True, stack=True,
                   description="By the reading's own time."),
        timeseries("Rows loaded and rejected per step",
                   """SELECT $__timeGroupAlias(started_at, $__interval),
       sum(loaded) AS loaded, sum(rejected) AS rejected
FROM etl_runs
WHERE $__timeFilter(started_at)
GROUP BY 1
ORDER BY 1""", grid(12, 4, 12, 8), bars=True, description="By the start of the ETL run."),
        timeseries("ETL runs per step, by status",
                   """SELECT $__timeGroupAlias(started_at, $__interval), status AS metric, count(*) AS runs
FROM etl_runs
WHERE $__timeFilter(started_at)
GROUP BY 1, 2
ORDER BY 1, 2""", grid(0, 12, 12, 8), bars=True, stack=True),
        bargauge("Rejects by reason",
                 """SELECT reason, count(*) AS rejects
FROM etl_rejects
WHERE $__timeFilter(created_at)
GROUP BY reason
ORDER BY 2 DESC
LIMIT 20""", grid(12, 12, 12, 8), unit="short", max_value=None),
        table("ETL runs",
              """SELECT started_at AS "started", finished_at AS "finished",
       extract(epoch FROM finished_at - started_at) AS "duration",
       status, trigger, claimed, loaded, rejected, error
FROM etl_runs
WHERE $__timeFilter(started_at)
ORDER BY started_at DESC
LIMIT 200""", grid(0, 20, 24, 8), units={"duration": "s"}),
        table("Recent rejects",
              """SELECT created_at AS "rejected", mongo_id, source_id AS source, reason, run_id,
       replayed_at AS "replayed"
FROM etl_rejects
WHERE $__timeFilter(created_at)
ORDER BY created_at DESC
LIMIT 200""", grid(0, 28, 24, 8)),
    ]
    return dashboard(
        "pgpulse-readings-etl", "Readings and ETL",
        "MongoDB readings after the ETL, the ETL runs and what they rejected.",
        panels, [source_var], time_from="now-24h", tags=("etl",),
    )


# -- pgpulse itself ---------------------------------------------------------------------


def pgpulse_self() -> dict:
    reset_ids()
    def per_tier(raw_select: str, tier_select: str, relation: str, group: str) -> str:
        """One guarded branch per tier: ``raw_select`` over raw rows, ``tier_select`` over buckets."""
        branches = []
        for t in TIERS:
            select = raw_select if t.raw else tier_select
            branches.append(
                f"SELECT $__timeGroupAlias({t.time_column}, $__interval), {select}\n"
                f"FROM {t.relation(relation)}\n"
                f"WHERE '$tier' = '{t.name}' AND $__timeFilter({t.time_column})\n"
                f"GROUP BY {group}"
            )
        return "\nUNION ALL\n".join(branches) + f"\nORDER BY {group}"

    ingest = per_tier(f'{TIERS[0].aggregate("count", value="*")} / ($__interval_ms / 1000.0) AS "samples/s"',
                      f'{TIERS[1].aggregate("count")} / ($__interval_ms / 1000.0)', "samples", "1")
    snapshots = per_tier("host AS metric, count(*) AS snapshots", "host, sum(snapshots)", "hosts", "1, 2")
    # Newest row of each relation, looking back a bounded window (a day, two for the
    # coarsest tier) so partitions and chunks outside it are never read.
    lookback = {t.name: "2 days" if tiers.coarser(t) is None else "1 day" for t in TIERS}
    rels = [(t.relation(f), t) for f in ("hosts", "samples") for t in TIERS]
    freshness_rows = "\n".join(
        f"  {'SELECT' if i == 1 else 'UNION ALL SELECT'} {i}{' AS o' if i == 1 else ''}, '{rel}'"
        f"{' AS relation' if i == 1 else ''}, (SELECT max({t.time_column}) FROM {rel} "
        f"WHERE {t.time_column} > now() - INTERVAL '{lookback[t.name]}'){' AS newest' if i == 1 else ''}"
        for i, (rel, t) in enumerate(rels, start=1)
    )
    n = len(rels)
    freshness = f"""SELECT relation, newest, extract(epoch FROM now() - newest) AS "lag"
FROM (
{freshness_rows}
  UNION ALL SELECT {n + 1}, 'reading_analytics', (SELECT max(synced_at) FROM reading_analytics)
  UNION ALL SELECT {n + 2}, 'etl_runs', (SELECT max(started_at) FROM etl_runs)
) AS t
ORDER BY o"""
    sizes = """SELECT c.relname AS relation,
       pg_total_relation_size(c.oid)
       + coalesce((SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i
                   WHERE i.inhparent = c.oid), 0) AS size
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY 2 DESC
LIMIT 15"""
    panels = [
        stat("Series", "SELECT count(*) AS series FROM series", grid(0, 0, 4, 4),
             description="Series in the catalogue (the cardinality the ingest limits count)."),
        stat("Metric names", "SELECT count(DISTINCT name) AS names FROM series", grid(4, 0, 4, 4)),
        stat("Hosts reporting",
             "SELECT count(DISTINCT host) AS hosts FROM system_metrics\n"
             "WHERE time > $__timeTo()::timestamptz - INTERVAL '5 minutes' AND time <= $__timeTo()",
             grid(8, 0, 4, 4), description="Hosts with a snapshot in the 5 minutes before the end of the range."),
        stat("ETL runs succeeded",
             "SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded FROM etl_runs WHERE $__timeFilter(started_at)",
             grid(12, 0, 4, 4)),
        stat("ETL runs failed",
             "SELECT count(*) FILTER (WHERE status = 'failed') AS failed FROM etl_runs WHERE $__timeFilter(started_at)",
             grid(16, 0, 4, 4), thresholds=[(None, "green"), (1, "red")]),
        stat("Database size", "SELECT pg_database_size(current_database()) AS size", grid(20, 0, 4, 4),
             unit="bytes"),
        timeseries("Samples ingested per second", ingest, grid(0, 4, 12, 8),
                   description="Rows written to samples, from the tier that suits the range."),
        timeseries("Snapshots per step, by host", snapshots, grid(12, 4, 12, 8), bars=True, stack=True),
        table("Tier freshness", freshness, grid(0, 12, 12, 8), units={"lag": "s"},
              description="Newest row of each relation (raw within a day, tiers within a day or two). "
              "A 5m tier far behind its raw table means rollups or refresh policies are not running."),
        bargauge("Largest relations", sizes, grid(12, 12, 12, 8), unit="bytes", max_value=None,
                 description="Including partitions (portable) or chunks (timescale)."),
        timeseries("New series per step",
                   """SELECT $__timeGroupAlias(created_at, $__interval), count(*) AS "new series"
FROM series
WHERE $__timeFilter(created_at)
GROUP BY 1
ORDER BY 1""", grid(0, 20, 12, 8), bars=True),
        table("Series per metric name (top 20)",
              """SELECT name, count(*) AS series, count(*) FILTER (WHERE type = 'counter') AS counters,
       max(created_at) AS "newest series"
FROM series
GROUP BY name
ORDER BY 2 DESC, 1
LIMIT 20""", grid(12, 20, 12, 8)),
    ]
    return dashboard(
        "pgpulse-self", "pgpulse",
        "pgpulse itself, as its database sees it: ingest, cardinality, tier freshness, ETL runs and sizes.",
        panels, [TIER_VAR], time_from="now-24h", tags=("self",),
    )


# -- Logs -----------------------------------------------------------------------------


def logs() -> dict:
    reset_ids()
    selector = '{service=~"$service", level=~"$level"}'
    search = ' |~ "(?i)$search"'

    def loki_ts(title: str, expr: str, pos: dict, legend: str) -> dict:
        return {
            "id": next(_ids), "type": "timeseries", "title": title, "datasource": LOKI, "gridPos": pos,
            "targets": [{"refId": "A", "datasource": LOKI, "expr": expr, "legendFormat": legend,
                         "queryType": "range", "editorMode": "code"}],
            "fieldConfig": {"defaults": {"unit": "short", "custom": {
                "drawStyle": "bars", "fillOpacity": 60, "stacking": {"mode": "normal", "group": "A"}}},
                "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi"}},
        }

    panels = [
        loki_ts("Log lines by level",
                f"sum by (level) (count_over_time({selector}{search} [$__interval]))",
                grid(0, 0, 12, 8), "{{level}}"),
        loki_ts("Log lines by service",
                f"sum by (service) (count_over_time({selector}{search} [$__interval]))",
                grid(12, 0, 12, 8), "{{service}}"),
        {
            "id": next(_ids), "type": "logs", "title": "Logs", "datasource": LOKI, "gridPos": grid(0, 8, 24, 18),
            "targets": [{"refId": "A", "datasource": LOKI, "expr": selector + search,
                         "queryType": "range", "editorMode": "code"}],
            "options": {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending",
                        "enableLogDetails": True, "prettifyLogMessage": False, "dedupStrategy": "none"},
        },
    ]
    variables = [
        loki_var("service", "service", ".+"),
        loki_var("level", "level", ".*"),
        textbox_var("search", "", "search", "A regular expression the line must match (case-insensitive)."),
    ]
    return dashboard(
        "pgpulse-logs", "Logs",
        "Logs of every container of the stack (Promtail or Alloy) and pgpulse's own (pushed directly), by service and level.",
        panels, variables, time_from="now-1h", tags=("logs",),
    )


BUILDERS = {
    "hosts.json": hosts,
    "app-metrics.json": app_metrics,
    "http-red.json": red,
    "readings-etl.json": readings_etl,
    "pgpulse.json": pgpulse_self,
    "logs.json": logs,
}


def render(build) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    OUT.mkdir(exist_ok=True)
    for name, build in BUILDERS.items():
        text = render(build)
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)} (run python grafana/build_dashboards.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
