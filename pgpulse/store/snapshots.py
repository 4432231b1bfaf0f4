"""``system_metrics``: the one writer of host snapshots, idempotent on (tenant, host, time).

The collector's postgres sink and the proxy's snapshot ingest both call
:func:`write`, so one rule set holds whoever sends a snapshot:

* a snapshot is an object with exactly ``host``, ``time`` and ``data``;
* ``host`` is a non-empty string of at most 255 characters, without NUL;
* ``time`` is RFC 3339 text with a zone, Unix seconds, or an aware datetime; when
  the caller gives a :class:`Window`, it lies inside it;
* ``data`` is a JSON object (a dict, or its JSON text) without NUL characters
  (PostgreSQL's jsonb cannot hold them).

The window is the caller's: the proxy bounds the clocks of remote clients (raw
retention back, PROXY_MAX_SAMPLE_FUTURE_SECONDS ahead); the collector's sink writes
what its own host measured, spooled for as long as an outage lasted.

Every snapshot is checked before anything is written; a bad one raises
:class:`InvalidSample` naming the first (``snapshots[i].field``) and counting all,
and nothing is written. One set-based statement inserts the batch; a snapshot whose
(host, time) is already stored in the tenant is skipped, so a replay stores nothing
twice. Snapshots belong to the caller's tenant: the collector's own sink writes the
default tenant's; the proxy writes the tenant of the request's key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg

from pgpulse.store.batch import parse_rfc3339
from pgpulse.store.errors import InvalidSample

MAX_HOST_LENGTH = 255
FIELDS = frozenset({"host", "time", "data"})

# Binary parameters (%b): the JSON text goes in as it is, not escaped into the text
# form of an array (which costs more client CPU than the rest of a write). The new
# rows are counted from RETURNING, not from the command's row count: on a Citus
# distributed table an ``ON CONFLICT DO NOTHING`` reports every row as inserted.
_INSERT = (
    "WITH new AS ("
    "INSERT INTO system_metrics (tenant_id, time, host, data) "
    "SELECT %b, t, h, d::jsonb FROM unnest(%b::timestamptz[], %b::text[], %b::text[]) AS u(t, h, d) "
    "ON CONFLICT (tenant_id, host, time) DO NOTHING RETURNING 1) "
    "SELECT count(*) FROM new"
)


def _time(value: Any) -> datetime | None:
    kind = type(value)
    if kind is str:
        return parse_rfc3339(value)
    if kind is datetime:
        return value if value.tzinfo is not None else None
    if (kind is int or kind is float) and math.isfinite(value) and 0 <= value < 1e11:
        return datetime.fromtimestamp(value, UTC)
    return None


def _data_text(data: Any) -> str | None:
    """The JSON text of ``data`` when it is a JSON object, else None."""
    if type(data) is dict:
        try:
            return orjson.dumps(data).decode()
        except orjson.JSONEncodeError:  # orjson writes at most 254 levels
            return None
    if isinstance(data, bytes | str):
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if type(parsed) is not dict:
            return None
        return data.decode() if isinstance(data, bytes) else data
    return None


@dataclasses.dataclass(frozen=True)
class Window:
    """Times accepted: from ``max_age_s`` before now to ``max_future_s`` after it."""

    max_age_s: int
    max_future_s: int

    def bounds(self) -> tuple[datetime, datetime]:
        now = datetime.now(UTC)
        return now - timedelta(seconds=self.max_age_s), now + timedelta(seconds=self.max_future_s)

    def describe(self) -> str:
        return f"now - {self.max_age_s}s .. now + {self.max_future_s}s"


def check(
    item: Any, window: Window | None = None, bounds: tuple[datetime, datetime] | None = None
) -> tuple[str, str] | tuple[datetime, str, str]:
    """(time, host, data text) of a good snapshot, or (field, message) of a bad one."""
    if not isinstance(item, Mapping):
        return "", "snapshot must be a JSON object"
    if not item.keys() <= FIELDS:
        extra = sorted(set(item) - FIELDS)[0]
        return extra, f"unknown field {extra!r}"
    host, data = item.get("host"), item.get("data")
    if type(host) is not str or not host.strip() or len(host) > MAX_HOST_LENGTH or "\x00" in host:
        return "host", f"host must be a non-empty string of at most {MAX_HOST_LENGTH} characters"
    text = _data_text(data)
    if text is None:
        if type(data) is dict:  # an object orjson cannot write
            return "data", "data is nested deeper than 254 levels"
        return "data", "data must be a JSON object"
    when = _time(item.get("time"))
    if when is None:
        return "time", "time must be RFC 3339 text (or Unix seconds)"
    if window is not None:
        lo, hi = bounds or window.bounds()
        if not lo <= when <= hi:
            return "time", f"time outside the accepted window ({window.describe()})"
    if "\\u0000" in text:
        return "data", "data contains a NUL character"
    return when, host, text


def write(
    conn: psycopg.Connection,
    items: Sequence[Any],
    window: Window | None = None,
    *,
    tenant: str,
) -> int:
    """Check every snapshot, then insert the batch into ``tenant``; returns how many were new.

    Raises InvalidSample (details: index, field, invalid_count, total) and writes
    nothing when any snapshot breaks a rule.
    """
    times: list[datetime] = []
    hosts: list[str] = []
    docs: list[str] = []
    first: tuple[int, str, str] | None = None
    invalid = 0
    bounds = window.bounds() if window is not None else None
    for i, item in enumerate(items):
        out = check(item, window, bounds)
        if len(out) == 2:
            invalid += 1
            if first is None:
                first = (i, out[0], out[1])
        elif not invalid:
            times.append(out[0])
            hosts.append(out[1])
            docs.append(out[2])
    if first is not None:
        i, field, message = first
        where = f"snapshots[{i}]" + (f".{field}" if field else "")
        raise InvalidSample(f"{where}: {message}", index=i, field=field or None,
                            invalid_count=invalid, total=len(items))
    if not times:
        return 0
    return conn.execute(_INSERT, (tenant, times, hosts, docs)).fetchone()[0]
