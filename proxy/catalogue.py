"""The series catalogue and the samples table, as ingest writes them.

A batch resolves each distinct (name, labels) once: first from a per-process cache
of committed series, then from the database, and creates the rest (under the
cardinality limits) in the batch's own transaction. Samples go in with one binary
COPY. The caller commits; only then are new series added to the cache, so a batch
that rolls back leaves no stale ids behind.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable

import orjson
import psycopg

from proxy.errors import ApiError
from proxy.settings import ProxySettings
from proxy.validation import Batch, SeriesKey

CacheKey = tuple[str, tuple[tuple[str, str], ...]]

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_TRAILER = struct.pack("!h", -1)
# One row: 3 fields; timestamptz (8 bytes, µs since 2000), int8 series id, float8 value.
_ROW = struct.Struct("!hiqiqid")
COPY_SAMPLES = "COPY samples (time, series_id, value) FROM STDIN (FORMAT BINARY)"
_CREATE_LOCK = 0x7067_7073  # advisory lock serialising series creation (cardinality counts)


class SeriesCache:
    """Committed series: (name, sorted labels) -> (id, type). Bounded; thread-safe."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self.entries: dict[CacheKey, tuple[int, str]] = {}
        self.lock = threading.Lock()

    def get(self, key: CacheKey) -> tuple[int, str] | None:
        return self.entries.get(key)

    def update(self, found: dict[CacheKey, tuple[int, str]]) -> None:
        with self.lock:
            if len(self.entries) + len(found) > self.capacity:
                self.entries.clear()
            self.entries.update(found)


def cache_key(name: str, labels: dict[str, str]) -> CacheKey:
    return name, tuple(sorted(labels.items()))


def _lookup(conn: psycopg.Connection, keys: list[SeriesKey]) -> dict[CacheKey, tuple[int, str]]:
    rows = conn.execute(
        "SELECT u.i, s.id, s.type FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS u(name, labels, i) "
        "JOIN series s ON s.name = u.name AND s.labels = u.labels::jsonb",
        ([k.name for k in keys], [orjson.dumps(k.labels).decode() for k in keys]),
    ).fetchall()
    return {cache_key(keys[i - 1].name, keys[i - 1].labels): (sid, typ) for i, sid, typ in rows}


def _check_cardinality(conn: psycopg.Connection, new: list[SeriesKey], settings: ProxySettings) -> None:
    total = conn.execute("SELECT count(*) FROM series").fetchone()[0]
    if total + len(new) > settings.max_series:
        raise ApiError(
            429, f"series limit reached: this batch would create {len(new)} new series, "
            f"{total} exist, the limit is {settings.max_series}",
            limit=settings.max_series, current=total, new_series=len(new),
            hint="GET /api/cardinality shows which metrics and labels hold the most series",
        )
    per_name: dict[str, int] = {}
    for k in new:
        per_name[k.name] = per_name.get(k.name, 0) + 1
    rows = conn.execute(
        "SELECT name, count(*) FROM series WHERE name = ANY(%s) GROUP BY name", (list(per_name),)
    ).fetchall()
    existing = dict(rows)
    for name, adding in sorted(per_name.items()):
        current = existing.get(name, 0)
        if current + adding > settings.max_series_per_metric:
            raise ApiError(
                429, f"series limit of metric {name!r} reached: this batch would create "
                f"{adding} new series, {current} exist, the limit is {settings.max_series_per_metric}",
                metric=name, limit=settings.max_series_per_metric, current=current, new_series=adding,
                hint="GET /api/cardinality shows which labels hold the most series",
            )


def resolve(
    conn: psycopg.Connection, batch: Batch, cache: SeriesCache, settings: ProxySettings
) -> tuple[list[int], dict[CacheKey, tuple[int, str]]]:
    """Series ids for every key of ``batch`` (index-aligned), creating missing series.

    Returns the ids and what to add to the cache once the transaction commits.
    Raises ApiError 409 when a sample's declared type differs from its series' type,
    and 429 when new series would pass a cardinality limit.
    """
    ids: list[int | None] = [None] * len(batch.keys)
    types: list[str | None] = [None] * len(batch.keys)
    missing: list[int] = []
    for i, k in enumerate(batch.keys):
        hit = cache.get(cache_key(k.name, k.labels))
        if hit is None:
            missing.append(i)
        else:
            ids[i], types[i] = hit
    learned: dict[CacheKey, tuple[int, str]] = {}
    if missing:
        wanted = [batch.keys[i] for i in missing]
        found = _lookup(conn, wanted)
        new = [k for k in wanted if cache_key(k.name, k.labels) not in found]
        if new:
            # One creator at a time, so that counts and creation agree.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
            found.update(_lookup(conn, new))
            new = [k for k in new if cache_key(k.name, k.labels) not in found]
        if new:
            _check_cardinality(conn, new, settings)
            rows = conn.execute(
                "INSERT INTO series (name, labels, type) "
                "SELECT name, labels::jsonb, type FROM unnest(%s::text[], %s::text[], %s::text[]) "
                "AS u(name, labels, type) "
                "ON CONFLICT ON CONSTRAINT series_name_labels_key DO NOTHING RETURNING id, name, labels, type",
                ([k.name for k in new], [orjson.dumps(k.labels).decode() for k in new],
                 [k.type or "gauge" for k in new]),
            ).fetchall()
            for sid, name, labels, typ in rows:
                found[cache_key(name, labels)] = (sid, typ)
        learned = found
        for i in missing:
            k = batch.keys[i]
            ids[i], types[i] = found[cache_key(k.name, k.labels)]
    for i, k in enumerate(batch.keys):
        if k.type is not None and types[i] != k.type:
            first = next(n for n, row in enumerate(batch.rows) if row[1] == i)
            raise ApiError(409, f"series {k.name} {orjson.dumps(k.labels).decode()} is a {types[i]}; "
                           f"this batch sends it as a {k.type}",
                           index=first, field="type", series_type=types[i])
    return ids, learned  # type: ignore[return-value]


def copy_rows(rows: Iterable[tuple[int, int, float]], ids: list[int]) -> bytes:
    """The binary COPY stream of samples rows (time µs since 2000, series index, value)."""
    pack = _ROW.pack
    return b"".join([_HEADER, *[pack(3, 8, t, 8, ids[k], 8, v) for t, k, v in rows], _TRAILER])


def write_samples(conn: psycopg.Connection, batch: Batch, ids: list[int]) -> int:
    """COPY the batch's samples into ``samples`` inside the caller's transaction."""
    if not batch.rows:
        return 0
    data = copy_rows(batch.rows, ids)
    with conn.cursor() as cur, cur.copy(COPY_SAMPLES) as copy:
        copy.write(data)
    return len(batch.rows)
