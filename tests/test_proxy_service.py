"""The proxy inside ``pgpulse up`` (ProxyService: werkzeug in a thread on 127.0.0.1)
and the gunicorn options of ``pgpulse proxy``. Real PostgreSQL, real sockets."""

from __future__ import annotations

import logging
import socket

import pytest
import requests
from polling import wait_for

from pgpulse.commands.proxy import ProxyService, check_open_bind, gunicorn_options, is_loopback
from pgpulse.commands.up import build_services
from pgpulse.config import SettingsError

DEADLINE = 60  # seconds: generous, for a busy machine


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
                          json={"metrics": [{"name": "m", "value": 1}]}, timeout=DEADLINE)
        assert r.status_code == 200 and r.json()["accepted"] == 1
        # Errors of the HTTP server itself are JSON too (here a 70 KB request line).
        r = requests.get(f"http://127.0.0.1:{port}/api/query", params={"query": "a" * 70_000},
                         timeout=DEADLINE)
        assert r.status_code == 414 and r.headers["Content-Type"] == "application/json"
        assert r.json()["error"]
        assert any("PGPULSE_AUTH=off" in rec.getMessage() for rec in caplog.records)
    finally:
        service.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=DEADLINE)


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
    from gunicorn.workers.gthread import ThreadWorker

    from proxy.settings import load_proxy

    opts = gunicorn_options("0.0.0.0:8085", 3, 4, load_proxy({"PROXY_HEADER_TIMEOUT_SECONDS": "7"}))
    assert issubclass(opts["worker_class"], ThreadWorker)
    assert opts["worker_class"].header_timeout == 7.0
    assert opts["workers"] == 3 and opts["threads"] == 4
    assert opts["control_socket_disable"], "one control socket path per user: two proxies collide"


def test_pgpulse_proxy_under_gunicorn(db_url, tmp_path):
    """`pgpulse proxy` with two workers: it serves, logs JSON, and /metrics adds up workers."""
    import os
    import subprocess
    import sys

    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "PORT": str(port), "PROXY_HOST": "127.0.0.1",
           "PGPULSE_AUTH": "off", "LOG_FORMAT": "json"}
    proc = subprocess.Popen([sys.executable, "-m", "pgpulse", "proxy", "--workers", "2", "--threads", "2"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.poll() is None, "the proxy exited"
            try:
                return requests.get(base + "/ready", timeout=DEADLINE).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(ready, DEADLINE, "the proxy to be ready")
        for i in range(6):
            r = requests.post(base + "/api/ingest", json={"metrics": [{"name": "m", "labels": {"i": str(i)}, "value": 1}]},
                              timeout=DEADLINE)
            assert r.status_code == 200
        text = requests.get(base + "/metrics", timeout=DEADLINE).text
        assert "pgpulse_proxy_samples_ingested_total 6.0" in text
        assert requests.get(base + "/api/query?token=x", timeout=DEADLINE).status_code == 400
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=DEADLINE)
    json_lines = [line for line in out.splitlines() if line.startswith("{")]
    assert any('"logger":"gunicorn.error"' in line for line in json_lines)
    assert any('"PGPULSE_AUTH=off' in line or "PGPULSE_AUTH=off" in line for line in json_lines)


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [("127.0.0.1:8085", True), ("[::1]:8085", True), ("localhost:8085", True),
     ("unix:/run/pgpulse.sock", True), ("0.0.0.0:8085", False), (":8085", False),
     ("[::]:8085", False), ("192.0.2.7:8085", False)],
)
def test_is_loopback(bind, loopback):
    assert is_loopback(bind) is loopback


def test_auth_off_beyond_loopback_needs_a_second_setting():
    from proxy.settings import load_proxy

    open_wide = load_proxy({"PGPULSE_AUTH": "off"})
    with pytest.raises(SettingsError, match="PGPULSE_AUTH_OFF_BEYOND_LOOPBACK=on"):
        check_open_bind("0.0.0.0:8085", open_wide)
    check_open_bind("127.0.0.1:8085", open_wide)  # loopback: fine
    check_open_bind("0.0.0.0:8085", load_proxy({}))  # auth on: fine
    check_open_bind("0.0.0.0:8085", load_proxy({"PGPULSE_AUTH": "off",
                                                "PGPULSE_AUTH_OFF_BEYOND_LOOPBACK": "on"}))


def test_pgpulse_proxy_refuses_to_start_open_on_every_interface(db_url, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": db_url, "PORT": str(free_port()),
           "PROXY_HOST": "0.0.0.0", "PGPULSE_AUTH": "off"}
    env.pop("PGPULSE_AUTH_OFF_BEYOND_LOOPBACK", None)
    proc = subprocess.run([sys.executable, "-m", "pgpulse", "proxy"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "PGPULSE_AUTH=off with the non-loopback address 0.0.0.0:" in proc.stderr
