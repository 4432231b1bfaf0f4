"""The first run as a newcomer meets it: `pgpulse up` on an embedded database prints
where the console is and an admin key that logs in, once; a second `up` says where
the first one runs; logs are text on a terminal and JSON otherwise; without its
chart library the console says what to run (never a 500). Real PostgreSQL (the
embedded server of `up`), real subprocesses."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from polling import wait_for
from test_cli_up import pgpulse_env

from pgpulse.logs import resolve_format
from proxy import assets


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Up:
    """`pgpulse up` in the background, its stdout and stderr in files."""

    def __init__(self, env: dict[str, str], cwd: Path, name: str) -> None:
        self.out = cwd / f"{name}.out"
        self.err = cwd / f"{name}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "pgpulse", "up"], env=env, cwd=cwd,
                                         stdout=out, stderr=err)

    def banner(self) -> str:
        def up() -> str | None:
            assert self.proc.poll() is None, self.err.read_text() + self.out.read_text()
            text = self.err.read_text()
            return text if "pgpulse is up" in text and "stop " in text else None
        return wait_for(up, 180, "the banner of pgpulse up")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=90)
        assert self.proc.returncode == 0, self.err.read_text()


def test_up_prints_the_console_and_a_first_key_once_and_a_second_up_says_where(tmp_path):
    port = free_port()
    env = pgpulse_env(tmp_path, PGPULSE_AUTH="on", PORT=str(port), LOG_FORMAT="auto",
                      COLLECTOR_INTERVAL="2")
    first = Up(env, tmp_path, "first")
    try:
        banner = first.banner()
        console = f"http://127.0.0.1:{port}/"
        assert f"console   {console}" in banner
        assert f"data      {(tmp_path / 'var' / 'pgdata').resolve()} (embedded PostgreSQL)" in banner
        assert "Ctrl-C" in banner and "make backup" in banner
        key = re.search(r"admin key, shown only now \(keep it\): (pgpk_\S+)", banner).group(1)
        # The key logs in, and is admin; the console page is served.
        headers = {"Authorization": f"Bearer {key}"}
        assert requests.get(console + "api/hosts", headers=headers, timeout=30).status_code == 200
        # admin scope: the replay passes the scope check and meets the unconfigured ETL
        replay = requests.post(console + "api/sync/rejects/replay", json={"all": True}, headers=headers,
                               timeout=30)
        assert replay.status_code == 503 and "MONGO_URI" in replay.json()["error"], replay.text
        assert requests.get(console, timeout=30).headers["Content-Type"].startswith("text/html")
        # stdout is not a terminal here: JSON lines; and the key is only in the banner.
        lines = first.out.read_text().splitlines()
        assert lines and all(line.startswith("{") for line in lines)
        assert key not in first.out.read_text()
        # the collector's snapshots of this machine reach the console's API
        wait_for(lambda: requests.get(console + "api/hosts", headers=headers, timeout=30).json()["hosts"],
                 120, "this host's first snapshot")

        second = subprocess.run([sys.executable, "-m", "pgpulse", "up"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 3, second.stderr
        assert f"pgpulse is already running (pid {first.proc.pid}" in second.stderr
        assert f"console at {console}" in second.stderr
        assert str((tmp_path / "var" / "pgdata").resolve()) in second.stderr
    finally:
        first.stop()

    again = Up(env, tmp_path, "again")
    try:
        banner = again.banner()
        assert "pgpk_" not in banner, "the first key is printed once only"
        assert "keys create NAME --scope admin" in banner
    finally:
        again.stop()


def test_a_taken_port_is_one_clear_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = pgpulse_env(tmp_path, PORT=str(port), LOG_FORMAT="json")
        proc = subprocess.run([sys.executable, "-m", "pgpulse", "up", "--no-collector"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert f"port {port} on 127.0.0.1 is taken by another program" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_log_format_auto_is_text_on_a_terminal_and_json_otherwise():
    primary, secondary = os.openpty()
    try:
        with open(secondary, "w", closefd=False) as tty:
            assert resolve_format("auto", tty) == "text"
            assert resolve_format("json", tty) == "json"
    finally:
        os.close(primary)
        os.close(secondary)
    read, write = os.pipe()
    try:
        with open(write, "w", closefd=False) as pipe:
            assert resolve_format("auto", pipe) == "json"
            assert resolve_format("text", pipe) == "text"
    finally:
        os.close(read)
        os.close(write)
    assert resolve_format("auto", io.StringIO()) == "json"


@pytest.fixture
def no_assets(monkeypatch, tmp_path):
    monkeypatch.setattr(assets, "MODULES_DIR", tmp_path / "node_modules")


def test_console_without_its_library_says_what_to_run(make_app, no_assets):
    client = make_app().test_client()
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert "make console" in page.get_data(as_text=True)
    body = client.get("/", headers={"Accept": "application/json"})
    assert body.status_code == 503 and "make console" in body.json["error"]
    assert body.json["missing"] == list(assets.VENDOR)
    lib = client.get("/console/uPlot.iife.min.js")
    assert lib.status_code == 503 and "make console" in lib.json["error"]
    # The console's own files and the API are unaffected.
    assert client.get("/console/app.js").status_code == 200
    assert client.get("/api/hosts").status_code == 200


def test_console_files(make_app):
    assert not assets.missing(), "run `make console`"
    client = make_app().test_client()
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    for src in re.findall(r'(?:src|href)="(/console/[^"]+)"', html):
        r = client.get(src)
        assert r.status_code == 200 and r.data, src
    assert client.get("/console/uPlot.iife.min.js").mimetype == "text/javascript"
    assert client.get("/console/../pyproject.toml").status_code == 404
    assert client.get("/console/package.json").status_code == 404
    assert client.get("/console/index.html").status_code == 404
