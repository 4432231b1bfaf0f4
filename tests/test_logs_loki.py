"""pgpulse's own logs to Loki (pgpulse.logs.LokiShipper, python-logging-loki behind a
bounded queue).

Stand-in: Loki cannot run on these machines, so a local HTTP receiver (``Receiver``
below, on 127.0.0.1) plays Loki's push endpoint ``POST /loki/api/v1/push``: it
records every payload, answers 204 like Loki, and can be made slow. The full stack
(``make up``) ships to the real Loki.

Latency is asserted on structure, not on the clock: with a receiver that holds each
request for 2 s, 1,000 log calls must all return before the first request has been
answered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pgpulse.logs import LokiShipper, setup_logging

PUSH_PATH = "/loki/api/v1/push"


class Receiver:
    """A stand-in for Loki's push API that records payloads; ``delay`` seconds per
    request (cut short by ``release()``)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.payloads: list[dict] = []
        self.paths: list[str] = []
        self.started = 0
        self.finished = 0
        self._released = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                with receiver._lock:
                    receiver.started += 1
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.delay:
                    receiver._released.wait(receiver.delay)
                with receiver._lock:
                    receiver.paths.append(self.path)
                    receiver.payloads.append(json.loads(body))
                    receiver.finished += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def release(self) -> None:
        self._released.set()

    def __exit__(self, *exc) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def lines(self) -> list[tuple[dict, str, str]]:
        """(labels, timestamp, line) of every value received."""
        return [
            (stream["stream"], ts, line)
            for payload in self.payloads
            for stream in payload["streams"]
            for ts, line in stream["values"]
        ]


@contextlib.contextmanager
def shipping(url: str, **kwargs) -> Iterator[tuple[LokiShipper, logging.Logger]]:
    """A started shipper and a logger that feeds only it."""
    shipper = LokiShipper(url, "proxy", **kwargs)
    logger = logging.getLogger(f"pgpulse.test_loki.{id(shipper)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(shipper.handler)
    shipper.start()
    try:
        yield shipper, logger
    finally:
        logger.removeHandler(shipper.handler)
        shipper.stop(timeout=1.0)


@contextlib.contextmanager
def hung_server() -> Iterator[str]:
    """A 'dead' Loki that accepts connections (kernel backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def test_push_payload_has_streams_labels_and_json_lines():
    with Receiver() as loki:
        with shipping(loki.url) as (shipper, log):
            log.info("ingested %d samples", 42, extra={"batch": "b-1"})
            log.warning("slow query")
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                log.exception("failed")
        assert shipper.sent == 3 and shipper.failed == 0 and shipper.dropped == 0
    assert set(loki.paths) == {PUSH_PATH}
    values = loki.lines()
    assert [labels for labels, _, _ in values] == [
        {"service": "proxy", "level": "info"},
        {"service": "proxy", "level": "warning"},
        {"service": "proxy", "level": "error"},
    ]
    for payload in loki.payloads:
        assert set(payload) == {"streams"}
        for stream in payload["streams"]:
            assert set(stream) == {"stream", "values"}
            for value in stream["values"]:
                assert isinstance(value, list) and len(value) == 2
    first = json.loads(values[0][2])
    assert {k: first[k] for k in ("level", "service", "message", "batch")} == {
        "level": "info", "service": "proxy", "message": "ingested 42 samples", "batch": "b-1"}
    assert first["logger"].startswith("pgpulse.test_loki") and first["time"].endswith("+00:00")
    assert "RuntimeError: boom" in json.loads(values[2][2])["exception"]
    # Timestamps are nanoseconds since the epoch, taken when the line was logged.
    stamps = [int(ts) for _, ts, _ in values]
    assert stamps == sorted(stamps) and all(len(str(s)) == 19 for s in stamps)


def test_lines_are_pushed_in_batches_each_exactly_once():
    with Receiver() as loki:
        with shipping(loki.url, batch=200) as (shipper, log):
            for i in range(1000):
                (log.info if i % 3 else log.warning)("line %d", i)
        assert shipper.sent == 1000 and shipper.dropped == 0 and shipper.failed == 0
    assert len(loki.payloads) < 1000, "one request per line"
    assert max(sum(len(s["values"]) for s in p["streams"]) for p in loki.payloads) <= 200
    got = [json.loads(line)["message"] for _, _, line in loki.lines()]
    assert sorted(got, key=lambda m: int(m.split()[1])) == [f"line {i}" for i in range(1000)]
    for labels, _, line in loki.lines():
        assert labels["level"] == json.loads(line)["level"]
    for payload in loki.payloads:  # one stream per label set in a push
        keys = [tuple(sorted(s["stream"].items())) for s in payload["streams"]]
        assert len(keys) == len(set(keys))


def test_slow_receiver_costs_the_caller_nothing():
    with Receiver(delay=2.0) as loki:
        with shipping(loki.url, capacity=10_000, timeout=5.0) as (shipper, log):
            for i in range(1000):
                log.info("line %d", i)
            # Every call has returned, and Loki has not answered the first push yet.
            assert loki.finished == 0
            assert shipper.dropped == 0
            loki.release()
    assert loki.finished >= 1


def test_full_queue_drops_lines_and_counts_them():
    with Receiver(delay=2.0) as loki:
        shipper = LokiShipper(loki.url, "collector", capacity=10, timeout=5.0, batch=1)
        log = logging.getLogger("pgpulse.test_loki.full")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(shipper.handler)
        shipper.start()
        try:
            for i in range(1000):
                log.info("line %d", i)
            in_flight = 1000 - shipper.dropped - shipper.queue.qsize()
            assert loki.finished == 0
            assert shipper.queue.qsize() == 10
            assert in_flight in (0, 1), "the worker holds at most the line it is pushing"
            assert shipper.dropped in (989, 990)
            loki.release()
        finally:
            log.removeHandler(shipper.handler)
            shipper.stop(timeout=60.0)
    assert shipper.sent + shipper.failed + shipper.dropped == 1000
    assert shipper.sent == 1000 - shipper.dropped


def test_hung_receiver_neither_blocks_logging_nor_shutdown():
    with hung_server() as url:
        shipper = LokiShipper(url, "proxy", capacity=100, timeout=0.5, batch=1)
        log = logging.getLogger("pgpulse.test_loki.hung")
        log.propagate = False
        log.addHandler(shipper.handler)
        shipper.start()
        for i in range(1000):
            log.warning("line %d", i)
        # All 1,000 calls returned while the first push is still waiting for an answer.
        assert shipper.sent == 0 and shipper.failed == 0
        assert shipper.dropped >= 1000 - 100 - 1
        log.removeHandler(shipper.handler)
        shipper.stop(timeout=0.2)
        assert shipper._thread is None
    assert shipper.sent == 0
    assert shipper.failed >= 1
    assert shipper.failed + shipper.dropped == 1000


def test_dead_receiver_counts_failures_without_tracebacks(capsys):
    with shipping(closed_port_url(), timeout=0.5) as (shipper, log):
        for i in range(20):
            log.error("line %d", i)
    assert shipper.sent == 0
    assert shipper.failed + shipper.dropped == 20 and shipper.failed >= 1
    assert "Traceback" not in capsys.readouterr().err


def test_setup_logging_ships_to_loki_and_prints_json(capsys):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        with Receiver() as loki:
            shipper = setup_logging("collector", "info", "json", loki.url)
            assert isinstance(shipper, LokiShipper)
            logging.getLogger("collector.sink").info("spooled %d snapshots", 3)
            logging.getLogger("urllib3.connectionpool").debug("not shipped")
            shipper.stop(timeout=60.0)
        out = capsys.readouterr().out.strip().splitlines()
        printed = json.loads(out[-1])
        assert printed["message"] == "spooled 3 snapshots" and printed["service"] == "collector"
        labels, _, line = loki.lines()[0]
        assert labels == {"service": "collector", "level": "info"}
        assert json.loads(line) == printed, "Loki gets the same line as stdout"
        assert len(loki.lines()) == 1
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_forked_child_ships_its_own_lines():
    """gunicorn forks its workers after logging is set up: a child's lines must still
    reach Loki (the parent's worker thread does not exist in the child)."""
    with Receiver() as loki:
        with shipping(loki.url) as (shipper, log):
            log.info("from the parent")
            pid = os.fork()
            if pid == 0:  # the child: log, flush, and leave without pytest's teardown
                code = 1
                try:
                    log.info("from the child")
                    shipper.stop(timeout=60.0)
                    code = 0 if shipper.sent == 1 else 3
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
    messages = sorted(json.loads(line)["message"] for _, _, line in loki.lines())
    assert messages == ["from the child", "from the parent"]
