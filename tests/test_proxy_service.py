"""The proxy inside ``pgpulse up`` (ProxyService: werkzeug in a thread on 127.0.0.1)
and the gunicorn options of ``pgpulse proxy``. Real PostgreSQL, real sockets."""

from __future__ import annotations

import logging
import socket

import pytest
import requests

from pgpulse.commands.proxy import ProxyService, gunicorn_options
from pgpulse.commands.up import build_services


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_service_serves_on_loopback_and_warns_when_open(db_url, monkeypatch, tmp_path, caplog):
    port = free_port()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PORT", str(port))
    monkeypatch.setenv("PGPULSE_AUTH", "off")
    monkeypatch.setenv("PROXY_HOST", "0.0.0.0")  # ignored by `up`
    service = ProxyService(db_url)
    with caplog.at_level(logging.WARNING):
        service.start()
    try:
        assert service.server.server_address[0] == "127.0.0.1"
        r = requests.post(f"http://127.0.0.1:{port}/api/ingest",
                          json={"metrics": [{"name": "m", "value": 1}]}, timeout=5)
        assert r.status_code == 200 and r.json()["accepted"] == 1
        assert any("PGPULSE_AUTH=off" in rec.getMessage() for rec in caplog.records)
    finally:
        service.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=2)


class Args:
    no_proxy = False
    no_collector = True


def test_up_builds_the_proxy_unless_told_not_to(core_settings):
    names = [s.name for s in build_services(core_settings.database_url, core_settings, "portable", Args())]
    assert "proxy" in names
    args = Args()
    args.no_proxy = True
    names = [s.name for s in build_services(core_settings.database_url, core_settings, "portable", args)]
    assert "proxy" not in names


def test_gunicorn_options():
    opts = gunicorn_options("0.0.0.0:8085", 3, 4)
    assert opts["worker_class"] == "gthread" and opts["workers"] == 3 and opts["threads"] == 4


def test_pgpulse_proxy_under_gunicorn(db_url, tmp_path):
    """`pgpulse proxy` with two workers: it serves, logs JSON, and /metrics adds up workers."""
    import os
    import subprocess
    import sys
    import time

    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "PORT": str(port), "PROXY_HOST": "127.0.0.1",
           "PGPULSE_AUTH": "off", "LOG_FORMAT": "json"}
    proc = subprocess.Popen([sys.executable, "-m", "pgpulse", "proxy", "--workers", "2", "--threads", "2"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 20
        while True:
            try:
                if requests.get(base + "/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline, "proxy did not start"
            time.sleep(0.2)
        for i in range(6):
            r = requests.post(base + "/api/ingest", json={"metrics": [{"name": "m", "labels": {"i": str(i)}, "value": 1}]},
                              timeout=5)
            assert r.status_code == 200
        text = requests.get(base + "/metrics", timeout=5).text
        assert "pgpulse_proxy_samples_ingested_total 6.0" in text
        assert requests.get(base + "/api/query?token=x", timeout=5).status_code == 400
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    json_lines = [line for line in out.splitlines() if line.startswith("{")]
    assert any('"logger":"gunicorn.error"' in line for line in json_lines)
    assert any('"PGPULSE_AUTH=off' in line or "PGPULSE_AUTH=off" in line for line in json_lines)
