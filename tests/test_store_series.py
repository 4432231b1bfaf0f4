"""pgpulse.store.series and samples against the real PostgreSQL: series are created
once, under the limits and the type rule, never breaking a rule whoever calls; the
cache is filled only with what the caller commits."""

from __future__ import annotations

import psycopg
import pytest

from pgpulse.store import samples, series
from pgpulse.store.batch import PG_EPOCH_US, Batch
from pgpulse.store.errors import CardinalityExceeded, InvalidSample, TypeConflict

NOW_US = 1_800_000_000 * 1_000_000 - PG_EPOCH_US


def batch_of(*keys: tuple[str, dict, str | None]) -> Batch:
    b = Batch()
    for i, (name, labels, typ) in enumerate(keys):
        b.rows.append((NOW_US + i, b.series(name, labels, typ), float(i)))
    return b


def count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names


def test_series_made_once_and_cached_after_commit(conn, db_url):
    cache = series.SeriesCache()
    limits = series.SeriesLimits()
    b = batch_of(("m", {"b": "2", "a": "1"}, None), ("m", {"a": "1", "b": "2"}, "counter"))
    assert len(b.keys) == 1  # label order does not make another series
    with psycopg.connect(db_url) as c:
        written, learned = samples.write_batch(c, b, limits, cache, tenant="default")
        assert cache.get(("default", ("m", (("a", "1"), ("b", "2"))))) is None  # not before the commit
    cache.update(learned)
    assert written == 2 and count(conn, "series") == 1 and count(conn, "samples") == 2
    sid, typ = cache.get(("default", ("m", (("a", "1"), ("b", "2")))))
    assert typ == "counter"
    with psycopg.connect(db_url) as c:
        ids, learned = series.resolve(c, batch_of(("m", {"a": "1", "b": "2"}, None)), limits, cache, tenant="default")
    assert ids == [sid] and learned == {}  # from the cache, no lookup


def test_limits_refuse_and_create_nothing(conn, db_url):
    limits = series.SeriesLimits(max_series=3, max_series_per_metric=2)
    with psycopg.connect(db_url) as c:
        samples.write_batch(c, batch_of(("a", {"i": "1"}, None), ("a", {"i": "2"}, None)), limits, tenant="default")
    with psycopg.connect(db_url) as c, pytest.raises(CardinalityExceeded) as info:
        series.resolve(c, batch_of(("a", {"i": "3"}, None)), limits, tenant="default")
    assert info.value.details["metric"] == "a" and info.value.details["current"] == 2
    with psycopg.connect(db_url) as c, pytest.raises(CardinalityExceeded) as info:
        series.resolve(c, batch_of(("b", {}, None), ("c", {}, None)), limits, tenant="default")
    assert info.value.details == {"limit": 3, "current": 2, "new_series": 2,
                                  "hint": info.value.details["hint"]}
    assert count(conn, "series") == 2


def test_type_rule(conn, db_url):
    limits = series.SeriesLimits()
    with psycopg.connect(db_url) as c:
        samples.write_batch(c, batch_of(("reqs", {}, "counter")), limits, tenant="default")
    with psycopg.connect(db_url) as c, pytest.raises(TypeConflict) as info:
        series.resolve(c, batch_of(("ok", {}, None), ("reqs", {}, "gauge")), limits, tenant="default")
    assert info.value.details == {"index": 1, "field": "type", "series_type": "counter"}
    with psycopg.connect(db_url) as c:  # no declared type: any series' type goes
        ids, _ = series.resolve(c, batch_of(("reqs", {}, None)), limits, tenant="default")
    assert len(ids) == 1


def test_no_series_breaking_a_rule_is_made_even_unchecked(conn, db_url):
    limits = series.SeriesLimits(max_label_value_len=4)
    for keys in ([("bad name", {}, None)], [("m", {"__name__": "x"}, None)],
                 [("m", {"k": "toolong"}, None)], [("m", {}, "histogram")]):
        with psycopg.connect(db_url) as c, pytest.raises(InvalidSample):
            series.resolve(c, batch_of(*keys), limits, tenant="default")
    assert count(conn, "series") == 0


def test_limits_come_from_the_core_settings():
    from pgpulse.settings import load_core

    core = load_core({"PROXY_MAX_SERIES": "50", "PROXY_MAX_SERIES_PER_METRIC": "5",
                      "PROXY_MAX_LABELS": "3", "PROXY_MAX_LABEL_VALUE_LENGTH": "9"})
    assert series.SeriesLimits.from_settings(core) == series.SeriesLimits(50, 5, 3, 9)
    with pytest.raises(ValueError, match="PROXY_MAX_SERIES_PER_METRIC must be <= PROXY_MAX_SERIES"):
        load_core({"PROXY_MAX_SERIES": "5", "PROXY_MAX_SERIES_PER_METRIC": "6"})
