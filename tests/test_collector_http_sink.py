"""The http sink against a small local HTTP server standing in for the proxy's
``POST /api/ingest/snapshots`` (a network edge): request shape and key, retry on
429/503 and connection errors, no retry of 400/413, and the check at start.

The stand-in answers from a script of statuses; the real proxy endpoint is
exercised by the proxy's own tests.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fake_host import FakeHost
from polling import wait_for

from collector.agent import Agent
from collector.sinks import SinkRejected, SinkUnavailable
from collector.sinks.http import HttpSink, endpoint, retry_after
from collector.snapshot import Sampler
from collector.spool import Spool
from pgpulse.config import SettingsError

KEY = "pgp_test_secret_key_123"


class Ingest:
    """A stand-in proxy: records requests, answers from ``script`` then ``default``."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[int] = []
        self.default = 201
        self.reject_host: str | None = None
        self.headers: dict[str, str] = {}
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ingest.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = ingest.script.pop(0) if ingest.script else ingest.default
                hosts = {s["host"] for s in body["snapshots"]}
                if ingest.reject_host in hosts:
                    status = 400
                reply = {"accepted": len(body["snapshots"])} if status < 300 else {"error": f"status {status}"}
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in ingest.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def times(self) -> list[str]:
        return [s["time"] for r in self.requests for s in r["body"]["snapshots"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ingest():
    server = Ingest()
    yield server
    server.close()


def entries(spool: Spool, n: int, host: str = "h1") -> None:
    for i in range(n):
        spool.append(host, f"2026-01-01T00:00:{i:02d}+00:00", json.dumps({"schema": 1, "n": i}).encode())


def agent_for(tmp_path, sink, **kw) -> Agent:
    host = FakeHost(tmp_path / "host").write()
    spool = Spool(tmp_path / "spool", 1000)
    return Agent(Sampler(host.source(), top_n=0), spool, sink, host="h1", interval=kw.pop("interval", 10), **kw)


def test_request_shape_and_key(ingest, tmp_path):
    sink = HttpSink(ingest.url, KEY)
    agent = agent_for(tmp_path, sink)
    entries(agent.spool, 2)
    assert agent.drain() is True
    [req] = ingest.requests
    assert req["path"] == "/api/ingest/snapshots"
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["body"] == {"snapshots": [
        {"host": "h1", "time": "2026-01-01T00:00:00+00:00", "data": {"schema": 1, "n": 0}},
        {"host": "h1", "time": "2026-01-01T00:00:01+00:00", "data": {"schema": 1, "n": 1}},
    ]}
    assert len(agent.spool) == 0
    agent.spool.close()


def test_503_keeps_the_batch_and_it_is_sent_again(ingest, tmp_path):
    ingest.script = [503]
    agent = agent_for(tmp_path, HttpSink(ingest.url, KEY))
    entries(agent.spool, 1)
    assert agent.drain() is False  # not now
    assert len(agent.spool) == 1
    assert agent.drain() is True  # the same snapshot, again
    assert ingest.times() == ["2026-01-01T00:00:00+00:00"] * 2
    assert len(agent.spool) == 0 and agent.spool.rejected == 0
    agent.spool.close()


def test_400_is_not_retried(ingest, tmp_path, caplog):
    ingest.default = 400
    agent = agent_for(tmp_path, HttpSink(ingest.url, KEY))
    entries(agent.spool, 1)
    assert agent.drain() is True
    assert agent.drain() is True
    assert len(ingest.requests) == 1  # sent once, never again
    assert len(agent.spool) == 0 and agent.spool.rejected == 1
    assert "refused by the sink" in caplog.text and "status 400" in caplog.text
    assert KEY not in caplog.text
    agent.spool.close()


def test_413_is_not_retried_as_it_is(ingest):
    ingest.default = 413
    with pytest.raises(SinkRejected, match="HTTP 413.*status 413"):
        HttpSink(ingest.url, KEY).write([_entry()])
    assert len(ingest.requests) == 1


def test_bad_snapshot_is_isolated_from_its_batch(ingest, tmp_path):
    # A batch refused for good is split until only the snapshot at fault is dropped.
    ingest.reject_host = "bad"
    agent = agent_for(tmp_path, HttpSink(ingest.url, KEY))
    entries(agent.spool, 3, host="h1")
    agent.spool.append("bad", "2026-01-01T00:00:09+00:00", b"{}")
    assert agent.drain() is True
    delivered = [s["host"] + s["time"][-11:-6] for r in ingest.requests if "bad" not in {x["host"] for x in r["body"]["snapshots"]}
                 for s in r["body"]["snapshots"]]
    assert sorted(delivered) == ["h100:00", "h100:01", "h100:02"]
    assert agent.spool.rejected == 1 and len(agent.spool) == 0
    agent.spool.close()


def test_429_retry_after_and_auth_errors(ingest):
    ingest.script = [429]
    ingest.headers = {"Retry-After": "7"}
    with pytest.raises(SinkUnavailable) as info:
        HttpSink(ingest.url, KEY).write([_entry()])
    assert info.value.retry_after == 7.0 and not info.value.misconfigured
    ingest.headers = {}
    ingest.script = [401]
    with pytest.raises(SinkUnavailable) as info:
        HttpSink(ingest.url, "wrong").write([_entry()])
    assert info.value.misconfigured  # logged as an error; snapshots wait in the spool
    ingest.script = [307]
    ingest.headers = {"Location": "/elsewhere"}
    with pytest.raises(SinkUnavailable):
        HttpSink(ingest.url, KEY).write([_entry()])
    assert [r["path"] for r in ingest.requests] == ["/api/ingest/snapshots"] * 3  # redirect not followed


def test_connection_refused_is_retryable():
    port = _free_port()
    with pytest.raises(SinkUnavailable):
        HttpSink(f"http://127.0.0.1:{port}", KEY).write([_entry()])


def test_agent_retries_through_503s_by_itself(ingest, tmp_path):
    ingest.script = [503, 503, 503]
    agent = agent_for(tmp_path, HttpSink(ingest.url, KEY), interval=0.2, retry_max_s=0.2)
    agent.start()
    wait_for(lambda: agent.ticks >= 4 and len(ingest.requests) >= 5, 60,
             "four ticks and the three refused pushes retried", interval=0.05)
    agent.stop()
    assert ingest.script == []  # all three 503s were answered
    assert agent.ticks >= 4 and len(agent.spool) == 0
    delivered = {s["time"] for r in ingest.requests[3:] for s in r["body"]["snapshots"]}
    first_refused = ingest.requests[0]["body"]["snapshots"][0]["time"]
    assert first_refused in delivered
    assert len(delivered) == agent.ticks


def test_check_at_start(ingest):
    HttpSink(ingest.url, KEY).check()
    with pytest.raises(SettingsError, match="COLLECTOR_HTTP_URL=.*cannot connect"):
        HttpSink(f"http://127.0.0.1:{_free_port()}", KEY).check()


def test_endpoint_and_retry_after_parsing():
    assert endpoint("http://proxy:8085") == "http://proxy:8085/api/ingest/snapshots"
    assert endpoint("http://proxy:8085/") == "http://proxy:8085/api/ingest/snapshots"
    assert endpoint("http://p/api/ingest/snapshots") == "http://p/api/ingest/snapshots"
    assert retry_after("12") == 12.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def _entry():
    from collector.spool import Entry

    return Entry(1, "h1", "2026-01-01T00:00:00+00:00", b'{"schema": 1}')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
