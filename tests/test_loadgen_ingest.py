"""`pgpulse loadgen ingest`: the payloads of each protocol, and a run against a live
proxy (werkzeug in this process, auth on) whose stored samples equal what the load
generator says was accepted."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import orjson
import psycopg
import pytest
from proxy_helpers import live_proxy, new_key

from pgpulse.loadgen import payloads
from pgpulse.protocols import remote_write
from pgpulse.protocols.prompb import MetricMetadata


@pytest.fixture
def proxy_url(db_url):
    with live_proxy(db_url) as url:
        yield url


def loadgen(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPULSE_", "DATABASE_URL"))}
    return subprocess.run([sys.executable, "-m", "pgpulse", "loadgen", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_series_set_moves_counters_up_and_covers_every_series():
    s = payloads.SeriesSet(4)
    first = s.take(6, 1_000)
    assert [x.labels["series"] for x in first] == ["0", "1", "2", "3", "0", "1"]
    assert first[4].time_ns > first[0].time_ns  # a series twice in a batch: a later time
    second = s.take(4, 2_000)
    counters = {x.labels["series"]: x.value for x in first[:4] if x.counter}
    for x in second:
        if x.counter:
            assert x.value > counters[x.labels["series"]]
    assert {x.name for x in first} == {payloads.COUNTER, payloads.GAUGE}


def test_json_payload_is_pgpulse_ingest():
    samples = payloads.SeriesSet(2).take(2, 1_700_000_000_500_000_000)
    p = payloads.payload(samples, payloads.build_json, headers={"Authorization": "Bearer k"}, compress=True)
    assert p.headers == {"Authorization": "Bearer k", "Content-Type": "application/json",
                         "Content-Encoding": "gzip"}
    doc = orjson.loads(gzip.decompress(p.body))
    assert doc["metrics"][0] == {"name": "loadgen_counter_total", "labels": {"series": "0", "instance": "loadgen-1"},
                                 "value": samples[0].value, "timestamp": 1_700_000_000.5, "type": "counter"}
    assert doc["metrics"][1]["type"] == "gauge"


def test_otlp_payload_decodes_as_an_export_request():
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.metrics.v1 import metrics_pb2

    samples = payloads.SeriesSet(4).take(4, 1_700_000_000_000_000_000)
    body, content_type = payloads.build_otlp(samples, start_ns=1_690_000_000_000_000_000)
    assert content_type == "application/x-protobuf"
    request = ExportMetricsServiceRequest.FromString(body)
    (rm,) = request.resource_metrics
    resource = {a.key: a.value.string_value for a in rm.resource.attributes}
    assert resource == {"service.name": "pgpulse-loadgen", "service.instance.id": "loadgen-1"}
    metrics = {m.name: m for m in rm.scope_metrics[0].metrics}
    counter, gauge = metrics["loadgen.counter"], metrics["loadgen.gauge"]
    assert counter.sum.is_monotonic
    assert counter.sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    assert [(p.attributes[0].value.string_value, p.as_double) for p in counter.sum.data_points] == \
        [(s.labels["series"], s.value) for s in samples if s.counter]
    assert all(p.start_time_unix_nano == 1_690_000_000_000_000_000 for p in counter.sum.data_points)
    assert len(gauge.gauge.data_points) == 2

    body, content_type = payloads.build_otlp_json(samples, start_ns=1)
    doc = json.loads(body)
    metric = doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]
    # OTLP/JSON: enums as integers, 64-bit integers as strings.
    assert metric["sum"]["aggregationTemporality"] == 2
    assert metric["sum"]["dataPoints"][0]["timeUnixNano"] == "1700000000000000000"


def test_influx_payload_is_line_protocol():
    samples = payloads.SeriesSet(2, instance="a b").take(2, 1_700_000_000_123_456_789)
    body, _ = payloads.build_influx(samples)
    lines = body.decode().split("\n")
    assert lines[0] == f"loadgen,instance=a\\ b,series=0 counter_total={samples[0].value:g} 1700000000123456789"
    assert lines[1].startswith("loadgen,instance=a\\ b,series=1 gauge=")
    assert payloads.auth_headers("influx", "k") == {"Authorization": "Token k"}
    assert payloads.auth_headers("otlp", "k") == {"Authorization": "Bearer k"}


def test_remote_write_payload_is_a_snappy_write_request():
    samples = payloads.SeriesSet(3).take(4, 1_700_000_000_500_000_000)
    p = payloads.payload(samples, payloads.build_remote_write,
                         headers=payloads.auth_headers("remote_write", "k"), compress=True)
    # Snappy already: --gzip adds no second encoding.
    assert p.headers == {"Authorization": "Bearer k", "Content-Type": "application/x-protobuf",
                         "Content-Encoding": "snappy", "X-Prometheus-Remote-Write-Version": "0.1.0"}
    req = remote_write.parse(remote_write.decompress(p.body, 1 << 20))
    got = {tuple((label.name, label.value) for label in ts.labels): [(s.timestamp, s.value) for s in ts.samples]
           for ts in req.timeseries}
    # Series 0 twice in one batch: the second a millisecond later, remote write's resolution.
    assert got[(("__name__", "loadgen_counter_total"), ("instance", "loadgen-1"), ("series", "0"))] == [
        (1_700_000_000_500, samples[0].value), (1_700_000_000_501, samples[3].value)]
    assert sum(len(v) for v in got.values()) == 4 and len(got) == 3
    assert {m.metric_family_name: m.type for m in req.metadata} == {
        "loadgen_counter_total": MetricMetadata.COUNTER, "loadgen_gauge": MetricMetadata.GAUGE}


def test_remote_write_run_stores_what_it_reports(db_url, proxy_url, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(new_key(db_url, "ingest") + "\n")
    proc = loadgen("ingest", "--url", proxy_url, "--protocol", "remote_write", "--rate", "10", "--duration", "2",
                   "--batch", "10", "--series", "30", "--api-key-file", str(key_file), "--even", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["by_status"] == {"204": 20}, summary
    assert summary["samples_sent"] == summary["samples_accepted"] == 200
    with psycopg.connect(db_url) as conn:
        stored = conn.execute(
            "SELECT count(*), count(DISTINCT p.series_id) FROM samples p JOIN series s ON s.id = p.series_id "
            "WHERE s.name IN ('loadgen_counter_total', 'loadgen_gauge')").fetchone()
        types = dict(conn.execute("SELECT name, type FROM series").fetchall())
    assert stored == (200, 30)
    assert types == {"loadgen_counter_total": "counter", "loadgen_gauge": "gauge"}


def test_ingest_run_stores_what_it_reports(db_url, proxy_url, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(new_key(db_url, "ingest") + "\n")
    proc = loadgen("ingest", "--url", proxy_url, "--protocol", "json", "--rate", "20", "--duration", "2",
                   "--batch", "10", "--series", "30", "--api-key-file", str(key_file), "--gzip",
                   "--even", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["sent"] == 40 and summary["by_status"] == {"200": 40}, summary
    assert summary["samples_sent"] == summary["samples_accepted"] == 400
    with psycopg.connect(db_url) as conn:
        stored = conn.execute(
            "SELECT count(*), count(DISTINCT p.series_id) FROM samples p JOIN series s ON s.id = p.series_id "
            "WHERE s.name IN ('loadgen_counter_total', 'loadgen_gauge')").fetchone()
        types = dict(conn.execute("SELECT name, type FROM series").fetchall())
    assert stored == (400, 30)
    assert types == {"loadgen_counter_total": "counter", "loadgen_gauge": "gauge"}


def test_ingest_run_without_a_key_reports_the_refusal(db_url, proxy_url):
    proc = loadgen("ingest", "--url", proxy_url, "--rate", "10", "--duration", "0.5", "--even", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["by_status"] == {"401": 5} and summary["samples_accepted"] == 0
    assert any(reason.startswith("401:") for reason in summary["failures"])


def test_unreachable_target_exits_1_and_says_so(tmp_path):
    proc = loadgen("app", "--url", "http://127.0.0.1:9", "--rate", "10", "--duration", "0.3", "--even")
    assert proc.returncode == 1
    assert "no request got an answer" in proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["app", "--rate", "0"], "--rate must be > 0"),
    (["app", "--endpoint", "GET /x"], "expected 'METHOD /path=WEIGHT'"),
    (["app", "--error-ratio", "2"], "error ratio must be in [0, 1]"),
    (["ingest", "--batch", "0"], "--batch must be >= 1"),
    (["app", "--pattern", "bursts", "--burst-length", "90"], "a burst lasts"),
])
def test_bad_arguments_exit_2_with_a_message(args, message):
    proc = loadgen(*args)
    assert proc.returncode == 2
    assert message in proc.stderr


VICTORIA_METRICS = "/usr/bin/victoria-metrics"


@pytest.fixture
def victoria_metrics(tmp_path):
    """Debian's VictoriaMetrics on a loopback port: a real receiver of line protocol
    (pgpulse's own comes with its Influx endpoint)."""
    import socket

    from polling import wait_for

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([VICTORIA_METRICS, f"-httpListenAddr=127.0.0.1:{port}",
                             f"-storageDataPath={tmp_path / 'vm'}", "-search.latencyOffset=0s",
                             "-search.disableCache"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        import requests
        try:
            return requests.get(f"{url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(up, 60, "VictoriaMetrics to answer")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_influx_payloads_are_taken_by_a_real_line_protocol_receiver(victoria_metrics):
    import requests
    from polling import wait_for

    proc = loadgen("ingest", "--url", victoria_metrics, "--protocol", "influx", "--rate", "10", "--duration", "1",
                   "--batch", "10", "--series", "10", "--even", "--gzip", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["by_status"] == {"204": 10} and summary["samples_accepted"] == 100, summary

    def exported() -> dict[str, list]:
        r = requests.get(f"{victoria_metrics}/api/v1/export", params={"match[]": '{__name__=~"loadgen_.*"}'},
                         timeout=10)
        series = [json.loads(line) for line in r.text.splitlines() if line.strip()]
        got: dict[str, list] = {}
        for s in series:
            got.setdefault(s["metric"]["__name__"], []).extend(s["values"])
        return got if sum(len(v) for v in got.values()) == 100 else {}

    got = wait_for(exported, 60, "the 100 samples in VictoriaMetrics")
    assert sorted(got) == ["loadgen_counter_total", "loadgen_gauge"]
    assert len(got["loadgen_counter_total"]) == len(got["loadgen_gauge"]) == 50
