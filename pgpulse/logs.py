"""Logging for every pgpulse process: JSON lines on stdout, optionally also to Loki.

Lines to Loki go through a bounded in-memory queue drained by one background
thread, with a short HTTP timeout: a slow or dead Loki costs log lines (counted in
``LokiShipper.dropped`` and ``.failed``), never the caller's time.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
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
        return orjson.dumps(doc, default=str).decode()


class _TimeoutSession(requests.Session):
    timeout = 2.0

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        return super().request(*args, **kwargs)


class _BoundedQueueHandler(logging.handlers.QueueHandler):
    def __init__(self, q: queue.Queue, shipper: LokiShipper) -> None:
        super().__init__(q)
        self.shipper = shipper

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.shipper.dropped += 1


class LokiShipper:
    """Pushes log records to Loki from a background thread; never blocks emitters."""

    def __init__(self, url: str, service: str, *, capacity: int = 10_000, timeout: float = 2.0) -> None:
        import logging_loki  # imported late: only needed when LOKI_URL is set

        self.dropped = 0
        self.failed = 0
        shipper = self

        class _Handler(logging_loki.LokiHandler):
            def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802
                # A Loki outage must not spray tracebacks on stderr for every line.
                shipper.failed += 1

        self.loki = _Handler(
            url=url.rstrip("/") + "/loki/api/v1/push", tags={"service": service}, version="1"
        )
        self.loki.emitter.session_class = type("S", (_TimeoutSession,), {"timeout": timeout})
        self.loki.setFormatter(JsonFormatter(service))
        self.queue: queue.Queue = queue.Queue(maxsize=capacity)
        self.handler = _BoundedQueueHandler(self.queue, self)
        self.listener = logging.handlers.QueueListener(self.queue, self.loki)

    def start(self) -> None:
        self.listener.start()

    def stop(self) -> None:
        self.listener.stop()


def setup_logging(service: str, level: str = "info", fmt: str = "json", loki_url: str | None = None) -> LokiShipper | None:
    """Configure the root logger; returns the Loki shipper when ``loki_url`` is set."""
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
