"""Storage core: write rate into `samples` with binary COPY, rollup cost, late data.

Ceilings, measured in the same run on the same server:
* COPY: binary COPY of the same rows into a plain, unindexed, unpartitioned table;
* rollup: the bare GROUP BY that computes the 5m aggregates, without writing them;
* late-write log: the same COPY with the statement trigger that records late writes
  (revision 0003) disabled.

Late data: half as many rows again, spread over one day three days back (below the
watermark, so every statement is recorded), then the rollup run that takes them in.

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


def rows(start: datetime, n: int = ROWS, every: float = 10.0):
    # SERIES series, one sample every ``every`` seconds each.
    for i in range(n):
        yield (start + timedelta(seconds=every * (i // SERIES)), i % SERIES + 1, float(i % 977))


def copy_into(conn: psycopg.Connection, relation: str, start: datetime, n: int = ROWS,
              every: float = 10.0, batch: int = 5000) -> float:
    """COPY ``n`` rows in statements of ``batch`` rows (as ingest requests write them)."""
    t = time.perf_counter()
    source = rows(start, n, every)
    for _ in range(0, n, batch):
        with conn.cursor() as cur, cur.copy(
            f"COPY {relation} (time, series_id, value) FROM STDIN (FORMAT BINARY)"  # noqa: S608 - fixed names
        ) as copy:
            copy.set_types(["timestamptz", "int8", "float8"])
            for _, row in zip(range(batch), source, strict=False):
                copy.write_row(row)
        conn.commit()
    return time.perf_counter() - t


def trigger(conn: psycopg.Connection, enabled: bool) -> None:
    conn.execute(f"ALTER TABLE samples {'ENABLE' if enabled else 'DISABLE'} TRIGGER samples_log_late_writes")
    conn.commit()


def refresh(conn: psycopg.Connection, raw_keep: timedelta) -> tuple[float, dict]:
    t = time.perf_counter()
    out = conn.execute(
        "SELECT relation, buckets FROM pgpulse_refresh_tiers('1 hour', %s, '90 days')", (raw_keep,)
    ).fetchall()
    conn.commit()
    return time.perf_counter() - t, dict(out)


def main() -> None:
    span = timedelta(seconds=10 * (ROWS // SERIES))
    start = (datetime.now(UTC) - span - timedelta(minutes=10)).replace(microsecond=0)
    half = ROWS // 2
    day = timedelta(days=1)
    late_start = (datetime.now(UTC) - 3 * day).replace(microsecond=0)
    with bench_database() as url, psycopg.connect(url) as conn:
        conn.execute("SELECT pgpulse_ensure_partitions('samples', %s, now() + interval '1 day')",
                     (min(start, late_start - 2 * day),))
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
        rollup, buckets = refresh(conn, span + 4 * day)
        incremental, again = refresh(conn, span + 4 * day)

        # On time (above the watermark) and late (a day three days back), with and
        # without the late-write trigger, in alternating rounds so that neither side
        # gets the warmer cache or the smaller index.
        later = start + span + timedelta(minutes=20)
        every = day.total_seconds() * SERIES / half
        quarter = half // 4
        on_time = on_time_bare = late = late_bare = 0.0
        for r in range(4):
            for enabled in ((True, False) if r % 2 == 0 else (False, True)):
                trigger(conn, enabled)
                shift = timedelta(seconds=10 * (quarter // SERIES)) * (2 * r + (0 if enabled else 1))
                took = copy_into(conn, "samples", later + shift, quarter)
                if enabled:
                    on_time += took
                else:
                    on_time_bare += took
                # The late rows with the log off would never be refreshed: they go a
                # further day back, where the check below does not look.
                at = late_start if enabled else late_start - day
                took = copy_into(conn, "samples", at + day * (r / 4), quarter, every)
                if enabled:
                    late += took
                else:
                    late_bare += took
        trigger(conn, True)
        logged = conn.execute("SELECT count(*) FROM pgpulse_invalidations").fetchone()[0]
        conn.commit()
        late_refresh, late_buckets = refresh(conn, span + 4 * day)

    per_million = 1_000_000 / ROWS
    print(f"storage benchmark: {ROWS:,} rows, {SERIES} series, portable engine\n")
    print(table([
        ("COPY into samples (partitioned, indexed)", f"{ROWS / ours:,.0f} rows/s", f"{ours:.2f} s",
         f"{ceiling / ours:.2f} of plain-table COPY ({ROWS / ceiling:,.0f} rows/s)"),
        ("full rollup raw->5m->1h", f"{rollup * per_million:.2f} s per 1M rows", f"{rollup:.2f} s",
         f"{group_ceiling / rollup:.2f} of the bare GROUP BY ({group_ceiling:.2f} s)"),
        ("incremental rollup (1 h late window)", f"{incremental * 1000:.0f} ms", "", ""),
        ("on-time COPY, late-write log on", f"{half / on_time:,.0f} rows/s", f"{on_time:.2f} s",
         f"{on_time_bare / on_time:.2f} of the same without it ({half / on_time_bare:,.0f} rows/s)"),
        ("late COPY (3 days back), log on", f"{half / late:,.0f} rows/s", f"{late:.2f} s",
         f"{late_bare / late:.2f} of the same without it; "
         f"{(late - late_bare) / half * 1e6:+.2f} us per late sample"),
        ("rollup run taking in a day of late data", f"{late_refresh * 1000:.0f} ms",
         f"{half:,} late rows, {logged} log rows",
         f"{incremental / late_refresh:.2f} of an incremental run with no late data"),
    ], ("what", "rate", "time", "vs ceiling")))
    print("\nbuckets written:", dict(buckets), "then", dict(again), "then with late data", late_buckets)


if __name__ == "__main__":
    main()
