"""Sending the load generator's requests over HTTP, from a pool of threads.

The schedule hands each request over when it is due and does not wait for the
answer; at most ``concurrency`` requests are in flight, and one due while all are
busy is counted as skipped (the generator cannot keep the rate) rather than queued.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from pgpulse.loadgen.payloads import Payload
from pgpulse.loadgen.schedule import Request, Tally


class HttpSender:
    """Sends :class:`Request` (to an app) or :class:`Payload` (to an ingest endpoint)."""

    def __init__(self, base_url: str, tally: Tally, *, concurrency: int = 16, timeout: float = 30.0,
                 path: str = "", params: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.tally = tally
        self.timeout = timeout
        self.path = path  # where payloads go
        self.params = params or {}
        self._slots = threading.BoundedSemaphore(concurrency)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="loadgen")
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def __call__(self, item: Request | Payload) -> None:
        if not self._slots.acquire(blocking=False):
            self.tally.record_skipped()
            return
        if isinstance(item, Payload):
            self.tally.record_sent(self.path, item.samples)
        else:
            self.tally.record_sent(item.endpoint)
        self._pool.submit(self._send, item)

    def _send(self, item: Request | Payload) -> None:
        samples = item.samples if isinstance(item, Payload) else 0
        started = time.monotonic()
        try:
            if isinstance(item, Payload):
                r = self._session().post(self.base_url + self.path, data=item.body, headers=item.headers,
                                         params=self.params, timeout=self.timeout)
            else:
                r = self._session().request(item.method, self.base_url + item.path, json=item.body,
                                            timeout=self.timeout)
            failure = None
            if isinstance(item, Payload) and r.status_code >= 300:
                failure = f"{r.status_code}: {r.text[:200]}"
            self.tally.record_answer(r.status_code, time.monotonic() - started, samples, failure)
        except requests.RequestException as exc:
            # No answer: recorded as status 0 with the reason, and the run goes on.
            self.tally.record_answer(0, time.monotonic() - started, samples, type(exc).__name__)
        finally:
            self._slots.release()

    def close(self, wait: bool = True) -> None:
        """Wait for the requests in flight (``wait``), then stop the threads."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
