"""`pgpulse proxy` under gunicorn against slow and malformed clients: real sockets,
a real gunicorn, the real PostgreSQL.

A client that sends its request slowly (or stops sending, or never reads) must not
hold a thread the other clients need, and whatever the serving layer answers itself
is JSON in the API's error shape.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote

import requests
from polling import wait_for

DEADLINE = 60  # seconds: generous, for a busy machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(db_url: str, cwd, workers: int = 2, threads: int = 4, **env: str) -> Iterator[str]:
    """`pgpulse proxy` (2 workers x 4 threads) on a free port; yields its base URL."""
    port = free_port()
    full_env = {**os.environ, "DATABASE_URL": db_url, "PORT": str(port),
                "PROXY_HOST": "127.0.0.1", "PGPULSE_AUTH": "off", "LOG_LEVEL": "warning", **env}
    proc = subprocess.Popen([sys.executable, "-m", "pgpulse", "proxy", "--workers", str(workers),
                             "--threads", str(threads)], env=full_env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, "the proxy exited"
        try:
            return requests.get(base + "/ready", timeout=DEADLINE).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(ready, DEADLINE, "the proxy to be ready")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=DEADLINE)


def raw_exchange(base: str, data: bytes) -> bytes:
    """Send ``data`` on a new connection; everything answered until it closes."""
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        s.sendall(data)
        out = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                out += chunk
    return out


def json_error(answer: bytes, status: int) -> dict:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
    assert b"content-type: application/json" in head.lower(), head
    parsed = json.loads(body)
    assert isinstance(parsed["error"], str) and parsed["error"]
    return parsed


class SlowClients:
    """Connections that send a request line, then one header line every ``every`` s."""

    def __init__(self, base: str, count: int, every: float) -> None:
        self.port = int(base.rsplit(":", 1)[1])
        self.count, self.every = count, every
        self.stop = threading.Event()
        self.started = threading.Semaphore(0)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(count)]

    def _run(self, i: int) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: slow\r\n")
            self.started.release()
            n = 0
            while not self.stop.wait(self.every):
                try:
                    s.sendall(b"X-Slow-%d: %d\r\n" % (i, n))
                except OSError:
                    return
                n += 1

    def __enter__(self) -> SlowClients:
        for t in self.threads:
            t.start()
        for _ in range(self.count):
            assert self.started.acquire(timeout=DEADLINE), "slow clients did not connect"
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=DEADLINE)


def test_sixteen_slow_clients_do_not_stop_health_or_queries(db_url, tmp_path):
    with served(db_url, tmp_path) as base, SlowClients(base, 16, every=5.0):
        # 16 slow connections against 2 x 4 threads: each of these would wait for
        # ever if a slow client held a thread. Probed across several header lines.
        for _ in range(3):
            assert requests.get(base + "/health", timeout=DEADLINE).json() == {"status": "ok"}
            r = requests.post(base + "/api/ingest", timeout=DEADLINE,
                              json={"metrics": [{"name": "m", "value": 1}]})
            assert r.status_code == 200, r.text
            r = requests.get(base + "/api/query", params={"query": "m", "agg": "count"},
                             timeout=DEADLINE)
            assert r.status_code == 200, r.text
            time.sleep(5)


def test_slow_heads_and_stalled_bodies_are_timed_out_with_json(db_url, tmp_path):
    with served(db_url, tmp_path, PROXY_HEADER_TIMEOUT_SECONDS="2",
                PROXY_BODY_TIMEOUT_SECONDS="2") as base:
        answer = raw_exchange(base, b"GET /health HTTP/1.1\r\nHost: x\r\n")
        assert "not received within 2 s" in json_error(answer, 408)["error"]
        # A second request pipelined behind a first one, and left unfinished, is timed
        # out the same way (the first is answered).
        health = b"GET /health HTTP/1.1\r\nHost: x\r\n"
        answer = raw_exchange(base, health + b"\r\n" + health)
        first, _, rest = answer.partition(b"HTTP/1.1 408 ")
        assert first.startswith(b"HTTP/1.1 200 ") and b'"status":"ok"' in first, answer
        assert b"not received within 2 s" in rest
        answer = raw_exchange(base, health + b"\r\n" + health + b"Connection: close\r\n\r\n")
        assert answer.count(b"HTTP/1.1 200 ") == 2, answer

        answer = raw_exchange(base, b"POST /api/ingest HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Type: application/json\r\nContent-Length: 100\r\n"
                                    b'\r\n{"metrics"')
        assert "request body not received in time" in json_error(answer, 408)["error"]
        assert requests.get(base + "/health", timeout=DEADLINE).status_code == 200


def test_a_worker_with_every_thread_busy_leaves_new_connections_to_the_others(db_url, tmp_path):
    # 2 workers x 1 thread; a request whose body stalls holds one worker's only thread
    # for up to 120 s. Every new connection meanwhile must reach the other worker: a
    # worker that accepted it while busy would leave it waiting behind the stall.
    with served(db_url, tmp_path, workers=2, threads=1, PROXY_BODY_TIMEOUT_SECONDS="120") as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as stalled:
            stalled.sendall(b"POST /api/ingest HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Type: application/json\r\nContent-Length: 100\r\n"
                            b'\r\n{"metrics"')
            time.sleep(1)  # the stalled request reaches its thread first
            for _ in range(10):
                with requests.Session() as fresh:
                    r = fresh.get(base + "/health", timeout=DEADLINE)
                assert r.json() == {"status": "ok"}
            stalled.settimeout(0)
            with contextlib.suppress(BlockingIOError):
                assert stalled.recv(1) != b"", "the stalled request was ended early"
                raise AssertionError("the stalled request was answered early")


def test_serving_layer_errors_are_json_and_a_long_selector_fits(db_url, tmp_path):
    with served(db_url, tmp_path, PROXY_MAX_BODY_BYTES="100000") as base:
        # A selector of the documented 4,096 characters, every one of them outside
        # ASCII: 48 KB once percent-encoded, past gunicorn's 8 KiB line cap.
        selector = 'm{a="' + "\U0001F600" * 4086 + '"}'
        assert len(selector) <= 4096
        r = requests.get(base + "/api/query", params={"query": selector}, timeout=DEADLINE)
        assert r.status_code == 200, r.text[:300]
        assert len(r.request.url) > 40_000

        too_long = raw_exchange(base, b"GET /api/query?query=" + quote("a" * 70_000).encode()
                                + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert json_error(too_long, 414)["limit_bytes"] == 64 * 1024
        bad_version = raw_exchange(base, b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n")
        assert "HTTP Version" in json_error(bad_version, 400)["error"]
        bad_header = raw_exchange(base, b"GET /health HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n")
        json_error(bad_header, 400)

        def chunks() -> Iterator[bytes]:
            yield b'{"metrics": ['
            for _ in range(20):
                yield b" " * 10_000

        r = requests.post(base + "/api/ingest", data=chunks(), timeout=DEADLINE,
                          headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert r.json()["limit_bytes"] == 100_000


def test_a_head_is_complete_only_after_a_request_line_and_a_blank_line():
    from proxy.serving import _head_end

    assert _head_end(b"GET / HTTP/1.1\r\nHost: x\r\n") is None
    assert _head_end(b"\r\n\r\n") is None  # blank lines before a request line: not a head
    assert _head_end(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nbody") == 25
    assert _head_end(b"GET / HTTP/1.1\n\n") == 14
