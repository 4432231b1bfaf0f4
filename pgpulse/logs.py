"""Logging for every pgpulse process: JSON lines on stdout (readable text on a
terminal, LOG_FORMAT), optionally also to Loki.

Lines to Loki go through a bounded in-memory queue drained by one background
thread, with a short HTTP timeout: a slow or dead Loki costs log lines (counted in
``LokiShipper.dropped`` and ``.failed``), never the caller's time, and never holds
up shutdown for longer than ``LokiShipper.stop``'s timeout.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
from datetime import UTC, datetime

import orjson
import requests

# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service and extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        # stdout and the Loki queue both want the line: render it once per record.
        cached = record.__dict__.get("_pgpulse_line")
        if cached is not None and cached[0] is self.service:
            return cached[1]
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "service": self.service,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        line = orjson.dumps(doc, default=str).decode()
        record._pgpulse_line = (self.service, line)
        return line


class _TimeoutSession(requests.Session):
    timeout = 2.0

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        return super().request(*args, **kwargs)


class _BoundedQueueHandler(logging.handlers.QueueHandler):
    """Renders the JSON line in the caller's thread and queues it without waiting."""

    def __init__(self, shipper: LokiShipper, service: str) -> None:
        super().__init__(shipper.queue)
        self.shipper = shipper
        self.setFormatter(JsonFormatter(service))

    def emit(self, record: logging.LogRecord) -> None:
        # Lines logged while shipping (urllib3, requests) would feed back into the
        # queue forever; they are only on stdout.
        if record.thread == self.shipper.worker_ident:
            return
        # A full queue drops the line before paying for its rendering.
        if self.shipper.queue.full():
            self.shipper.count_dropped()
            return
        super().emit(record)

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.shipper.queue.put_nowait(record)
        except queue.Full:
            self.shipper.count_dropped()


class LokiShipper:
    """Pushes log records to Loki from a background thread; never blocks emitters.

    * The caller renders the JSON line and puts it in a bounded queue without
      waiting; a full queue drops the line and counts it in ``dropped``.
    * One worker thread takes what is queued, up to ``batch`` lines, and pushes it
      in one request with python-logging-loki's emitter (its labels and HTTP
      session), under an HTTP timeout; lines whose push failed are counted in
      ``failed``, those pushed in ``sent``.
    * Labels are ``service`` and ``level`` only (the same as Promtail's), so the
      number of streams stays small; the logger and everything else are in the line.
    * ``stop(timeout)`` flushes what it can within ``timeout`` seconds and drops the
      rest, so a dead Loki never holds up shutdown.
    * A forked child (gunicorn workers) gets its own queue and worker thread.
    """

    def __init__(self, url: str, service: str, *, capacity: int = 10_000, timeout: float = 2.0,
                 batch: int = 500) -> None:
        import logging_loki  # imported late: only needed when LOKI_URL is set

        self.capacity = capacity
        self.batch = batch
        self.timeout = timeout
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.worker_ident: int | None = None
        self._count_lock = threading.Lock()

        class _Emitter(logging_loki.emitter.LokiEmitterV1):
            session_class = type("S", (_TimeoutSession,), {"timeout": timeout})

            def build_tags(self, record: logging.LogRecord) -> dict:
                return {**self.tags, "level": record.levelname.lower()}

            def build_batch(self, records: list[logging.LogRecord]) -> dict:
                """One push for many lines: a stream per label set, each line at the
                time it was logged (not the time it was shipped)."""
                streams: dict[tuple, dict] = {}
                for record in records:
                    tags = self.build_tags(record)
                    stream = streams.setdefault(tuple(sorted(tags.items())), {"stream": tags, "values": []})
                    stream["values"].append([str(int(record.created * 1e9)), record.getMessage()])
                return {"streams": list(streams.values())}

            def push(self, records: list[logging.LogRecord]) -> None:
                resp = self.session.post(self.url, data=orjson.dumps(self.build_batch(records)),
                                         headers={"Content-Type": "application/json"})
                if resp.status_code != self.success_response_code:
                    raise ValueError(f"Loki answered {resp.status_code}")

        self.emitter = _Emitter(url.rstrip("/") + "/loki/api/v1/push", {"service": service})
        self.queue: queue.Queue = queue.Queue(maxsize=capacity)
        self.handler = _BoundedQueueHandler(self, service)
        self._stopping = threading.Event()
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._after_fork)

    def count_dropped(self, n: int = 1) -> None:
        with self._count_lock:
            self.dropped += n

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="loki-shipper", daemon=True)
        self._thread.start()

    def _take(self) -> list[logging.LogRecord]:
        """The next batch: waits briefly for one line, then takes what else is queued."""
        try:
            records = [self.queue.get(timeout=0.1)]
        except queue.Empty:
            return []
        while len(records) < self.batch:
            try:
                records.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return records

    def _run(self) -> None:
        self.worker_ident = threading.get_ident()
        while True:
            records = self._take()
            if not records:
                if self._stopping.is_set():
                    return
                continue
            if self._deadline is not None and time.monotonic() > self._deadline:
                self.count_dropped(len(records))  # out of time while stopping
                continue
            try:
                self.emitter.push(records)
            except (requests.RequestException, ValueError, OSError):
                # A Loki outage costs these lines, not tracebacks on stderr.
                self.emitter.close()
                with self._count_lock:
                    self.failed += len(records)
            else:
                with self._count_lock:
                    self.sent += len(records)

    def stop(self, timeout: float = 5.0) -> None:
        """Ship what is queued for at most ``timeout`` seconds, then drop the rest."""
        thread = self._thread
        if thread is None:
            return
        self._deadline = time.monotonic() + timeout
        self._stopping.set()
        # One push in flight may take the HTTP timeout beyond the deadline.
        thread.join(timeout + self.timeout + 1.0)
        self._thread = None
        self.emitter.close()

    def _after_fork(self) -> None:
        # The worker thread did not survive the fork and the queue's lock may have
        # been held by it: the child starts over with its own queue, thread and HTTP
        # session (logging itself re-creates the handlers' locks after a fork).
        running = self._thread is not None and not self._stopping.is_set()
        self._count_lock = threading.Lock()
        self.queue = queue.Queue(maxsize=self.capacity)
        self.handler.queue = self.queue
        self._stopping = threading.Event()
        self._deadline = None
        self._thread = None
        self.emitter._session = None
        if running:
            self.start()


def resolve_format(fmt: str, stream=None) -> str:
    """``json`` or ``text``: ``auto`` is text for a person at a terminal and JSON for
    everything else (Docker, systemd, a pipe to Promtail)."""
    if fmt != "auto":
        return fmt
    stream = sys.stdout if stream is None else stream
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # closed or replaced stdout
        return "json"


def setup_logging(service: str, level: str = "info", fmt: str = "auto", loki_url: str | None = None) -> LokiShipper | None:
    """Configure the root logger; returns the Loki shipper when ``loki_url`` is set.
    ``fmt``: json, text, or auto (see :func:`resolve_format`)."""
    fmt = resolve_format(fmt)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level.upper())
    stdout = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        stdout.setFormatter(JsonFormatter(service))
    else:
        stdout.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(stdout)
    # Third-party chatter that drowns pgpulse's own lines at info level.
    for noisy in ("apscheduler", "werkzeug", "urllib3", "alembic.runtime.migration", "pgserver"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
    if not loki_url:
        return None
    shipper = LokiShipper(loki_url, service)
    root.addHandler(shipper.handler)
    shipper.start()
    return shipper
