"""Storage core: write rate into `samples` with binary COPY, rollup cost, late data.

Ceilings, measured in the same run on the same server:
* COPY: binary COPY of the same rows into a plain, unindexed, unpartitioned table;
* rollup: the bare GROUP BY that computes the 5m aggregates, without writing them;
* late-write log: the same COPY with the statement trigger that records late writes
  (revision 0003) disabled.

Late data: half as many rows again, spread over one day three days back (below the
watermark, so every statement is recorded), then the rollup run that takes them in.

Compressed raw storage (``compression``): 1,000 series at 10 s for HOURS hours,
bytes per sample on disk raw and packed (portable engine, revision 0009), the same
data in VictoriaMetrics (Debian's victoria-metrics, loopback port, data under a
temporary directory) and TimescaleDB's compression of the same rows on
PGlite-TimescaleDB (2.23 in WebAssembly: no real TimescaleDB on these machines);
and the cost of raw reads from packed hours against the same reads from plain
``samples``, two databases with the same rows, interleaved rounds.

Run: .venv/bin/python bench/bench_storage.py [rows]   (default 1,000,000)
     .venv/bin/python bench/bench_storage.py compression [hours]   (default 6)
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import requests

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _db import bench_database, table  # noqa: E402

COMPRESSION = len(sys.argv) > 1 and sys.argv[1] == "compression"
ROWS = int(sys.argv[1]) if len(sys.argv) > 1 and not COMPRESSION else 1_000_000
HOURS = int(sys.argv[2]) if COMPRESSION and len(sys.argv) > 2 else 6
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


def raw_bytes(conn: psycopg.Connection) -> int:
    return conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint FROM pg_inherits "
        "WHERE inhparent = 'samples'::regclass"
    ).fetchone()[0]


def median_ms(fn, rounds: int) -> float:
    took = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        took.append(time.perf_counter() - t)
    return statistics.median(took) * 1000


def victoria_bytes(start: datetime, n: int) -> int:
    """Bytes VictoriaMetrics keeps on disk for the same samples (data and index)."""
    from peers import VictoriaMetrics

    lines = [f'bench_metric{{series="{sid}"}} {v!r} {int(t.timestamp() * 1000)}' for t, sid, v in rows(start, n)]
    with VictoriaMetrics() as vm:
        r = requests.post(f"{vm.url}/api/v1/import/prometheus", data="\n".join(lines) + "\n", timeout=600)
        r.raise_for_status()
        vm.flush()
        time.sleep(5)  # let the in-memory parts reach the disk after the flush
        return sum(f.stat().st_size for f in Path(vm.data_dir).rglob("*") if f.is_file())


def timescale_bytes(hours: int) -> tuple[int, int, int]:
    """(rows, bytes before, bytes after) of TimescaleDB's compression of 1,000 series at
    10 s over ``hours`` hours, on PGlite-TimescaleDB."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from pglite_runner import PGliteRunner, exec_, query

    from pgpulse import schema

    points = hours * 360
    steps = [
        exec_(schema.offline_sql("timescale")),
        query("INSERT INTO samples (time, series_id, value) "
              "SELECT timestamptz '2026-12-01 00:00:00+00' + j * INTERVAL '10 seconds', s, "
              "((j * $2::int + s - 1) % 977)::float8 "
              "FROM generate_series(0, $1::int - 1) j, generate_series(1, $2::int) s", points, SERIES),
        query("SELECT count(compress_chunk(c)) AS n FROM show_chunks('samples') c"),
        query("SELECT before_compression_total_bytes AS b, after_compression_total_bytes AS a "
              "FROM hypertable_compression_stats('samples')"),
    ]
    result = PGliteRunner(timeout=1800).run(steps)
    stats = result[3][0]
    return points * SERIES, int(stats["b"]), int(stats["a"])


def compression() -> None:
    from pgpulse import reads
    from pgpulse.settings import load_core
    from pgpulse.store import sample_reads
    from pgpulse.tiers import Retention

    n = HOURS * 360 * SERIES
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=70)
    start = end - timedelta(hours=HOURS)
    with bench_database("pgpulse_bench_packed") as packed_url, bench_database("pgpulse_bench_plain") as plain_url:
        conns = {}
        for name, url in (("packed", packed_url), ("plain", plain_url)):
            conn = conns[name] = psycopg.connect(url)
            conn.execute("SELECT pgpulse_ensure_partitions('samples', %s, now() + interval '1 day')",
                         (start - timedelta(days=1),))
            conn.commit()
            copy_into(conn, "samples", start, n)
            conn.execute("SELECT * FROM pgpulse_refresh_tiers('1 hour', '14 days', '90 days')")
            conn.commit()
        packed = conns["packed"]
        packed.autocommit = True
        packed.execute("VACUUM ANALYZE samples")
        conns["plain"].autocommit = True
        conns["plain"].execute("VACUUM ANALYZE samples")
        before = raw_bytes(packed)
        t = time.perf_counter()
        moved = packed.execute("SELECT pgpulse_compress_samples('1 hour', '14 days')").fetchone()[0]
        pack_s = time.perf_counter() - t
        packed.execute("VACUUM ANALYZE samples")
        packed.execute("VACUUM ANALYZE samples_packed")
        packed_bytes = packed.execute("SELECT pg_total_relation_size('samples_packed')").fetchone()[0]
        left = raw_bytes(packed)
        print(f"plain PostgreSQL: samples {before / n:.1f} bytes/sample; packed {packed_bytes / moved:.2f} "
              f"bytes/sample ({moved:,} samples in {pack_s:.1f} s)", flush=True)

        retention = Retention.from_settings(load_core({}))
        lo_ms, hi_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        hundred = list(range(1, 101))
        reads_ = [
            ("PromQL read, 1 series", lambda c: sample_reads.read_samples(c, [7], lo_ms, hi_ms)),
            ("PromQL read, 100 series", lambda c: sample_reads.read_samples(c, hundred, lo_ms, hi_ms)),
            ("native avg at 60 s, 1 series",
             lambda c: reads.read_series(c, [7], start, end, timedelta(seconds=60), "avg", retention)),
            ("native rate at 60 s, 1 series",
             lambda c: reads.read_series(c, [7], start, end, timedelta(seconds=60), "rate", retention)),
        ]
        out_rows = []
        for label, fn in reads_:
            got = {name: 0.0 for name in conns}
            for r in range(6):
                for name in (("packed", "plain") if r % 2 == 0 else ("plain", "packed")):
                    got[name] += median_ms(lambda fn=fn, name=name: fn(conns[name]), 5) / 6
            out_rows.append((label, f"{got['plain']:.1f} ms", f"{got['packed']:.1f} ms",
                             f"{got['packed'] / got['plain']:.2f}"))
        for c in conns.values():
            c.close()

    print(f"\ncompressed raw storage: {SERIES} series at 10 s for {HOURS} h ({n:,} samples)\n")
    print("raw reads over the whole range, median of interleaved rounds\n")
    print(table(out_rows, ("read", "plain samples", "packed hours", "packed / plain")), flush=True)
    vm = victoria_bytes(start, n)
    ts_rows, ts_before, ts_after = timescale_bytes(1)
    print()
    print(table([
        ("plain PostgreSQL, samples (heap + index)", f"{before / n:.1f}", ""),
        ("plain PostgreSQL, packed hours (samples_packed)", f"{packed_bytes / moved:.2f}",
         f"{moved:,} samples packed in {pack_s:.1f} s, {int(left) / 1e6:.1f} MB left in samples"),
        (f"TimescaleDB 2.23 (PGlite), {ts_rows:,} samples, uncompressed", f"{ts_before / ts_rows:.1f}", ""),
        ("TimescaleDB 2.23 (PGlite), compressed", f"{ts_after / ts_rows:.2f}", ""),
        ("VictoriaMetrics (Debian)", f"{vm / n:.2f}", "data and index directories"),
    ], ("storage", "bytes/sample", "")))


if __name__ == "__main__":
    if COMPRESSION:
        compression()
    else:
        main()
