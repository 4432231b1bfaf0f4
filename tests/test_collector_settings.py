"""Collector settings: defaults, and a one-line error naming the variable for every
bad value (interval <= 0, unknown sink, http sink without URL or with an
unreachable one, paths that are not there)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from collector.settings import load_collector
from pgpulse.config import SettingsError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults(tmp_path):
    s = load_collector({})
    assert (s.interval, s.sink, s.top_n, s.hostname) == (10.0, "postgres", 5, None)
    assert s.spool_path(tmp_path) == tmp_path / "spool"
    assert load_collector({"COLLECTOR_SPOOL_DIR": "/x/y"}).spool_path(tmp_path) == Path("/x/y")
    assert load_collector({"COLLECTOR_INTERVAL": "0.25"}).interval == 0.25
    assert load_collector({"COLLECTOR_LABELS": "env=prod, rack=r1"}).labels == {"env": "prod", "rack": "r1"}
    assert load_collector({"COLLECTOR_SINK": "HTTP", "COLLECTOR_HTTP_URL": "http://p:8085"}).sink == "http"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"COLLECTOR_INTERVAL": "0"}, "COLLECTOR_INTERVAL='0': must be > 0"),
        ({"COLLECTOR_INTERVAL": "-5"}, "COLLECTOR_INTERVAL='-5': must be > 0"),
        ({"COLLECTOR_INTERVAL": "ten"}, "COLLECTOR_INTERVAL='ten': expected a number"),
        ({"COLLECTOR_INTERVAL": "nan"}, "COLLECTOR_INTERVAL='nan': expected a finite number"),
        ({"COLLECTOR_SINK": "kafka"}, "COLLECTOR_SINK='kafka': expected one of postgres, http"),
        ({"COLLECTOR_SINK": "http"}, "COLLECTOR_HTTP_URL must be set when COLLECTOR_SINK=http"),
        ({"COLLECTOR_HTTP_URL": "ftp://proxy"}, "COLLECTOR_HTTP_URL: expected a URL starting with http:// or https://"),
        ({"COLLECTOR_TOP_N": "-1"}, "COLLECTOR_TOP_N='-1': must be >= 0"),
        ({"COLLECTOR_TOP_N": "1000"}, "COLLECTOR_TOP_N='1000': must be <= 100"),
        ({"COLLECTOR_LABELS": "env"}, "COLLECTOR_LABELS='env': expected key=value pairs"),
        ({"COLLECTOR_HOSTNAME": "my host"}, "COLLECTOR_HOSTNAME='my host': a host name has no spaces"),
        ({"COLLECTOR_SPOOL_MAX_ROWS": "0"}, "COLLECTOR_SPOOL_MAX_ROWS='0': must be >= 1"),
        ({"COLLECTOR_REPLAY_RATE": "0"}, "COLLECTOR_REPLAY_RATE='0': must be > 0"),
        ({"COLLECTOR_PROC_PATH": "/no/such/proc"}, "COLLECTOR_PROC_PATH='/no/such/proc': not a directory"),
        ({"COLLECTOR_ROOT_PATH": "/no/such/host"}, "COLLECTOR_ROOT_PATH='/no/such/host': not a directory"),
    ],
)
def test_bad_values_name_the_variable(environ, message):
    with pytest.raises(SettingsError) as info:
        load_collector(environ)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_api_key_from_a_file(tmp_path):
    (tmp_path / "key").write_text("pgp_secret\n")
    assert load_collector({"COLLECTOR_API_KEY_FILE": str(tmp_path / "key")}).api_key == "pgp_secret"


def collect(tmp_path: Path, *args: str, **environ: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPULSE_", "COLLECTOR_", "DATABASE_URL"))}
    env.update(PGPULSE_DATA_DIR=str(tmp_path / "var"), **environ)
    return subprocess.run([sys.executable, "-m", "pgpulse", "collect", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("environ", "line"),
    [
        ({"COLLECTOR_INTERVAL": "0"}, "pgpulse: configuration error: COLLECTOR_INTERVAL='0': must be > 0"),
        ({"COLLECTOR_SINK": "nowhere"},
         "pgpulse: configuration error: COLLECTOR_SINK='nowhere': expected one of postgres, http"),
        ({"COLLECTOR_SINK": "http"},
         "pgpulse: configuration error: COLLECTOR_HTTP_URL must be set when COLLECTOR_SINK=http"),
    ],
)
def test_cli_one_line_error(tmp_path, environ, line):
    proc = collect(tmp_path, **environ)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [line]
    assert not (tmp_path / "var" / "spool").exists()  # nothing was written


def test_cli_unreachable_http_url_at_start(tmp_path):
    port = free_port()
    proc = collect(tmp_path, COLLECTOR_SINK="http", COLLECTOR_HTTP_URL=f"http://127.0.0.1:{port}",
                   COLLECTOR_API_KEY="pgp_do_not_print")
    assert proc.returncode == 2
    [line] = [x for x in proc.stderr.strip().splitlines() if x.startswith("pgpulse:")]
    assert line.startswith(f"pgpulse: configuration error: COLLECTOR_HTTP_URL='http://127.0.0.1:{port}/api/ingest/snapshots'")
    assert "cannot connect" in line
    assert "pgp_do_not_print" not in proc.stderr + proc.stdout
