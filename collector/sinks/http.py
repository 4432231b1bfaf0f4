"""The http sink: pushes batches to the proxy's ingest API, for hosts that must not
hold database credentials.

Contract (the proxy's ``POST /api/ingest/snapshots``): a JSON body
``{"snapshots": [{"host", "time" (RFC 3339), "data": {...}}, ...]}`` with
``Authorization: Bearer <key>``; 200/201 answer ``{"accepted": n}``; errors are
JSON ``{"error": ...}``. 400 and 413 are never retried as they are (the agent
splits the batch to isolate what is at fault); 429, 5xx and connection errors are
retried later, honouring Retry-After. Other statuses (401, 403, 404, a redirect)
mean a wrong key or URL: logged as errors, and the snapshots wait in the spool.

The proxy stores snapshots idempotently on (host, time), like the postgres sink.
"""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import NoReturn
from urllib.parse import urlsplit

import orjson

from collector.sinks import SinkRejected, SinkUnavailable
from collector.spool import Entry
from pgpulse import __version__, db
from pgpulse.config import SettingsError

PATH = "/api/ingest/snapshots"
PERMANENT = (400, 413)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET without its body.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def endpoint(url: str) -> str:
    """The ingest endpoint for a proxy base URL (an URL already ending in it is kept)."""
    base = url.rstrip("/")
    return base if base.endswith(PATH) else base + PATH


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_text(body: bytes) -> str:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace").strip()
    if isinstance(doc, dict) and "error" in doc:
        return str(doc["error"])
    return str(doc)[:200]


class HttpSink:
    name = "http"

    def __init__(self, url: str, api_key: str | None, *, timeout: float = 10.0) -> None:
        self.url = endpoint(url)
        self._api_key = api_key
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    def describe(self) -> str:
        return f"http {db.redact(self.url)}"

    def check(self) -> None:
        """The proxy must answer on its address at start (a TCP connection)."""
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=5).close()
        except OSError as exc:
            raise SettingsError(
                f"COLLECTOR_HTTP_URL={db.redact(self.url)!r}: cannot connect to "
                f"{parts.hostname}:{port} ({exc.strerror or exc})"
            ) from None

    def write(self, batch: Sequence[Entry]) -> int:
        if not batch:
            return 0
        body = orjson.dumps(
            {
                "snapshots": [
                    # The spooled document is JSON already: embedded as it is.
                    {"host": e.host, "time": e.time, "data": orjson.Fragment(e.data)}
                    for e in batch
                ]
            }
        )
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"pgpulse-collector/{__version__}",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            try:
                payload = exc.read()
            except (OSError, http.client.HTTPException):
                payload = b""  # the status alone decides what happens next
            status = exc.code
            hint = retry_after(exc.headers.get("Retry-After")) if exc.headers else None
            self._refused(status, payload, hint)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise SinkUnavailable(f"{self.describe()}: {reason}") from exc
        if status not in (200, 201):
            self._refused(status, payload, None)
        try:
            accepted = orjson.loads(payload).get("accepted")
        except (orjson.JSONDecodeError, AttributeError):
            accepted = None
        return accepted if isinstance(accepted, int) else len(batch)

    def _refused(self, status: int, payload: bytes, hint: float | None) -> NoReturn:
        text = f"HTTP {status} from {self.describe()}: {_error_text(payload)}"
        if status in PERMANENT:
            raise SinkRejected(text)
        if status == 429 or status >= 500:
            raise SinkUnavailable(text, retry_after=hint)
        raise SinkUnavailable(text, retry_after=hint, misconfigured=True)

    def close(self) -> None:
        return None
