"""Prometheus as the oracle of pgpulse's PromQL: one generated data set in both.

:func:`generate` makes the data set (counters with resets, gaps longer than the
lookback, irregular intervals, values with many decimals, negative gauges, classic
histograms, series that start late or end early). :func:`write_openmetrics`
writes it for ``promtool tsdb create-blocks-from openmetrics``; :class:`Prometheus`
starts Debian's /usr/bin/prometheus on a free loopback port over those blocks;
:func:`load_into_pgpulse` writes the same samples through the store.
:func:`same_answer` compares two API answers: same series and labels, same
timestamps, values within 1e-9 relative (or both NaN).
"""

from __future__ import annotations

import math
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import requests

from pgpulse.store.batch import PG_EPOCH_US, Batch
from pgpulse.store.samples import write_batch
from pgpulse.store.series import SeriesLimits

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, in ms
SPAN_MS = 3 * 3600 * 1000
BUCKETS = ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf")

Labels = tuple[tuple[str, str], ...]
DataSet = dict[Labels, list[tuple[int, float]]]  # labels (with __name__) -> (ms, value)


def _times(rng: random.Random, start: int, end: int, base_ms: int, jitter_ms: int) -> Iterator[int]:
    t = start + rng.randrange(0, base_ms)
    while t < end:
        yield t
        t += base_ms + rng.randint(-jitter_ms, jitter_ms)


def _key(name: str, **labels: str) -> Labels:
    return tuple(sorted({"__name__": name, **labels}.items()))


def generate(seed: int = 13) -> DataSet:
    rng = random.Random(seed)
    data: DataSet = {}
    end = T0 + SPAN_MS
    # Counters: irregular scrapes, resets, a gap longer than the lookback, late starts.
    for job in ("api", "web"):
        for instance in ("i1", "i2", "i3"):
            for method in ("GET", "POST"):
                key = _key("http_requests_total", job=job, instance=instance, method=method)
                start = T0 + (3_600_000 if (job, instance, method) == ("web", "i3", "POST") else 0)
                stop = end - (3_600_000 if (job, instance, method) == ("api", "i2", "GET") else 0)
                gap = T0 + rng.randrange(3_000_000, 7_000_000) if instance == "i1" else None
                value = rng.uniform(0, 500)
                points = []
                for t in _times(rng, start, stop, 15_000, 4_000):
                    if gap is not None and gap <= t < gap + 660_000:
                        continue
                    if rng.random() < 0.01:
                        value = rng.uniform(0, 3)
                    else:
                        value += rng.expovariate(1 / 7.3) * rng.choice((1, 1, 1, 0.001))
                    points.append((t, round(value, 6)))
                data[key] = points
    # Gauges: many decimals, negative values, irregular intervals.
    for host in ("h1", "h2", "h3", "h4", "h5"):
        zone = "eu" if host in ("h1", "h2", "h3") else "us"
        key = _key("node_temperature_celsius", host=host, zone=zone)
        value = rng.uniform(-5, 60)
        data[key] = []
        for t in _times(rng, T0, end, 20_000, 9_000):
            value += rng.gauss(0, 1.7)
            data[key].append((t, value))
    # Classic histograms: cumulative buckets, _sum and _count, regular scrapes.
    for job in ("api", "web"):
        counts = [0.0] * len(BUCKETS)
        total = 0.0
        series: dict[Labels, list[tuple[int, float]]] = {}
        for t in range(T0 + 1_000, end, 15_000):
            for _ in range(rng.randint(0, 12)):
                observed = rng.expovariate(1 / 0.4)
                total += observed
                for i, bound in enumerate(BUCKETS):
                    if observed <= float(bound):
                        counts[i] += 1
            for i, bound in enumerate(BUCKETS):
                series.setdefault(_key("request_duration_seconds_bucket", job=job, le=bound),
                                  []).append((t, counts[i]))
            series.setdefault(_key("request_duration_seconds_sum", job=job), []).append((t, total))
            series.setdefault(_key("request_duration_seconds_count", job=job), []).append(
                (t, counts[-1]))
        data.update(series)
    # 0/1 gauges, integer gauges for label_replace, a constant info metric.
    for job in ("api", "web"):
        for instance in ("i1", "i2", "i3"):
            key = _key("up", job=job, instance=instance)
            state = 1.0
            data[key] = []
            for t in _times(rng, T0, end, 30_000, 0):
                if rng.random() < 0.03:
                    state = 1.0 - state
                data[key].append((t, state))
        data[_key("build_info", job=job, version=f"1.{len(job)}.{ord(job[0]) % 7}")] = [
            (t, 1.0) for t in range(T0 + 5_000, end, 60_000)]
    for queue in ("alpha-1", "beta-22", "gamma-333"):
        key = _key("queue_depth", queue=queue, env="prod")
        data[key] = [(t, float(rng.randint(0, 40))) for t in _times(rng, T0, end, 45_000, 15_000)]
    return data


def _openmetrics_value(v: float) -> str:
    return repr(v)


def write_openmetrics(data: DataSet, path: Path) -> None:
    """The data set as OpenMetrics text, one family after another, for promtool."""
    by_name: dict[str, list[Labels]] = {}
    for key in data:
        by_name.setdefault(dict(key)["__name__"], []).append(key)
    lines = []
    for name in sorted(by_name):
        for key in sorted(by_name[name]):
            labels = ",".join(f'{k}="{v}"' for k, v in key if k != "__name__")
            for t, v in data[key]:
                lines.append(f"{name}{{{labels}}} {_openmetrics_value(v)} {t // 1000}.{t % 1000:03d}")
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")


def load_into_pgpulse(data: DataSet, conn: psycopg.Connection) -> None:
    """The data set written through the store, in one transaction."""
    batch = Batch()
    for key, points in data.items():
        labels = dict(key)
        name = labels.pop("__name__")
        typ = "counter" if name.endswith(("_total", "_bucket", "_sum", "_count")) else "gauge"
        k = batch.series(name, labels, typ)
        for t, v in points:
            batch.rows.append((t * 1000 - PG_EPOCH_US, k, v))
    with conn.transaction():
        write_batch(conn, batch, SeriesLimits(max_series=100_000, max_series_per_metric=10_000),
                    tenant="default")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """Debian's Prometheus over blocks backfilled from an OpenMetrics file."""

    def __init__(self, workdir: Path, data: DataSet) -> None:
        self.workdir = workdir
        source = workdir / "data.om"
        write_openmetrics(data, source)
        self.tsdb = workdir / "tsdb"
        self.tsdb.mkdir()
        done = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source),
                               str(self.tsdb)], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        config = workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={self.tsdb}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=100y",
             "--query.lookback-delta=5m", "--query.max-samples=50000000"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{self.url}/-/ready", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("prometheus did not start: "
                                   + (workdir / "prometheus.log").read_text()[-3000:])
            time.sleep(0.2)

    def get(self, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        r = requests.get(f"{self.url}{path}", params=params, timeout=120)
        return r.status_code, r.json()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=60)
        self.log.close()


# -- comparing answers -----------------------------------------------------------------


def _float(text: str) -> float:
    return float(text.replace("+Inf", "inf").replace("-Inf", "-inf"))


def close(a: str, b: str) -> bool:
    x, y = _float(a), _float(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def _series(result: list[dict[str, Any]], key: str) -> dict[Labels, list]:
    out: dict[Labels, list] = {}
    for entry in result:
        labels = tuple(sorted(entry["metric"].items()))
        assert labels not in out, f"series {labels} twice in one answer"
        out[labels] = [entry[key]] if key == "value" else entry[key]
    return out


def differences(expected: dict[str, Any], got: dict[str, Any], limit: int = 5) -> list[str]:
    """What differs between Prometheus's data (expected) and pgpulse's (got)."""
    if expected["resultType"] != got["resultType"]:
        return [f"resultType {got['resultType']} != {expected['resultType']}"]
    kind = expected["resultType"]
    if kind in ("scalar", "string"):
        e, g = expected["result"], got["result"]
        if e[0] != g[0] or not (close(e[1], g[1]) if kind == "scalar" else e[1] == g[1]):
            return [f"{kind} {g} != {e}"]
        return []
    key = "value" if kind == "vector" else "values"
    e_series, g_series = _series(expected["result"], key), _series(got["result"], key)
    problems = []
    for labels in sorted(set(e_series) | set(g_series)):
        if labels not in g_series:
            problems.append(f"missing series {dict(labels)}")
        elif labels not in e_series:
            problems.append(f"extra series {dict(labels)}")
        else:
            e_points, g_points = e_series[labels], g_series[labels]
            e_times = [p[0] for p in e_points]
            g_times = [p[0] for p in g_points]
            if e_times != g_times:
                missing = sorted(set(e_times) - set(g_times))[:3]
                extra = sorted(set(g_times) - set(e_times))[:3]
                problems.append(f"{dict(labels)}: timestamps differ (missing {missing}, "
                                f"extra {extra}; {len(g_times)} vs {len(e_times)})")
                continue
            for (t, ev), (_, gv) in zip(e_points, g_points, strict=True):
                if not close(ev, gv):
                    problems.append(f"{dict(labels)} at {t}: {gv} != {ev}")
                    break
        if len(problems) >= limit:
            break
    return problems
