"""The live proxy answers as its OpenAPI document says: schemathesis, every check.

The proxy serves on a real socket (auth on, a fresh database with a few series and
snapshots), and schemathesis runs against /api/openapi.json once per scope, each
operation with a key of the scope it needs (query, ingest, admin) and the open
operations without one: all checks, a fixed seed and a bounded number of examples.
Any failure (a 5xx, a response outside its schema, valid input refused, invalid
input accepted, ...) fails the test with schemathesis's report.

One expectation is set here rather than by schemathesis's default: requests that
the schema cannot call invalid may still be a 400 (a selector that does not parse,
start after end, more points than PROXY_MAX_POINTS), a well-formed run id may name
no run (404), and a second ETL run while one goes is a 409.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import mongomock
import pytest
import requests
from etl_helpers import MONGO_URI, MockSource, reading
from proxy_helpers import new_key, serving

from etl.settings import load_etl
from proxy import create_app

SEED = 20261201
MAX_EXAMPLES = 6
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "404", "409"]
"""


@pytest.fixture
def live_proxy(db_url: str) -> Iterator[str]:
    # MongoDB cannot be installed on the test machines: the ETL reads mongomock, with a
    # few readings (one holding a double of 1e308, which lands in jsonb as a 309-digit number).
    mongo = mongomock.MongoClient(tz_aware=True)
    mongo["pgpulse"]["readings"].insert_many(
        [reading(i) for i in range(5)] + [reading(5, value=1e308)])
    # ignored_auth sends a wrong key to every operation on purpose: the lockout after
    # PROXY_RATELIMIT_AUTH_FAILURES would answer the rest of the run 429 (the lockout
    # is tested in tests/test_ratelimit.py).
    config = {"DATABASE_URL": db_url, "PGPULSE_AUTH": "on", "MONGO_URI": MONGO_URI,
              "PROXY_RATELIMIT_AUTH_FAILURES": "off"}
    with serving(create_app(config, etl_source=MockSource(load_etl(config), mongo))) as url:
        yield url


def _seed(base: str, ingest_key: str) -> None:
    now = time.time()
    headers = {"Authorization": f"Bearer {ingest_key}"}
    r = requests.post(f"{base}/api/ingest", headers=headers, timeout=60, json={"metrics": [
        {"name": "cpu_temp", "labels": {"host": h}, "value": i, "timestamp": now - 600 + i * 10}
        for h in ("a", "b") for i in range(30)] + [
        {"name": "reqs", "labels": {"host": "a"}, "value": i, "type": "counter",
         "timestamp": now - 600 + i * 10} for i in range(30)]})
    assert r.status_code == 200, r.text
    r = requests.post(f"{base}/api/ingest/snapshots", headers=headers, timeout=60, json={
        "snapshots": [{"host": "web1", "time": datetime.fromtimestamp(now - 60 * i, UTC).isoformat(),
                       "data": {"cpu": {"percent": i}}} for i in range(5)]})
    assert r.status_code == 200, r.text


def _run(base: str, tmp_path: Path, name: str, selection: list[str], key: str | None) -> str:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        cli, "--config-file", str(config), "run", f"{base}/api/openapi.json",
        "--checks", "all", "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES),
        "--phases", "examples,coverage,fuzzing", "--workers", "1", "--no-shrink",
        "--request-timeout", "60", "--suppress-health-check", "all", *selection,
    ]
    if key is not None:
        command += ["-H", f"Authorization: Bearer {key}"]
    # tests/schemathesis_hooks.py: serializers of the protocols' binary media types.
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                       os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=env)
    report = f"schemathesis ({name}) exit {done.returncode}\n{done.stdout[-20000:]}\n{done.stderr[-5000:]}"
    assert done.returncode == 0, report
    return done.stdout


# "/" and /console/{name}: the console's page and files (it reads the API with a key).
OPEN_PATHS = "^/(health|ready|metrics|api/openapi.json|console/{name})?$"


def test_every_operation_conforms_with_a_key_of_every_scope(db_url, live_proxy, tmp_path):
    keys = {scope: new_key(db_url, scope) for scope in ("query", "ingest", "admin")}
    # The four runs below together select every operation of the document.
    doc = requests.get(f"{live_proxy}/api/openapi.json", timeout=60).json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op.get("x-scope") in keys or re.match(OPEN_PATHS, path), (method, path)
    _seed(live_proxy, keys["ingest"])
    for scope, key in keys.items():
        out = _run(live_proxy, tmp_path, scope, ["--include-by", f'/x-scope == "{scope}"'], key)
        assert "passed" in out.lower(), out
    out = _run(live_proxy, tmp_path, "open",
               ["--include-path-regex", OPEN_PATHS], None)
    assert "passed" in out.lower(), out
