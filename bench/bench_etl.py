"""MongoDB -> PostgreSQL ETL: documents per second end to end, with the time split
between reading (claims and marks), transforming and loading; the loading side
next to raw COPY into the same table.

* transform + load (the target, >= 20,000 documents/s): 100,000 generated readings,
  decoded as the driver hands them over, through ``Transformer.batch`` and
  ``load.write`` in batches of ETL_BATCH_SIZE, one transaction each: each step
  alone, then both overlapped as a run does (the next batch transformed by a worker
  thread while PostgreSQL loads the current one).
* ceiling: binary COPY of the same rows straight into an empty ``reading_analytics``
  (same indexes, no staging, no conflict handling), in the same batches.
* end to end: ``runs.run`` over the 100,000 readings, with an in-memory stand-in for
  the collection (MongoDB is not installed here), so the figure is pgpulse's own
  cost: claims, transforms, loads, marks and the run record.
* source side, separately: claims and marks against mongomock on a smaller set.
  mongomock is an in-memory Python imitation, orders of magnitude slower than a
  MongoDB server: its figure says nothing about MongoDB.

Run: .venv/bin/python bench/bench_etl.py [documents]   (default 100,000)
"""

from __future__ import annotations

import itertools
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bson
import mongomock
import psycopg
from bson import Decimal128, ObjectId
from bson.codec_options import CodecOptions, DatetimeConversion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _db import bench_database, table  # noqa: E402

from etl import load, runs  # noqa: E402
from etl.settings import load_etl  # noqa: E402
from etl.source import MongoSource  # noqa: E402
from etl.transform import Transformer  # noqa: E402
from pgpulse.store import etl_runs  # noqa: E402

TARGET = 20_000  # documents/s, transform + load
RUN_A = "00000000-0000-4000-8000-00000000000a"
RUN_B = "00000000-0000-4000-8000-00000000000b"
DECODE = CodecOptions(tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO)
SETTINGS = load_etl({"MONGO_URI": "mongodb://bench", "ETL_BATCH_SIZE": "1000"})


def generate(n: int) -> list[dict[str, Any]]:
    """Reading documents as pymongo decodes them (a BSON round trip each)."""
    rng = random.Random(7)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    raw = []
    for i in range(n):
        raw.append(bson.encode({
            "_id": ObjectId(),
            "status": "ingested",
            "device_id": f"sensor-{i % 500:04d}",
            "time": t0 + timedelta(seconds=i),
            "temperature": round(rng.uniform(-10, 40), 2),
            "humidity": rng.randint(10, 95),
            "battery": Decimal128(f"{rng.uniform(3.0, 4.2):.3f}"),
            "location": {"site": f"site-{i % 7}", "lat": 52.1 + rng.random(), "lon": 4.3 + rng.random()},
            "tags": ["outdoor", f"fw-{i % 3}"],
        }))
    return [bson.decode(b, codec_options=DECODE) for b in raw]


# -- an in-memory collection for the end-to-end figure ---------------------------------


def _get(doc: dict, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _matches(doc: dict, flt: dict) -> bool:
    for key, cond in flt.items():
        if key == "$and":
            if not all(_matches(doc, f) for f in cond):
                return False
        elif key == "$or":
            if not any(_matches(doc, f) for f in cond):
                return False
        else:
            value = _get(doc, key)
            if isinstance(cond, dict):
                for op, arg in cond.items():
                    if op == "$in" and value not in arg:
                        return False
                    if op == "$lt" and not (value is not None and value < arg):
                        return False
                    if op == "$ne" and value == arg:
                        return False
            elif value != cond:
                return False
    return True


def _prepared(flt: Any) -> Any:
    """The filter with every $in list as a set (membership in O(1))."""
    if isinstance(flt, dict):
        return {k: (set(v) if k == "$in" else _prepared(v)) for k, v in flt.items()}
    if isinstance(flt, list):
        return [_prepared(v) for v in flt]
    return flt


def _ids_in(flt: dict) -> Any:
    """The _id set of a filter that names one ($in at the top or in $and)."""
    cond = flt.get("_id")
    if isinstance(cond, dict) and "$in" in cond:
        return cond["$in"]
    for part in flt.get("$and", []):
        found = _ids_in(part)
        if found is not None:
            return found
    return None


class MemoryCollection:
    """Just what MongoSource calls, over a dict, with a status index so that the
    stand-in costs little next to what is measured. Documents are generated in _id
    order, so the index's insertion order is _id order and sort() has nothing to do."""

    def __init__(self, docs: list[dict]) -> None:
        self.docs = {d["_id"]: d for d in docs}
        self.by_status: dict[str, dict] = {}
        for key, d in self.docs.items():
            self.by_status.setdefault(d["status"], {})[key] = None

    def _candidates(self, flt: dict):
        ids = _ids_in(flt)
        if ids is not None:
            return (self.docs[k] for k in ids if k in self.docs)
        # Read lazily: find() results are consumed before any update changes the index.
        pools = itertools.chain(self.by_status.get("processing", {}), self.by_status.get("ingested", {}))
        return (self.docs[k] for k in pools)

    def _matching(self, flt: dict):
        flt = _prepared(flt)
        return (d for d in self._candidates(flt) if _matches(d, flt))

    def find(self, flt: dict, projection: dict | None = None):
        rows = self._matching(flt)
        return _Cursor({"_id": d["_id"]} if projection else dict(d) for d in rows)

    def count_documents(self, flt: dict) -> int:
        return sum(1 for _ in self._matching(flt))

    def _apply(self, doc: dict, update: dict) -> None:
        before = doc["status"]
        for path, value in update.get("$set", {}).items():
            *parents, last = path.split(".")
            target = doc
            for p in parents:
                target = target.setdefault(p, {})
            target[last] = value
        for path in update.get("$unset", {}):
            *parents, last = path.split(".")
            target = doc
            for p in parents:
                target = target.get(p, {})
            target.pop(last, None)
        for path, step in update.get("$inc", {}).items():
            *parents, last = path.split(".")
            target = doc
            for p in parents:
                target = target.setdefault(p, {})
            target[last] = target.get(last, 0) + step
        if doc["status"] != before:
            self.by_status[before].pop(doc["_id"], None)
            self.by_status.setdefault(doc["status"], {})[doc["_id"]] = None

    def update_many(self, flt: dict, update: dict):
        hit = list(self._matching(flt))
        for d in hit:
            self._apply(d, update)
        return SimpleNamespace(modified_count=len(hit), matched_count=len(hit))

    def update_one(self, flt: dict, update: dict):
        hit = next(self._matching(flt), None)
        if hit is not None:
            self._apply(hit, update)
        return SimpleNamespace(modified_count=int(hit is not None), matched_count=int(hit is not None))


class _Cursor:
    def __init__(self, rows) -> None:
        self.rows = rows

    def sort(self, key: str, direction: int) -> _Cursor:
        return self

    def limit(self, n: int) -> _Cursor:
        return _Cursor(itertools.islice(self.rows, n))

    def __iter__(self):
        return iter(self.rows)


class ClientSource(MongoSource):
    """The production source on a given client object (the stand-in, or mongomock)."""

    def __init__(self, settings: Any, client: Any) -> None:
        super().__init__(settings)
        self.client = client

    def open_client(self, uri: str, **options: Any) -> Any:
        return self.client


class MemoryClient:
    def __init__(self, collection: MemoryCollection) -> None:
        self.collection = collection

    def __getitem__(self, name: str):
        return {SETTINGS.collection: self.collection}

    def close(self) -> None:
        pass


# -- the measurements --------------------------------------------------------------------


def _load_batch(conn: psycopg.Connection, batch: Any, run_id: str) -> None:
    with conn.transaction():
        written = load.write(conn, batch, run_id)
        etl_runs.add_batch(conn, run_id, len(batch.rows), written.loaded, written.rejects)


def transform_then_load(url: str, docs: list[dict]) -> tuple[float, float, list]:
    """Each step alone: all batches transformed, then all loaded (one transaction each)."""
    transformer = Transformer(SETTINGS)
    size = SETTINGS.batch_size
    t0 = time.perf_counter()
    batches = [transformer.batch(docs[i:i + size]) for i in range(0, len(docs), size)]
    t_transform = time.perf_counter() - t0
    with psycopg.connect(url, autocommit=True) as conn:
        load.prepare(conn)
        conn.execute("TRUNCATE reading_analytics")
        etl_runs.start(conn, RUN_A, "cli", "bench")
        t0 = time.perf_counter()
        for batch in batches:
            _load_batch(conn, batch, RUN_A)
        t_load = time.perf_counter() - t0
        assert conn.execute("SELECT count(*) FROM reading_analytics").fetchone()[0] == len(docs)
    return t_transform, t_load, batches


def transform_and_load_overlapped(url: str, docs: list[dict]) -> float:
    """Both steps as a run does them: batch N+1 transformed by a worker thread while
    batch N loads (etl/runs.py)."""
    transformer = Transformer(SETTINGS)
    size = SETTINGS.batch_size
    chunks = [docs[i:i + size] for i in range(0, len(docs), size)]
    with psycopg.connect(url, autocommit=True) as conn, ThreadPoolExecutor(max_workers=1) as worker:
        load.prepare(conn)
        conn.execute("TRUNCATE reading_analytics")
        etl_runs.start(conn, RUN_B, "cli", "bench")
        t0 = time.perf_counter()
        pending = worker.submit(transformer.batch, chunks[0])
        for i in range(len(chunks)):
            batch = pending.result()
            if i + 1 < len(chunks):
                pending = worker.submit(transformer.batch, chunks[i + 1])
            _load_batch(conn, batch, RUN_B)
        elapsed = time.perf_counter() - t0
        assert conn.execute("SELECT count(*) FROM reading_analytics").fetchone()[0] == len(docs)
    return elapsed


def raw_copy(url: str, batches: list) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE reading_analytics")
        total = 0.0
        for batch in batches:
            t0 = time.perf_counter()
            with conn.transaction(), conn.cursor().copy(
                "COPY reading_analytics (mongo_id, reading_time, source_id, run_id, payload) FROM STDIN"
            ) as copy:
                for row in batch.rows:
                    copy.write_row((row.mongo_id, row.reading_time, row.source_id, None, row.payload.decode()))
            total += time.perf_counter() - t0
        conn.execute("TRUNCATE reading_analytics")
    return total


def end_to_end(url: str, docs: list[dict]) -> runs.RunResult:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE reading_analytics, etl_rejects")
    client = MemoryClient(MemoryCollection([dict(d) for d in docs]))
    result = runs.run(url, SETTINGS, ClientSource(SETTINGS, client), max_batches=0)
    assert result.loaded == len(docs), result.as_dict()
    return result


def mongomock_source(n: int) -> tuple[float, float]:
    client = mongomock.MongoClient(tz_aware=True)
    client[SETTINGS.mongo_database][SETTINGS.collection].insert_many(generate(n))
    source = ClientSource(SETTINGS, client)
    now = datetime.now(UTC)
    t_claim = t_mark = 0.0
    while True:
        t0 = time.perf_counter()
        docs = source.claim("bench", now, now + timedelta(minutes=5), SETTINGS.batch_size)
        t1 = time.perf_counter()
        if not docs:
            break
        source.mark_processed("bench", [d["_id"] for d in docs], now)
        t_claim += t1 - t0
        t_mark += time.perf_counter() - t1
    return t_claim, t_mark


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    mock_n = 2_000
    print(f"generating {n:,} readings ...", file=sys.stderr)
    docs = generate(n)
    with bench_database("pgpulse_bench_etl") as url:
        t_transform, t_load, batches = transform_then_load(url, docs)
        t_both = transform_and_load_overlapped(url, docs)
        t_copy = raw_copy(url, batches)
        e2e = end_to_end(url, docs)
    t_claim, t_mark = mongomock_source(mock_n)

    rate = lambda count, seconds: f"{count / seconds:,.0f}/s"  # noqa: E731
    rows = [
        ("transform (alone)", f"{t_transform:.2f} s", rate(n, t_transform), ""),
        ("load: COPY to stage + upsert (alone)", f"{t_load:.2f} s", rate(n, t_load), ""),
        ("transform + load, overlapped as in a run", f"{t_both:.2f} s", rate(n, t_both),
         f"target {TARGET:,}/s: {n / t_both / TARGET:.2f}x"),
        ("raw COPY into reading_analytics", f"{t_copy:.2f} s", rate(n, t_copy), "ceiling of load"),
        ("load / raw COPY (throughput)", "", "", f"{t_copy / t_load:.2f}"),
    ]
    timings = e2e.timings
    e2e_rows = [
        ("reading: claims (stand-in)", f"{timings['read']:.2f} s"),
        ("transforming (worker thread)", f"{timings['transform']:.2f} s"),
        ("loading", f"{timings['load']:.2f} s"),
        ("marking (stand-in)", f"{timings['mark']:.2f} s"),
        ("run, wall clock", f"{e2e.duration_s:.2f} s  ({n / e2e.duration_s:,.0f} documents/s)"),
    ]
    mock_rows = [
        ("claim", f"{t_claim:.2f} s", rate(mock_n, t_claim)),
        ("mark processed", f"{t_mark:.2f} s", rate(mock_n, t_mark)),
    ]
    print(f"\nETL, {n:,} readings, batches of {SETTINGS.batch_size:,}")
    print(table(rows, ("step", "time", "documents", "ratio")))
    print(f"\nend to end (runs.run over an in-memory collection stand-in), {n:,} readings;")
    print("transforming overlaps loading, so the parts add up to more than the wall clock")
    print(table(e2e_rows, ("part", "time")))
    print(f"\nsource side on mongomock ({mock_n:,} documents; an in-memory imitation, not MongoDB)")
    print(table(mock_rows, ("step", "time", "documents")))


if __name__ == "__main__":
    main()
