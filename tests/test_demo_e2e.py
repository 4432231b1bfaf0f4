"""End to end: the demo app (``python -m demo``) driven by ``pgpulse loadgen app``,
exporting with the OpenTelemetry SDK to a live proxy's ``/v1/metrics`` (werkzeug in
this process, auth on); and ``pgpulse loadgen ingest --protocol otlp`` in both OTLP
encodings. What lands in the samples tables is what the RED dashboard reads
(grafana/build_dashboards.py, ``red()``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from polling import wait_for
from proxy_helpers import live_proxy, new_key

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def proxy_url(db_url):
    with live_proxy(db_url) as url:
        yield url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PGPULSE_", "DATABASE_URL", "OTEL_"))}


def series(db_url: str) -> dict[str, list[dict]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT s.name, s.labels, s.type, count(p.*) FROM series s "
                            "LEFT JOIN samples p ON p.series_id = s.id GROUP BY 1, 2, 3").fetchall()
    out: dict[str, list[dict]] = {}
    for name, labels, typ, n in rows:
        out.setdefault(name, []).append({"labels": labels, "type": typ, "samples": n})
    return out


def test_demo_app_under_load_lands_in_pgpulse(db_url, proxy_url, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(new_key(db_url, "ingest"))
    port = free_port()
    app = subprocess.Popen(
        [sys.executable, "-m", "demo", "--port", str(port), "--otlp-endpoint", f"{proxy_url}/v1/metrics",
         "--api-key-file", str(key_file), "--export-interval", "1", "--latency-scale", "0.05",
         "--error-rate", "0.2", "--seed", "1"],
        cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        load = subprocess.run(
            [sys.executable, "-m", "pgpulse", "loadgen", "app", "--url", f"http://127.0.0.1:{port}",
             "--rate", "40", "--duration", "4", "--pattern", "bursts", "--burst-every", "2",
             "--burst-length", "1", "--error-ratio", "0.1", "--seed", "2", "--json"],
            env=clean_env(), capture_output=True, text=True, timeout=120)
        assert load.returncode == 0, load.stderr
        summary = json.loads(load.stdout)
        assert summary["by_class"].get("4xx", 0) > 0 and summary["by_class"]["2xx"] > 50, summary
        # Requests the app answered (status 0: the load generator got no answer).
        answered = summary["answered"] - summary["by_status"].get("0", 0)

        def all_counted():
            counts = series(db_url).get("http_server_request_duration_seconds_count", [])
            with psycopg.connect(db_url) as conn:
                total = conn.execute(
                    "SELECT sum(v) FROM (SELECT DISTINCT ON (p.series_id) p.value AS v FROM samples p "
                    "JOIN series s ON s.id = p.series_id "
                    "WHERE s.name = 'http_server_request_duration_seconds_count' "
                    "ORDER BY p.series_id, p.time DESC) AS latest").fetchone()[0]
            return counts and total == answered

        wait_for(all_counted, 60, f"the {answered} requests counted in pgpulse")
    finally:
        app.send_signal(signal.SIGTERM)
        out, _ = app.communicate(timeout=60)
    assert app.returncode == 0, out

    got = series(db_url)
    for name, typ in [("http_server_request_duration_seconds_bucket", "counter"),
                      ("http_server_request_duration_seconds_sum", "counter"),
                      ("http_server_request_duration_seconds_count", "counter"),
                      ("http_server_active_requests", "gauge"),
                      ("demo_requests_total", "counter"), ("demo_errors_total", "counter")]:
        assert name in got, f"{name} not stored; got {sorted(got)}"
        assert {s["type"] for s in got[name]} == {typ}, name
        assert all(s["labels"]["job"] == "pgpulse-demo" and s["labels"]["instance"] for s in got[name])
    buckets = got["http_server_request_duration_seconds_bucket"]
    routes = {s["labels"].get("http_route") for s in buckets}
    assert {"/api/items", "/api/items/<int:item_id>", "/api/orders", "/api/report"} <= routes
    les = {s["labels"]["le"] for s in buckets}
    assert "+Inf" in les and len(les) == 15
    assert {s["labels"]["http_response_status_code"] for s in buckets} >= {"200", "201", "404", "400"}
    assert {s["labels"]["error_type"] for s in got["demo_errors_total"]} <= {"PaymentTimeout", "OutOfStock",
                                                                             "ReportTimeout"}
    assert got["demo_errors_total"], "no failure was counted"


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_loadgen_otlp_lands_as_the_json_path_would(db_url, proxy_url, tmp_path, encoding):
    key_file = tmp_path / "key"
    key_file.write_text(new_key(db_url, "ingest"))
    proc = subprocess.run(
        [sys.executable, "-m", "pgpulse", "loadgen", "ingest", "--url", proxy_url, "--protocol", "otlp",
         "--encoding", encoding, "--rate", "10", "--duration", "2", "--batch", "20", "--series", "40",
         "--api-key-file", str(key_file), "--even", "--gzip", "--json"],
        env=clean_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["by_status"] == {"200": 20} and summary["samples_accepted"] == 400, summary
    got = series(db_url)
    assert sum(s["samples"] for s in got["loadgen_counter_total"]) == 200
    assert sum(s["samples"] for s in got["loadgen_gauge"]) == 200
    assert {s["type"] for s in got["loadgen_counter_total"]} == {"counter"}
    assert all(s["labels"]["job"] == "pgpulse-loadgen" and s["labels"]["instance"] == "loadgen-1"
               for s in got["loadgen_counter_total"])
