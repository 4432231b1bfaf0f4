"""Settings of the proxy (the HTTP API): listening, auth, limits, database pool.

The rate limits (PROXY_RATELIMIT_*) are read by ``proxy.ratelimit``; each is a rate in
the notation of the ``limits`` library ("1000000/second", "20/minute;200/hour") or
``off``.

The series limits (PROXY_MAX_SERIES, PROXY_MAX_SERIES_PER_METRIC, PROXY_MAX_LABELS,
PROXY_MAX_LABEL_VALUE_LENGTH) are core settings (``pgpulse.settings``): every writer
of series obeys them, the ETL as well as ingest.

Declared like every part's settings (see ``pgpulse.config``); documented in
docs/proxy.md and docs/api.md, with defaults in .env.example.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from limits import parse_many

from pgpulse import config
from pgpulse.config import SettingsError, setting

RATE_ACCEPTS = "a rate such as 100/second or 20/minute;200/hour (limits notation), or off"


def as_rate(name: str, raw: str) -> str | None:
    """A rate in the notation of the ``limits`` library, checked now; ``off``: no limit."""
    text = raw.strip()
    if text.lower() in ("off", "none", "0"):
        return None
    try:
        parse_many(text)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected {RATE_ACCEPTS}") from None
    return text


@dataclasses.dataclass(frozen=True)
class ProxySettings:
    port: int = setting(
        "PORT", 8085, "TCP port the proxy listens on.",
        parse=config.as_int(1, 65535), accepts="integer 1..65535",
    )
    host: str = setting(
        "PROXY_HOST", "0.0.0.0",
        "Address `pgpulse proxy` binds to (the embedded proxy of `pgpulse up` always "
        "binds 127.0.0.1).",
        parse=config.as_str, accepts="an IP address or host name",
    )
    auth: bool = setting(
        "PGPULSE_AUTH", True,
        "Require an API key on the API (on), or run open (off: only for a proxy bound "
        "to 127.0.0.1).",
        parse=config.as_bool, accepts="on, off",
    )
    auth_off_beyond_loopback: bool = setting(
        "PGPULSE_AUTH_OFF_BEYOND_LOOPBACK", False,
        "Let `pgpulse proxy` run with PGPULSE_AUTH=off on an address other than "
        "loopback (anyone who reaches it may write and read). Off: such a proxy refuses "
        "to start.",
        parse=config.as_bool, accepts="on, off",
    )
    workers: int = setting(
        "PROXY_WORKERS", 2, "Gunicorn worker processes of `pgpulse proxy`.",
        parse=config.as_int(1, 64), accepts="integer 1..64",
    )
    threads: int = setting(
        "PROXY_THREADS", 4,
        "Threads per gunicorn worker (gthread): concurrent requests per worker, e.g. "
        "long exports beside short queries.",
        parse=config.as_int(1, 256), accepts="integer 1..256",
    )
    header_timeout_s: float = setting(
        "PROXY_HEADER_TIMEOUT_SECONDS", 20.0,
        "Longest a client of `pgpulse proxy` may take to send a request's line and "
        "headers (408 beyond); until they are complete it holds no thread.",
        parse=config.as_float(0, exclusive=True), accepts="number > 0",
    )
    body_timeout_s: float = setting(
        "PROXY_BODY_TIMEOUT_SECONDS", 30.0,
        "Longest `pgpulse proxy` waits for the next bytes of a request body, or for a "
        "client to take the next bytes of an answer (408 or the connection closed beyond).",
        parse=config.as_float(0, exclusive=True), accepts="number > 0",
    )
    pool_size: int = setting(
        "PROXY_DB_POOL_SIZE", 8,
        "Most database connections one proxy process holds.",
        parse=config.as_int(1, 1000), accepts="integer >= 1",
    )
    db_timeout_s: float = setting(
        "PROXY_DB_TIMEOUT_SECONDS", 5.0,
        "Seconds a request waits for a database connection before answering 503.",
        parse=config.as_float(0, exclusive=True), accepts="number > 0",
    )
    statement_timeout_ms: int = setting(
        "PROXY_STATEMENT_TIMEOUT_MS", 30000,
        "Longest a query or discovery statement may run (exports have their own, "
        "PROXY_EXPORT_STATEMENT_TIMEOUT_MS); 0 means no limit.",
        parse=config.as_int(0), accepts="integer >= 0",
    )
    max_body_bytes: int = setting(
        "PROXY_MAX_BODY_BYTES", 16 * 1024 * 1024,
        "Largest request body, before and after gzip decompression (413 beyond).",
        parse=config.as_int(1024), accepts="integer >= 1024",
    )
    max_samples: int = setting(
        "PROXY_MAX_SAMPLES_PER_REQUEST", 50_000,
        "Most samples (or snapshots) one ingest request may carry.",
        parse=config.as_int(1), accepts="integer >= 1",
    )
    max_past_s: int = setting(
        "PROXY_MAX_SAMPLE_AGE_SECONDS", 7 * 86400,
        "Oldest sample timestamp accepted, in seconds before now.",
        parse=config.as_int(0), accepts="integer >= 0",
    )
    max_future_s: int = setting(
        "PROXY_MAX_SAMPLE_FUTURE_SECONDS", 600,
        "Furthest sample timestamp accepted, in seconds after now (clock skew).",
        parse=config.as_int(0), accepts="integer >= 0",
    )
    max_points: int = setting(
        "PROXY_MAX_POINTS", 100_000,
        "Most points one query answer may hold (series x steps); more is a 400.",
        parse=config.as_int(1), accepts="integer >= 1",
    )
    max_points_per_series: int = setting(
        "PROXY_MAX_POINTS_PER_SERIES", 11_000,
        "Most steps in one query range ((end - start) / step); more is a 400.",
        parse=config.as_int(1), accepts="integer >= 1",
    )
    max_range_days: int = setting(
        "PROXY_MAX_RANGE_DAYS", 400,
        "Longest time range of a query or export, in days.",
        parse=config.as_int(1), accepts="integer >= 1",
    )
    max_query_series: int = setting(
        "PROXY_MAX_QUERY_SERIES", 10_000,
        "Most series a selector may match in a query, export or discovery answer.",
        parse=config.as_int(1), accepts="integer >= 1",
    )
    promql_tiers: bool = setting(
        "PROXY_PROMQL_TIERS", True,
        "Answer PromQL from the 5m and 1h tiers where their buckets line up with the query's "
        "windows and give the raw answer (docs/api.md); off reads raw samples always.",
        parse=config.as_bool, accepts="on, off",
    )
    max_read_samples: int = setting(
        "PROXY_MAX_READ_SAMPLES", 5_000_000,
        "Most samples (staleness markers included) one Prometheus remote-read request may "
        "answer, over all its queries; more is a 422.",
        parse=config.as_int(1), accepts="integer >= 1",
    )
    export_itersize: int = setting(
        "PROXY_EXPORT_ITERSIZE", 5_000,
        "Rows an export fetches from its server-side cursor at a time.",
        parse=config.as_int(1), accepts="integer >= 1",
    )
    export_statement_timeout_ms: int = setting(
        "PROXY_EXPORT_STATEMENT_TIMEOUT_MS", 300_000,
        "Longest one statement of an export (the query, each fetch of its cursor) may run; "
        "0 means no limit.",
        parse=config.as_int(0), accepts="integer >= 0",
    )
    export_idle_timeout_ms: int = setting(
        "PROXY_EXPORT_IDLE_TIMEOUT_MS", 20_000,
        "Longest an export's transaction waits for its client to take more rows: past it "
        "the export stops, its cursor closes and its connection returns to the pool (also "
        "PostgreSQL's idle_in_transaction_session_timeout of the export).",
        parse=config.as_int(1), accepts="integer >= 1",
    )
    key_cache_s: float = setting(
        "PROXY_KEY_CACHE_SECONDS", 10.0,
        "Seconds a verified API key is trusted without asking the database again "
        "(also how long a revoked key may still work in a running proxy).",
        parse=config.as_float(0), accepts="number >= 0",
    )
    idempotency_ttl_s: int = setting(
        "PROXY_IDEMPOTENCY_TTL_SECONDS", 86_400,
        "How long an Idempotency-Key is remembered.",
        parse=config.as_int(60), accepts="integer >= 60",
    )
    metrics_dir: str | None = setting(
        "PROMETHEUS_MULTIPROC_DIR", None,
        "Directory for prometheus_client multiprocess mode: with several gunicorn "
        "workers, /metrics then adds up all workers (`pgpulse proxy` sets one up itself "
        "under PGPULSE_DATA_DIR when this is empty and PROXY_WORKERS > 1).",
        parse=config.as_optional_str, accepts="a directory path or empty",
    )

    ratelimit: bool = setting(
        "PROXY_RATELIMIT", True,
        "Enforce the PROXY_RATELIMIT_* limits (on), or none of them (off).",
        parse=config.as_bool, accepts="on, off",
    )
    redis_url: str | None = setting(
        "REDIS_URL", None,
        "Redis holding the rate-limit counters, shared by every worker and every proxy "
        "process (the full stack sets redis://redis:6379/0). Empty: each process counts in "
        "its own memory, so with N workers a client may get up to N times a limit. Also "
        "read from REDIS_URL_FILE.",
        parse=config.as_url("redis", "rediss", "redis+unix"), accepts="redis:// URL or empty",
        secret=True,
    )
    ratelimit_namespace: str = setting(
        "PROXY_RATELIMIT_NAMESPACE", "pgpulse",
        "Prefix of this installation's rate-limit counters, so that several installations "
        "may share one Redis.",
        parse=config.as_str, accepts="text",
    )
    ratelimit_ingest_key: str | None = setting(
        "PROXY_RATELIMIT_INGEST_PER_KEY", "1000000/second",
        "Samples (and snapshots) one API key may send, on every ingest endpoint together; "
        "beyond it 429 with Retry-After.",
        parse=as_rate, accepts=RATE_ACCEPTS,
    )
    ratelimit_ingest_address: str | None = setting(
        "PROXY_RATELIMIT_INGEST_PER_ADDRESS", "1000000/second",
        "Samples (and snapshots) one client address may send, whatever its keys.",
        parse=as_rate, accepts=RATE_ACCEPTS,
    )
    ratelimit_query_key: str | None = setting(
        "PROXY_RATELIMIT_QUERY_PER_KEY", "200/second",
        "Requests one API key may make to the endpoints of the query scope (queries, "
        "discovery, export, readings).",
        parse=as_rate, accepts=RATE_ACCEPTS,
    )
    ratelimit_query_address: str | None = setting(
        "PROXY_RATELIMIT_QUERY_PER_ADDRESS", "200/second",
        "Requests one client address may make to the endpoints of the query scope.",
        parse=as_rate, accepts=RATE_ACCEPTS,
    )
    ratelimit_auth_failures: str | None = setting(
        "PROXY_RATELIMIT_AUTH_FAILURES", "30/minute;300/hour",
        "Wrong or revoked API keys one client address may present; past it every "
        "authentication from that address is refused (429) until the window ends, even "
        "with a valid key. A request without a key is not counted.",
        parse=as_rate, accepts=RATE_ACCEPTS,
    )

def load_proxy(environ: Mapping[str, str] | None = None, **overrides) -> ProxySettings:
    return config.load(ProxySettings, environ, **overrides)
