"""``series``: the catalogue of metric series, and the one place that creates them.

The rules of a series are written here once, for every writer (ingest, the ETL,
protocols to come):

* a metric name matches ``[a-zA-Z_:][a-zA-Z0-9_:]*``, 1 to 200 characters;
* a label name matches ``[a-zA-Z_][a-zA-Z0-9_]*``, at most 100 characters, and does
  not start with ``__`` (reserved, like Prometheus);
* a label value is a string of at most PROXY_MAX_LABEL_VALUE_LENGTH characters,
  without NUL; at most PROXY_MAX_LABELS labels;
* a type is "gauge" or "counter"; a sample that declares a type other than its
  series' recorded type is a :class:`TypeConflict` (no declared type: any; a
  ``SeriesKey.hint`` only types a series being created, and never conflicts);
* new series may not take the tenant's catalogue past PROXY_MAX_SERIES, nor one
  metric of the tenant past PROXY_MAX_SERIES_PER_METRIC (:class:`CardinalityExceeded`;
  the tenant's own ``max_series`` / ``max_series_per_metric`` override these).

Every series belongs to one tenant, and is unique on (tenant, name, labels): two
tenants sending the same name and labels have two series, each counted against its
own tenant's limits. :func:`resolve` takes the tenant and finds or makes series of
that tenant only.

:func:`resolve` finds each distinct series of a batch once: first in a
per-process :class:`SeriesCache` of committed series, then in the database, and
creates the rest under an advisory lock (so that counting and creating agree) in
the caller's transaction. The caller adds what it learned to the cache only after
its commit, so a batch that rolls back leaves no stale ids behind.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from typing import Any

import orjson
import psycopg

from pgpulse.settings import CoreSettings
from pgpulse.store.batch import Batch, CacheKey, SeriesKey, cache_key
from pgpulse.store.errors import CardinalityExceeded, InvalidSample, TypeConflict

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_NAME_LENGTH = 200
MAX_LABEL_NAME_LENGTH = 100
TYPES = ("gauge", "counter")
DEFAULT_TYPE = "gauge"
_CREATE_LOCK = 0x7067_7073  # advisory lock serialising series creation (cardinality counts)


@dataclasses.dataclass(frozen=True)
class SeriesLimits:
    """The limits every writer of series obeys (core settings, see pgpulse.settings)."""

    max_series: int = 10_000
    max_series_per_metric: int = 2_000
    max_labels: int = 30
    max_label_value_len: int = 1024

    @classmethod
    def from_settings(cls, core: CoreSettings) -> SeriesLimits:
        return cls(core.max_series, core.max_series_per_metric, core.max_labels,
                   core.max_label_value_len)

    def for_tenant(self, conn: psycopg.Connection, tenant: str) -> SeriesLimits:
        """These limits with ``tenant``'s overrides (NULL columns keep the setting)."""
        row = conn.execute("SELECT max_series, max_series_per_metric FROM tenants WHERE id = %s",
                           (tenant,)).fetchone()
        if row is None:
            return self
        return dataclasses.replace(self, max_series=row[0] or self.max_series,
                                   max_series_per_metric=row[1] or self.max_series_per_metric)


# -- the rules of a series' identity ------------------------------------------------


def metric_name_problem(name: Any) -> str | None:
    """What is wrong with a metric name, or None."""
    if type(name) is not str:
        return "name must be a string"
    if not name or len(name) > MAX_NAME_LENGTH or not METRIC_NAME.fullmatch(name):
        return (f"metric name {name[:50]!r} must match [a-zA-Z_:][a-zA-Z0-9_:]* "
                f"(1 to {MAX_NAME_LENGTH} characters)")
    return None


def label_name_problem(name: Any) -> str | None:
    """What is wrong with a label name, or None."""
    if type(name) is not str or len(name) > MAX_LABEL_NAME_LENGTH or not LABEL_NAME.fullmatch(name):
        return (f"label name {str(name)[:50]!r} must match [a-zA-Z_][a-zA-Z0-9_]* "
                f"(at most {MAX_LABEL_NAME_LENGTH} characters)")
    if name.startswith("__"):
        return f"label name {name!r}: names starting with __ are reserved"
    return None


def label_set_problem(labels: dict, max_len: int, known: set[str] | None = None
                      ) -> tuple[str, str] | None:
    """(field, message) for the first bad label name or value of ``labels``, or None.

    ``known``: label names already found good (a per-batch memo; good names are added).
    """
    for name, value in labels.items():
        if known is None or name not in known:
            bad_name = label_name_problem(name)
            if bad_name:
                return "labels", bad_name
            if known is not None:
                known.add(name)
        if type(value) is not str:
            return "labels." + name, f"label {name!r}: value must be a string"
        if len(value) > max_len:
            return "labels." + name, f"label {name!r}: value longer than {max_len} characters"
        if "\x00" in value:
            return "labels." + name, f"label {name!r}: value contains a NUL character"
    return None


def labels_problem(labels: dict, limits: SeriesLimits) -> tuple[str, str, str] | None:
    """(field, message, reason) for a bad label set (a dict), or None."""
    if len(labels) > limits.max_labels:
        return "labels", f"more than {limits.max_labels} labels", "too_many_labels"
    bad = label_set_problem(labels, limits.max_label_value_len)
    if bad:
        return bad[0], bad[1], "invalid_labels"
    return None


def type_problem(typ: Any) -> str | None:
    if typ is not None and typ not in TYPES:
        return "type must be 'gauge' or 'counter'"
    return None


def check_key(key: SeriesKey, limits: SeriesLimits) -> None:
    """Raise InvalidSample (details: field, reason) unless ``key`` keeps the rules."""
    msg = metric_name_problem(key.name)
    if msg:
        raise InvalidSample(msg, field="name", reason="invalid_name")
    if type(key.labels) is not dict:
        raise InvalidSample("labels must be a JSON object of strings", field="labels",
                            reason="invalid_labels")
    bad = labels_problem(key.labels, limits)
    if bad:
        raise InvalidSample(bad[1], field=bad[0], reason=bad[2])
    msg = type_problem(key.type) or type_problem(key.hint)
    if msg:
        raise InvalidSample(msg, field="type", reason="invalid")


# -- the catalogue ------------------------------------------------------------------


TenantKey = tuple[str, CacheKey]  # (tenant, (name, sorted labels))


class SeriesCache:
    """Committed series: (tenant, (name, sorted labels)) -> (id, type). Bounded; thread-safe."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self.entries: dict[TenantKey, tuple[int, str]] = {}
        self.lock = threading.Lock()

    def get(self, key: TenantKey) -> tuple[int, str] | None:
        return self.entries.get(key)

    def update(self, found: dict[TenantKey, tuple[int, str]]) -> None:
        with self.lock:
            if len(self.entries) + len(found) > self.capacity:
                self.entries.clear()
            self.entries.update(found)


# Names and labels go as binary arrays (%b): no escaping into an array literal.
def _lookup(conn: psycopg.Connection, tenant: str, keys: list[SeriesKey]
            ) -> dict[CacheKey, tuple[int, str]]:
    rows = conn.execute(
        "SELECT u.i, s.id, s.type FROM unnest(%b::text[], %b::text[]) WITH ORDINALITY "
        "AS u(name, labels, i) JOIN series s ON s.tenant_id = %b AND s.name = u.name "
        "AND s.labels = u.labels::jsonb",
        ([k.name for k in keys], [orjson.dumps(k.labels).decode() for k in keys], tenant),
    ).fetchall()
    return {cache_key(keys[i - 1].name, keys[i - 1].labels): (sid, typ) for i, sid, typ in rows}


def _check_cardinality(conn: psycopg.Connection, tenant: str, new: list[SeriesKey],
                       limits: SeriesLimits) -> None:
    total = conn.execute("SELECT count(*) FROM series WHERE tenant_id = %s", (tenant,)).fetchone()[0]
    if total + len(new) > limits.max_series:
        raise CardinalityExceeded(
            f"series limit reached: this batch would create {len(new)} new series, "
            f"{total} exist, the limit is {limits.max_series}",
            limit=limits.max_series, current=total, new_series=len(new),
            hint="GET /api/cardinality shows which metrics and labels hold the most series",
        )
    per_name: dict[str, int] = {}
    for k in new:
        per_name[k.name] = per_name.get(k.name, 0) + 1
    existing = dict(conn.execute(
        "SELECT name, count(*) FROM series WHERE tenant_id = %s AND name = ANY(%s) GROUP BY name",
        (tenant, list(per_name)),
    ).fetchall())
    for name, adding in sorted(per_name.items()):
        current = existing.get(name, 0)
        if current + adding > limits.max_series_per_metric:
            raise CardinalityExceeded(
                f"series limit of metric {name!r} reached: this batch would create "
                f"{adding} new series, {current} exist, the limit is {limits.max_series_per_metric}",
                metric=name, limit=limits.max_series_per_metric, current=current, new_series=adding,
                hint="GET /api/cardinality shows which labels hold the most series",
            )


def resolve(
    conn: psycopg.Connection, batch: Batch, limits: SeriesLimits, cache: SeriesCache | None = None,
    *, tenant: str,
) -> tuple[list[int], dict[TenantKey, tuple[int, str]]]:
    """Series ids of ``tenant`` for every key of ``batch`` (index-aligned), creating
    missing series in that tenant (under its limits).

    New series must keep the rules (:func:`check_key`, else InvalidSample; the
    proxy's validator and the ETL check them first, to say which sample). Returns the ids and what to add to the cache once the
    transaction commits. Raises TypeConflict when a declared type differs from the
    series' type, CardinalityExceeded when new series would pass a limit; nothing
    is created then.
    """
    ids: list[int] = [0] * len(batch.keys)
    types: list[str] = [""] * len(batch.keys)
    missing: list[int] = []
    for i, k in enumerate(batch.keys):
        hit = cache.get((tenant, cache_key(k.name, k.labels))) if cache is not None else None
        if hit is None:
            missing.append(i)
        else:
            ids[i], types[i] = hit
    learned: dict[TenantKey, tuple[int, str]] = {}
    if missing:
        wanted = [batch.keys[i] for i in missing]
        found = _lookup(conn, tenant, wanted)
        new = [k for k in wanted if cache_key(k.name, k.labels) not in found]
        if new:
            # One creator at a time, so that counts and creation agree.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
            found.update(_lookup(conn, tenant, new))
            new = [k for k in new if cache_key(k.name, k.labels) not in found]
        if new:
            # Whoever writes, no series that breaks a rule is ever made.
            for k in new:
                check_key(k, limits)
            _check_cardinality(conn, tenant, new, limits.for_tenant(conn, tenant))
            rows = conn.execute(
                "INSERT INTO series (tenant_id, name, labels, type) "
                "SELECT %b, name, labels::jsonb, type FROM unnest(%b::text[], %b::text[], %b::text[]) "
                "AS u(name, labels, type) "
                "ON CONFLICT ON CONSTRAINT series_tenant_name_labels_key DO NOTHING "
                "RETURNING id, name, labels, type",
                (tenant, [k.name for k in new], [orjson.dumps(k.labels).decode() for k in new],
                 [k.type or k.hint or DEFAULT_TYPE for k in new]),
            ).fetchall()
            for sid, name, labels, typ in rows:
                found[cache_key(name, labels)] = (sid, typ)
        learned = {(tenant, ck): hit for ck, hit in found.items()}
        for i in missing:
            k = batch.keys[i]
            ids[i], types[i] = found[cache_key(k.name, k.labels)]
    for i, k in enumerate(batch.keys):
        if k.type is not None and types[i] != k.type:
            first = next((n for n, row in enumerate(batch.rows) if row[1] == i), None)
            raise TypeConflict(
                f"series {k.name} {orjson.dumps(k.labels).decode()} is a {types[i]}; "
                f"this batch sends it as a {k.type}",
                index=first, field="type", series_type=types[i],
            )
    return ids, learned
