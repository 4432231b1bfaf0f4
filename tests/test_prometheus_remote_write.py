"""A real Prometheus remote-writes to a real pgpulse: what pgpulse stores equals what
Prometheus itself answers, series for series and sample for sample, across an outage.

Debian's ``prometheus`` (2.42) scrapes a real ``prometheus-node-exporter`` and
pgpulse's own /metrics every second, with ``remote_write`` to ``pgpulse proxy`` (a
subprocess, gunicorn, auth on, ``basic_auth`` with the key as the password). The
proxy is stopped for 30 s in the middle: Prometheus keeps the samples in its WAL,
retries, and after the restart pgpulse holds exactly the samples Prometheus's HTTP
API answers for the same range, none missing, none twice; pgpulse's own series,
whose scrapes failed during the outage, carry Prometheus's staleness markers as
markers. Both binaries are installed by .ci/run (apt-get).
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import requests
from polling import wait_for
from proxy_helpers import new_key

DEADLINE = 120  # seconds: generous, for a busy 2-core machine
OUTAGE_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    assert path, f"{name} is not installed (apt-get install prometheus prometheus-node-exporter; .ci/run does it)"
    return path


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=10).status_code == 200
    except requests.ConnectionError:
        return False


class Proxy:
    """``pgpulse proxy`` as a process that can be stopped and started again on its port."""

    def __init__(self, db_url: str, port: int, workdir: Path) -> None:
        self.env = {**os.environ, "DATABASE_URL": db_url, "PORT": str(port),
                    "PROXY_HOST": "127.0.0.1", "PGPULSE_AUTH": "on"}
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.workdir / f"proxy-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pgpulse", "proxy", "--workers", "1", "--threads", "4"],
            env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            assert self.proc.poll() is None, (self.workdir / f"proxy-{self.starts}.log").read_text()
            return answers(self.url + "/ready")

        wait_for(ready, DEADLINE, "pgpulse proxy to be ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=DEADLINE)


def start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def prometheus_config(node: int, proxy: int, key: str) -> str:
    return f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: node
    static_configs: [{{targets: ["127.0.0.1:{node}"]}}]
  - job_name: pgpulse
    static_configs: [{{targets: ["127.0.0.1:{proxy}"]}}]
remote_write:
  - url: http://127.0.0.1:{proxy}/api/v1/write
    basic_auth:
      username: prometheus
      password: {key}
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 2s
    metadata_config:
      send_interval: 2s
"""


def prometheus_samples(base: str, end_s: float, span_s: int) -> dict:
    """Every raw sample Prometheus holds in (end - span, end]: its answer to an instant
    query of a range selector (staleness markers are not samples there)."""
    r = requests.get(base + "/api/v1/query", timeout=DEADLINE,
                     params={"query": f'{{__name__=~".+"}}[{span_s}s]', "time": f"{end_s:.3f}"})
    r.raise_for_status()
    out: dict = {}
    for series in r.json()["data"]["result"]:
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        out[(name, tuple(sorted(labels.items())))] = [
            (round(float(t) * 1000), value_key(float(v))) for t, v in series["values"]]
    return out


def value_key(v: float) -> float | str:
    return "NaN" if math.isnan(v) else v


def pgpulse_samples(db_url: str, end_ms: int) -> dict:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT se.name, se.labels, (extract(epoch FROM s.time) * 1000)::bigint, s.value "
            "FROM samples s JOIN series se ON se.id = s.series_id "
            "WHERE s.time <= to_timestamp(%s / 1000.0) ORDER BY 1, 2::text, 3", (end_ms,)).fetchall()
    out: dict = {}
    for name, labels, t, v in rows:
        out.setdefault((name, tuple(sorted(labels.items()))), []).append((t, value_key(v)))
    return out


def remote_storage_counters(base: str) -> dict[str, float]:
    text = requests.get(base + "/metrics", timeout=DEADLINE).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("prometheus_remote_storage_samples_") and not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def test_prometheus_remote_write_equals_prometheus_across_an_outage(db_url, tmp_path):
    key = new_key(db_url, "ingest")
    node_port, proxy_port, prom_port = free_port(), free_port(), free_port()
    proxy = Proxy(db_url, proxy_port, tmp_path)
    node = start([tool("prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{node_port}",
                  "--collector.disable-defaults", "--collector.cpu", "--collector.loadavg",
                  "--collector.meminfo", "--collector.netdev", "--collector.stat",
                  "--collector.time", "--collector.uname"], tmp_path / "node.log")
    (tmp_path / "prometheus.yml").write_text(prometheus_config(node_port, proxy_port, key))
    prom_url = f"http://127.0.0.1:{prom_port}"
    prom: subprocess.Popen | None = None
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{node_port}/metrics"), DEADLINE, "node_exporter")
        proxy.start()
        started_s = time.time()
        prom = start([tool("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                      f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                      f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prometheus.log")

        def prometheus_ready() -> bool:
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()
            return answers(prom_url + "/-/ready")

        wait_for(prometheus_ready, DEADLINE, "Prometheus to be ready")

        def pgpulse_has(name: str) -> bool:
            with psycopg.connect(db_url) as conn:
                return conn.execute("SELECT count(*) FROM samples s JOIN series se ON "
                                    "se.id = s.series_id WHERE se.name = %s", (name,)
                                    ).fetchone()[0] >= 3

        wait_for(lambda: pgpulse_has("node_load1") and pgpulse_has("pgpulse_proxy_series"),
                 DEADLINE, "the first scrapes to arrive through remote write")

        outage_from_ms = int(time.time() * 1000)
        proxy.stop()
        time.sleep(OUTAGE_S)
        outage_to_ms = int(time.time() * 1000)
        proxy.start()
        time.sleep(5)  # a few scrapes after the restart
        end_s = time.time()
        end_ms = int(end_s * 1000)
        span_s = int(end_s - started_s) + 120  # reaches back before the first scrape

        expected = prometheus_samples(prom_url, end_s, span_s)
        assert len(expected) > 50, "Prometheus should hold node_exporter's and pgpulse's series"
        jobs = {dict(labels).get("job") for _, labels in expected}
        assert {"node", "pgpulse"} <= jobs
        # Prometheus kept scraping node_exporter while pgpulse was down.
        during = [t for t, _ in expected[("node_load1", (("instance", f"127.0.0.1:{node_port}"),
                                                         ("job", "node")))]
                  if outage_from_ms + 2000 < t < outage_to_ms - 2000]
        assert len(during) >= OUTAGE_S // 2

        def caught_up() -> bool:
            return pgpulse_samples(db_url, end_ms) == expected

        try:
            wait_for(caught_up, DEADLINE * 2, "pgpulse to hold what Prometheus holds", interval=2)
        except AssertionError:
            got = pgpulse_samples(db_url, end_ms)
            missing = {k: v for k, v in expected.items() if got.get(k) != v}
            extra = {k for k in got if k not in expected}
            first = next(iter(missing.items()), None)
            detail = None if first is None else (first[0], first[1][:5], got.get(first[0], [])[:5])
            raise AssertionError(f"{len(missing)} series differ, {len(extra)} extra; first: {detail}"
                                 ) from None

        counters = remote_storage_counters(prom_url)
        assert counters.get("prometheus_remote_storage_samples_retried_total", 0) > 0, counters
        assert counters.get("prometheus_remote_storage_samples_failed_total", 0) == 0, counters
        assert counters.get("prometheus_remote_storage_samples_dropped_total", 0) == 0, counters

        with psycopg.connect(db_url) as conn:
            # Scrapes of pgpulse failed during the outage: its series went stale, and the
            # markers are markers (never a value: no NaN with the marker's bits in samples).
            stale_jobs = {row[0] for row in conn.execute(
                "SELECT DISTINCT se.labels->>'job' FROM stale_markers m "
                "JOIN series se ON se.id = m.series_id "
                "WHERE m.time BETWEEN to_timestamp(%s / 1000.0) AND to_timestamp(%s / 1000.0)",
                (outage_from_ms, outage_to_ms))}
            assert "pgpulse" in stale_jobs, conn.execute(
                "SELECT se.labels->>'job', count(*), min(m.time), max(m.time) FROM stale_markers m "
                "JOIN series se ON se.id = m.series_id GROUP BY 1").fetchall()
            # Metadata came too, and typed the series.
            assert conn.execute("SELECT type FROM metric_metadata WHERE name = "
                                "'node_cpu_seconds'").fetchone() == ("counter",) or \
                conn.execute("SELECT type FROM metric_metadata WHERE name = "
                             "'node_cpu_seconds_total'").fetchone() == ("counter",)
            assert conn.execute("SELECT DISTINCT type FROM series WHERE name = "
                                "'node_cpu_seconds_total'").fetchall() == [("counter",)]
            assert conn.execute("SELECT DISTINCT type FROM series WHERE name = "
                                "'pgpulse_proxy_request_duration_seconds_bucket'"
                                ).fetchall() == [("counter",)]
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(timeout=DEADLINE)
        proxy.stop()
        node.terminate()
        node.wait(timeout=DEADLINE)
