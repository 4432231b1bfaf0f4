"""Rate limits: ingest samples and query requests per key and per address, failed
authentications per address, 429 with Retry-After and RateLimit-* headers; counted in
memory, or in Redis shared by every worker and every proxy process.

Redis is the server on 127.0.0.1:6379 when one answers there; otherwise the
``redis_url`` fixture starts ``redis-server`` (Debian's package, installed by
.ci/run) on a free port for the session. Each test counts under its own namespace
(PROXY_RATELIMIT_NAMESPACE), so runs sharing one Redis never see each other's counts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis
import requests
from polling import wait_for
from prometheus_client import REGISTRY
from proxy_helpers import assert_error, new_key, sample

DEADLINE = 60  # seconds: generous, for a busy machine
HEADERS = ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
# Limits a test does not exercise stay out of its way.
WIDE = {
    "PROXY_RATELIMIT_INGEST_PER_KEY": "off",
    "PROXY_RATELIMIT_INGEST_PER_ADDRESS": "off",
    "PROXY_RATELIMIT_QUERY_PER_KEY": "off",
    "PROXY_RATELIMIT_QUERY_PER_ADDRESS": "off",
    "PROXY_RATELIMIT_AUTH_FAILURES": "off",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """The Redis on 127.0.0.1:6379, or a redis-server started on a free port."""
    url = "redis://127.0.0.1:6379/0"
    if _answers(url):
        yield url
        return
    binary = shutil.which("redis-server")
    assert binary, "no Redis on 127.0.0.1:6379 and no redis-server to start (apt-get install redis-server)"
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: _answers(url), DEADLINE, "redis-server to answer")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=DEADLINE)


def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def assert_limited(response, limit: int) -> dict:
    body = assert_error(response, 429)
    for header in HEADERS:
        assert header in response.headers, f"{header} missing from the 429"
    assert int(response.headers["RateLimit-Limit"]) == limit
    assert int(response.headers["RateLimit-Remaining"]) == 0
    reset = int(response.headers["RateLimit-Reset"])
    assert reset >= 1 and int(response.headers["Retry-After"]) == reset
    assert body["limit"] == limit and body["retry_after"] == reset
    return body


def recent(seconds_ago: int) -> str:
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds_ago + 60)
    return t.isoformat().replace("+00:00", "Z")


def count_samples(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM samples").fetchone()[0]


# -- in memory (one process) ---------------------------------------------------------


def test_query_requests_per_key(make_app, db_url):
    app = make_app(PGPULSE_AUTH="on", **{**WIDE, "PROXY_RATELIMIT_QUERY_PER_KEY": "3/hour"})
    client = app.test_client()
    first, second = new_key(db_url, "query"), new_key(db_url, "query")
    for _ in range(3):
        assert client.get("/api/labels", headers={"X-API-Key": first}).status_code == 200
    body = assert_limited(client.get("/api/labels", headers={"X-API-Key": first}), 3)
    assert body["kind"] == "query" and "per key" in body["error"]
    # Another key from the same address has its own count.
    assert client.get("/api/labels", headers={"X-API-Key": second}).status_code == 200


def test_query_requests_per_address(make_app):
    app = make_app(**{**WIDE, "PROXY_RATELIMIT_QUERY_PER_ADDRESS": "2/hour"})
    client = app.test_client()
    for _ in range(2):
        assert client.get("/api/labels").status_code == 200
    assert_limited(client.get("/api/labels"), 2)
    assert_limited(client.get("/api/series"), 2)  # every view of the query scope
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.9"
    assert other.get("/api/labels").status_code == 200
    # Ingest is not a query: its own limits (off here) apply.
    assert client.post("/api/ingest", json={"metrics": [sample()]}).status_code == 200


def test_ingest_samples_per_key_refuses_whole_batch(make_app, db_url):
    app = make_app(PGPULSE_AUTH="on", **{**WIDE, "PROXY_RATELIMIT_INGEST_PER_KEY": "10/hour"})
    client = app.test_client()
    key, other = new_key(db_url, "ingest"), new_key(db_url, "ingest")
    h = {"Authorization": f"Bearer {key}"}
    batch = {"metrics": [sample(i=str(i)) for i in range(6)]}
    assert client.post("/api/ingest", json=batch, headers=h).status_code == 200
    assert count_samples(db_url) == 6
    body = assert_limited(client.post("/api/ingest", json=batch, headers=h), 10)
    assert body["kind"] == "ingest"
    assert count_samples(db_url) == 6, "a refused batch writes nothing"
    # Snapshots count against the same limit.
    snaps = {"snapshots": [{"host": "h", "time": recent(0), "data": {}}]}
    assert_limited(client.post("/api/ingest/snapshots", json=snaps, headers=h), 10)
    assert client.post("/api/ingest", json=batch, headers={"X-API-Key": other}).status_code == 200
    # A batch no window could ever take is a 413, not a 429 to retry for ever.
    big = {"metrics": [sample(i=str(i)) for i in range(11)]}
    r = client.post("/api/ingest", json=big, headers={"X-API-Key": other})
    assert assert_error(r, 413)["limit"] == 10


def test_ingest_samples_per_address(make_app, db_url):
    app = make_app(**{**WIDE, "PROXY_RATELIMIT_INGEST_PER_ADDRESS": "5/hour"})
    client = app.test_client()
    snaps = {"snapshots": [{"host": "h", "time": recent(i), "data": {}} for i in range(3)]}
    r = client.post("/api/ingest/snapshots", json=snaps)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert_limited(client.post("/api/ingest", json={"metrics": [sample(i=str(i)) for i in range(3)]}), 5)
    assert count_samples(db_url) == 0


def test_failed_authentications_per_address(make_app, db_url):
    app = make_app(PGPULSE_AUTH="on", **{**WIDE, "PROXY_RATELIMIT_AUTH_FAILURES": "3/hour"})
    attacker = app.test_client()
    good = new_key(db_url, "query")
    # A request without a key is not an attempt.
    for _ in range(5):
        assert_error(attacker.get("/api/labels"), 401)
    wrong = "pgpk_" + "x" * 43
    for _ in range(3):
        assert_error(attacker.get("/api/labels", headers={"X-API-Key": wrong}), 401)
    body = assert_limited(attacker.get("/api/labels", headers={"X-API-Key": wrong}), 3)
    assert body["kind"] == "auth"
    # Locked out: even a valid key is refused from this address until the window ends...
    assert_limited(attacker.get("/api/labels", headers={"X-API-Key": good}), 3)
    # ... and malformed credentials are refused as before.
    assert_error(attacker.get("/api/labels", headers={"Authorization": "Basic !!"}), 401)
    # Another address is not affected.
    user = app.test_client()
    user.environ_base["REMOTE_ADDR"] = "192.0.2.10"
    assert user.get("/api/labels", headers={"X-API-Key": good}).status_code == 200


def test_malformed_credentials_count_as_failures(make_app):
    app = make_app(PGPULSE_AUTH="on", **{**WIDE, "PROXY_RATELIMIT_AUTH_FAILURES": "2/hour"})
    client = app.test_client()
    for _ in range(2):
        assert_error(client.get("/api/labels", headers={"Authorization": "Digest abc"}), 401)
    assert_limited(client.get("/api/labels", headers={"X-API-Key": "pgpk_" + "y" * 43}), 2)


def test_limits_can_be_turned_off(make_app, db_url):
    tight = {k: "1/hour" for k in WIDE}
    app = make_app(PGPULSE_AUTH="on", PROXY_RATELIMIT="off", **tight)
    client = app.test_client()
    key = new_key(db_url, "admin")
    for _ in range(3):
        assert client.get("/api/labels", headers={"X-API-Key": key}).status_code == 200
        assert client.post("/api/ingest", json={"metrics": [sample(), sample(i="2")]},
                           headers={"X-API-Key": key}).status_code == 200
        assert_error(client.get("/api/labels", headers={"X-API-Key": "pgpk_" + "z" * 43}), 401)


def test_memory_counts_are_per_process(make_app):
    """Without REDIS_URL each process (here: each app) counts on its own."""
    config = {**WIDE, "PROXY_RATELIMIT_QUERY_PER_ADDRESS": "2/hour"}
    one, two = make_app(**config).test_client(), make_app(**config).test_client()
    assert [one.get("/api/labels").status_code for _ in range(3)] == [200, 200, 429]
    assert [two.get("/api/labels").status_code for _ in range(3)] == [200, 200, 429]


# -- Redis ----------------------------------------------------------------------------


def test_redis_counts_are_shared_by_apps(make_app, redis_url):
    config = {**WIDE, "REDIS_URL": redis_url, "PROXY_RATELIMIT_NAMESPACE": namespace(),
              "PROXY_RATELIMIT_QUERY_PER_ADDRESS": "4/hour"}
    one, two = make_app(**config).test_client(), make_app(**config).test_client()
    codes = [(one if i % 2 else two).get("/api/labels").status_code for i in range(6)]
    assert codes == [200, 200, 200, 200, 429, 429]


def test_redis_away_falls_back_to_memory(make_app):
    name = "pgpulse_proxy_ratelimit_storage_errors_total"
    before = REGISTRY.get_sample_value(name) or 0
    app = make_app(**{**WIDE, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                      "PROXY_RATELIMIT_QUERY_PER_ADDRESS": "2/hour"})
    client = app.test_client()
    assert [client.get("/api/labels").status_code for _ in range(3)] == [200, 200, 429]
    assert (REGISTRY.get_sample_value(name) or 0) > before


# -- across processes -------------------------------------------------------------------


def _start_proxy(db_url: str, env_extra: dict[str, str], workers: int, tmp_path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    tmp_path.mkdir(exist_ok=True)
    inherited = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env = {**inherited, "DATABASE_URL": db_url, "PORT": str(port), "PROXY_HOST": "127.0.0.1",
           "PGPULSE_AUTH": "on", "LOG_FORMAT": "text", **env_extra}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgpulse", "proxy", "--workers", str(workers), "--threads", "2"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, "the proxy exited"
        try:
            return requests.get(base + "/ready", timeout=DEADLINE).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(ready, DEADLINE, "the proxy to be ready")
    return proc, base


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=DEADLINE)


def _ingest(base: str, key: str, n: int) -> int:
    # A fresh connection per request, so gunicorn hands requests to either worker.
    body = {"metrics": [{"name": "rl", "labels": {"u": uuid.uuid4().hex}, "value": 1.0} for _ in range(n)]}
    with requests.Session() as s:
        return s.post(base + "/api/ingest", json=body, headers={"X-API-Key": key},
                      timeout=DEADLINE).status_code


def test_limits_hold_across_two_gunicorn_workers(db_url, redis_url, tmp_path):
    key = new_key(db_url, "ingest")
    proc, base = _start_proxy(db_url, {**WIDE, "REDIS_URL": redis_url,
                                       "PROXY_RATELIMIT_NAMESPACE": namespace(),
                                       "PROXY_RATELIMIT_INGEST_PER_KEY": "50/hour"}, 2, tmp_path)
    try:
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: _ingest(base, key, 5), range(16)))
    finally:
        _stop([proc])
    assert sorted(codes) == [200] * 10 + [429] * 6
    assert count_samples(db_url) == 50


def test_limits_hold_across_two_proxy_processes(db_url, redis_url, tmp_path):
    key = new_key(db_url, "query")
    extra = {**WIDE, "REDIS_URL": redis_url, "PROXY_RATELIMIT_NAMESPACE": namespace(),
             "PROXY_RATELIMIT_QUERY_PER_KEY": "6/hour", "PROXY_RATELIMIT_AUTH_FAILURES": "2/hour"}
    (p1, one), (p2, two) = (_start_proxy(db_url, extra, 1, tmp_path / "a"),
                            _start_proxy(db_url, extra, 1, tmp_path / "b"))
    try:
        h = {"X-API-Key": key}
        codes = [requests.get((one, two)[i % 2] + "/api/labels", headers=h, timeout=DEADLINE).status_code
                 for i in range(10)]
        assert codes == [200] * 6 + [429] * 4
        limited = requests.get(two + "/api/labels", headers=h, timeout=DEADLINE)
        assert limited.status_code == 429 and all(x in limited.headers for x in HEADERS)
        # Failed authentications from one address add up across the two processes.
        wrong = {"X-API-Key": "pgpk_" + "w" * 43}
        assert requests.get(one + "/api/labels", headers=wrong, timeout=DEADLINE).status_code == 401
        assert requests.get(two + "/api/labels", headers=wrong, timeout=DEADLINE).status_code == 401
        assert requests.get(one + "/api/labels", headers=wrong, timeout=DEADLINE).status_code == 429
    finally:
        _stop([p1, p2])


def test_memory_counter_increments_one_at_a_time(monkeypatch):
    """The in-memory counters are hit by the threads of a gthread worker at once; the
    library's increment restarts its expiry timer without a lock (two threads could
    start one timer twice: a 500), so pgpulse's memory storage takes them one at a
    time. Checked by making each increment of the library slow and watching for two
    at once."""
    from limits.storage import MemoryStorage

    from proxy.ratelimit import LockedMemoryStorage

    inside = 0
    most = 0
    guard = threading.Lock()
    library_incr = MemoryStorage.incr

    def slow_incr(self, key, expiry, amount=1):
        nonlocal inside, most
        with guard:
            inside += 1
            most = max(most, inside)
        time.sleep(0.02)
        try:
            return library_incr(self, key, expiry, amount)
        finally:
            with guard:
                inside -= 1

    monkeypatch.setattr(MemoryStorage, "incr", slow_incr)
    storage = LockedMemoryStorage()
    barrier = threading.Barrier(4)

    def hit(k: int) -> int:
        barrier.wait()
        return storage.incr("ingest/key/1", 60, 10)

    with ThreadPoolExecutor(4) as pool:
        totals = sorted(pool.map(hit, range(4)))
    assert most == 1, "two increments ran at once"
    assert totals == [10, 20, 30, 40]
