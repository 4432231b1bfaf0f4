"""Storage core: write rate into `samples` with binary COPY, and rollup cost.

Ceilings, measured in the same run on the same server:
* COPY: binary COPY of the same rows into a plain, unindexed, unpartitioned table;
* rollup: the bare GROUP BY that computes the 5m aggregates, without writing them.

Run: .venv/bin/python bench/bench_storage.py [rows]   (default 1,000,000)
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

import psycopg

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _db import bench_database, table  # noqa: E402

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
SERIES = 1000


def rows(start: datetime):
    # SERIES series, one sample every 10 s each, ending 10 minutes ago.
    for i in range(ROWS):
        yield (start + timedelta(seconds=10 * (i // SERIES)), i % SERIES + 1, float(i % 977))


def copy_into(conn: psycopg.Connection, relation: str, start: datetime) -> float:
    t = time.perf_counter()
    with conn.cursor() as cur, cur.copy(
        f"COPY {relation} (time, series_id, value) FROM STDIN (FORMAT BINARY)"  # noqa: S608 - fixed names
    ) as copy:
        copy.set_types(["timestamptz", "int8", "float8"])
        for row in rows(start):
            copy.write_row(row)
    conn.commit()
    return time.perf_counter() - t


def main() -> None:
    span = timedelta(seconds=10 * (ROWS // SERIES))
    start = (datetime.now(UTC) - span - timedelta(minutes=10)).replace(microsecond=0)
    with bench_database() as url, psycopg.connect(url) as conn:
        conn.execute("SELECT pgpulse_ensure_partitions('samples', %s, now() + interval '1 day')", (start,))
        conn.execute("CREATE UNLOGGED TABLE IF NOT EXISTS copy_ceiling (time timestamptz, series_id bigint, value float8)")
        conn.execute("DROP TABLE copy_ceiling")
        conn.execute("CREATE TABLE copy_ceiling (time timestamptz, series_id bigint, value float8)")
        conn.commit()
        ceiling = copy_into(conn, "copy_ceiling", start)
        ours = copy_into(conn, "samples", start)
        conn.execute("ANALYZE samples")
        conn.commit()

        t = time.perf_counter()
        conn.execute(
            "SELECT count(*) FROM (SELECT date_bin('5 minutes', time, '1970-01-01'), series_id, count(value), "
            "sum(value), min(value), max(value), (array_agg(value ORDER BY time DESC))[1] FROM samples GROUP BY 1, 2) s"
        ).fetchone()
        group_ceiling = time.perf_counter() - t
        t = time.perf_counter()
        buckets = conn.execute(
            "SELECT relation, buckets FROM pgpulse_refresh_tiers('1 hour', %s, '90 days')",
            (span + timedelta(days=1),),
        ).fetchall()
        conn.commit()
        rollup = time.perf_counter() - t
        t = time.perf_counter()
        again = conn.execute("SELECT relation, buckets FROM pgpulse_refresh_tiers('1 hour', '14 days', '90 days')").fetchall()
        conn.commit()
        incremental = time.perf_counter() - t

    per_million = 1_000_000 / ROWS
    print(f"storage benchmark: {ROWS:,} rows, {SERIES} series, portable engine\n")
    print(table([
        ("COPY into samples (partitioned, indexed)", f"{ROWS / ours:,.0f} rows/s", f"{ours:.2f} s",
         f"{ceiling / ours:.2f} of plain-table COPY ({ROWS / ceiling:,.0f} rows/s)"),
        ("full rollup raw->5m->1h", f"{rollup * per_million:.2f} s per 1M rows", f"{rollup:.2f} s",
         f"{group_ceiling / rollup:.2f} of the bare GROUP BY ({group_ceiling:.2f} s)"),
        ("incremental rollup (1 h late window)", f"{incremental * 1000:.0f} ms", "", ""),
    ], ("what", "rate", "time", "vs ceiling")))
    print("\nbuckets written:", dict(buckets), "then", dict(again))


if __name__ == "__main__":
    main()
