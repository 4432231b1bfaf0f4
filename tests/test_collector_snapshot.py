"""The snapshot document: schema 1, headline numbers exactly at the JSON paths of
pgpulse.tiers.HOST_FIELDS, JSON that PostgreSQL takes, on this machine's real /proc
and on a fake one."""

from __future__ import annotations

import time

import orjson
import pytest
from fake_host import Clock, FakeHost

from collector.snapshot import SCHEMA, Sampler
from pgpulse.tiers import HOST_FIELDS


def at_path(doc: dict, path: tuple[str, ...]):
    for key in path:
        doc = doc[key]
    return doc


def test_headline_fields_on_this_machine():
    sampler = Sampler(top_n=0, labels={"env": "test"}, interval=10)
    sampler.sample()
    time.sleep(0.2)
    _, doc = sampler.sample()
    assert doc["schema"] == SCHEMA == 1
    for column, path in HOST_FIELDS.items():
        value = at_path(doc, path)
        assert isinstance(value, int | float) and not isinstance(value, bool), (column, path, value)
    assert doc["labels"] == {"env": "test"}
    assert doc["interval_s"] == 10
    assert 0.1 < doc["elapsed_s"] < 5
    assert "top" not in doc and "states" not in doc["processes"]


def test_first_snapshot_has_null_rates_not_missing_fields():
    sampler = Sampler(top_n=0)
    _, doc = sampler.sample()
    assert doc["elapsed_s"] is None
    assert doc["cpu"]["percent"] is None
    assert doc["disk"]["read_bytes_per_s"] is None
    assert doc["network"]["rx_bytes_per_s"] is None
    # Gauges are there from the first snapshot.
    assert doc["memory"]["percent"] > 0
    assert doc["filesystems"]["/"]["percent"] >= 0


def test_document_is_json_postgres_takes(conn):
    sampler = Sampler(top_n=3)
    sampler.sample()
    at, doc = sampler.sample()
    data = orjson.dumps(doc)
    back = conn.execute("SELECT %s::jsonb #>> '{cpu,count}'", (data.decode(),)).fetchone()[0]
    assert int(back) == doc["cpu"]["count"]
    assert at.tzinfo is not None


def test_full_document_shape(tmp_path):
    host = FakeHost(tmp_path).write()
    clock = Clock()
    sampler = Sampler(host.source(), top_n=2, labels={"rack": "r1"}, interval=10, monotonic=clock)
    sampler.sample()
    clock.advance(10)
    host.cpu["idle"] += 1000
    host.write()
    _, doc = sampler.sample()
    assert set(doc) == {
        "schema", "interval_s", "elapsed_s", "labels", "cpu", "load", "memory", "swap",
        "filesystems", "disk", "network", "processes", "top", "system", "temperatures", "fans",
        "collector",
    }
    assert set(doc["cpu"]["per_core"][0]) == {"percent", "user", "system", "iowait", "steal"}
    assert set(doc["filesystems"]["/"]) == {
        "device", "fstype", "total", "used", "free", "percent",
        "inodes_total", "inodes_used", "inodes_free", "inodes_percent",
    }
    assert set(doc["network"]["interfaces"]["eth0"]) == {
        f"{d}_{what}_per_s" for d in ("rx", "tx") for what in ("bytes", "packets", "errors", "drops")
    }
    assert set(doc["top"]) == {"by_cpu", "by_memory"}
    assert len(doc["top"]["by_memory"]) == 2
    assert set(doc["top"]["by_memory"][0]) == {
        "pid", "name", "username", "cpu_percent", "memory_rss", "memory_percent"
    }
    assert doc["collector"]["skipped"] == []
    assert doc["collector"]["version"]
    for column, path in HOST_FIELDS.items():
        assert isinstance(at_path(doc, path), int | float), column


@pytest.mark.parametrize("top_n", [0, 1, 3])
def test_top_n_setting(tmp_path, top_n):
    host = FakeHost(tmp_path).write()
    clock = Clock()
    sampler = Sampler(host.source(), top_n=top_n, monotonic=clock)
    sampler.sample()
    clock.advance(5)
    _, doc = sampler.sample()
    if top_n == 0:
        assert "top" not in doc and "states" not in doc["processes"]
        assert doc["processes"]["count"] == 4  # the count does not need the walk
    else:
        assert len(doc["top"]["by_cpu"]) == top_n
        assert len(doc["top"]["by_memory"]) == top_n
