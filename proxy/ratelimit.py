"""Rate limits of the proxy, counted by the ``limits`` library (fixed windows).

Four kinds of limit, each a setting (``proxy.settings``, PROXY_RATELIMIT_*):

* ingest, in samples, per API key and per client address: every ingest view calls
  :func:`charge_samples` with the number of samples (or snapshots) of its batch,
  after parsing and before writing;
* queries, in requests, per API key and per client address: every view of the
  ``query`` scope is charged one request by ``proxy.auth.require_scope``;
* failed authentications (a wrong or revoked key, malformed credentials) per client
  address: past the limit every authentication from that address is refused until
  the window ends, so keys cannot be guessed at the speed of the proxy.

A refusal is a 429 with ``Retry-After`` and the ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` headers, built by
``proxy.errors.rate_limited``.

The counters live in Redis when REDIS_URL is set, so every gunicorn worker and every
proxy process of an installation shares them; otherwise in the memory of each
process (enough for the embedded proxy of ``pgpulse up``; with N workers a client may
then get up to N times a limit). When Redis stops answering, the process counts in
its own memory until Redis is back (checked at most every
:data:`REDIS_RETRY_SECONDS`), as Flask-Limiter's in-memory fallback does: limits
keep holding per process, and requests are neither refused nor let through
unchecked because a counter store is away.

The client address is the TCP peer of the request (``request.remote_addr``); behind
a reverse proxy every client has the reverse proxy's address.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence

from flask import g, request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from proxy import metrics
from proxy.errors import ApiError, rate_limited
from proxy.settings import ProxySettings
from proxy.state import state

log = logging.getLogger("proxy.ratelimit")

REDIS_RETRY_SECONDS = 10.0
REDIS_TIMEOUT_SECONDS = 0.5


class LockedMemoryStorage(MemoryStorage):
    """limits' in-memory storage with its increments taken one at a time.

    ``MemoryStorage.incr`` restarts its expiry timer without a lock: two threads of a
    gthread worker charging at once can both find the timer stopped and start the
    same new timer twice, a RuntimeError ("threads can only be started once") that
    turns the request into a 500 (fixed upstream in limits' pull request 352, not in
    the release installed here). One lock per process: an increment is a few
    microseconds, far below a request.
    """

    def __init__(self) -> None:
        super().__init__()
        self._incr_lock = threading.Lock()

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        with self._incr_lock:
            return super().incr(key, expiry, amount)


def _items(rate: str | None) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(rate)) if rate else ()


class RateLimits:
    """The limits of one proxy process and the storage that counts them."""

    def __init__(self, settings: ProxySettings) -> None:
        self.enabled = settings.ratelimit
        self.namespace = settings.ratelimit_namespace
        self.ingest_key = _items(settings.ratelimit_ingest_key)
        self.ingest_address = _items(settings.ratelimit_ingest_address)
        self.query_key = _items(settings.ratelimit_query_key)
        self.query_address = _items(settings.ratelimit_query_address)
        self.auth_failures = _items(settings.ratelimit_auth_failures)
        self.shared = settings.redis_url is not None
        self._memory = FixedWindowRateLimiter(LockedMemoryStorage())
        self._primary: FixedWindowRateLimiter | None = None
        if self.enabled and settings.redis_url:
            # wrap_exceptions: any failure of the client surfaces as limits' StorageError;
            # short timeouts: a Redis that hangs costs a request at most about a second.
            storage: Storage = storage_from_string(
                settings.redis_url, wrap_exceptions=True,
                socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
            self._primary = FixedWindowRateLimiter(storage)
        self._down_until = 0.0
        self._lock = threading.Lock()

    @property
    def storage_name(self) -> str:
        return "redis" if self._primary is not None else "memory"

    def _limiter(self) -> FixedWindowRateLimiter:
        if self._primary is None or time.monotonic() < self._down_until:
            return self._memory
        return self._primary

    def _storage_failed(self, exc: StorageError) -> None:
        with self._lock:
            first = time.monotonic() >= self._down_until
            self._down_until = time.monotonic() + REDIS_RETRY_SECONDS
        metrics.RATELIMIT_STORAGE_ERRORS.inc()
        if first:
            log.warning("rate-limit storage unavailable, counting in this process's memory "
                        "for %.0f s: %s", REDIS_RETRY_SECONDS, exc.storage_error)

    def hit(self, item: RateLimitItem, ident: Sequence[str], cost: int) -> bool:
        """Charge ``cost`` to the window of ``item`` for ``ident``; False when over."""
        limiter = self._limiter()
        try:
            return limiter.hit(item, self.namespace, *ident, cost=cost)
        except StorageError as exc:
            self._storage_failed(exc)
            return self._memory.hit(item, self.namespace, *ident, cost=cost)

    def test(self, item: RateLimitItem, ident: Sequence[str]) -> bool:
        """True when one more unit would still be within the window of ``item``."""
        limiter = self._limiter()
        try:
            return limiter.test(item, self.namespace, *ident)
        except StorageError as exc:
            self._storage_failed(exc)
            return self._memory.test(item, self.namespace, *ident)

    def refusal(self, item: RateLimitItem, ident: Sequence[str], kind: str, what: str) -> ApiError:
        """The 429 for a request over ``item``: when its window resets, what remains."""
        limiter = self._limiter()
        try:
            stats = limiter.get_window_stats(item, self.namespace, *ident)
        except StorageError as exc:
            self._storage_failed(exc)
            stats = self._memory.get_window_stats(item, self.namespace, *ident)
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        metrics.RATE_LIMITED.labels(kind).inc()
        return rate_limited(
            f"rate limit exceeded: {what}", limit=item.amount, remaining=max(0, stats.remaining),
            reset_s=reset, rate=str(item), kind=kind,
        )

    def charge(self, kind: str, limits: Sequence[tuple[tuple[RateLimitItem, ...], tuple[str, ...], str]],
               cost: int) -> None:
        """Charge ``cost`` to every limit in ``limits`` (items, identity, description);
        raises the 429 of the first one exceeded."""
        if not self.enabled or cost <= 0:
            return
        for items, _ident, what in limits:
            for item in items:
                if cost > item.amount:
                    # No window could ever take it: a retry would be refused for ever.
                    # Checked before any window is charged.
                    raise ApiError(413, f"{cost} items in one request, more than the rate limit "
                                        f"{item} of {what} allows in one window; send smaller batches",
                                   count=cost, limit=item.amount, rate=str(item), kind=kind)
        for items, ident, what in limits:
            for item in items:
                if not self.hit(item, ident, cost):
                    raise self.refusal(item, ident, kind, what)

    def close(self) -> None:
        """Close the connections to Redis (nothing to do for memory counters)."""
        if self._primary is not None:
            self._primary.storage.storage.connection_pool.disconnect()


# -- what the views and auth call ----------------------------------------------------


def _address() -> str:
    return request.remote_addr or "-"


def _who() -> list[tuple[str, str]]:
    """(label, identity) of the current request: its key (when auth is on) and address."""
    out = []
    key_id = g.get("api_key_id")
    if key_id is not None:
        out.append(("key", str(key_id)))
    out.append(("address", _address()))
    return out


def charge_samples(n: int) -> None:
    """Charge ``n`` samples of the current ingest request to its key and its address;
    raises the 429 (or 413 for a batch no window could take). Every ingest view calls
    it once per request, after parsing and before writing."""
    rl = state().ratelimit
    if not rl.enabled:
        return
    limits = []
    for label, ident in _who():
        items = rl.ingest_key if label == "key" else rl.ingest_address
        limits.append((items, ("ingest", label, ident), f"samples per {label}"))
    rl.charge("ingest", limits, n)


def charge_query() -> None:
    """Charge one query request to the current request's key and address."""
    rl = state().ratelimit
    if not rl.enabled:
        return
    limits = []
    for label, ident in _who():
        items = rl.query_key if label == "key" else rl.query_address
        limits.append((items, ("query", label, ident), f"query requests per {label}"))
    rl.charge("query", limits, 1)


def check_auth_failures() -> None:
    """Before a key is looked up: refuse when the address has used up its failures."""
    rl = state().ratelimit
    if not rl.enabled:
        return
    ident = ("auth-failures", _address())
    for item in rl.auth_failures:
        if not rl.test(item, ident):
            raise rl.refusal(item, ident, "auth", "failed authentications per address")


def auth_failed() -> None:
    """Count one failed authentication (a wrong key, malformed credentials) of the
    current request's address."""
    rl = state().ratelimit
    if not rl.enabled:
        return
    ident = ("auth-failures", _address())
    for item in rl.auth_failures:
        rl.hit(item, ident, 1)
