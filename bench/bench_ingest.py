"""Ingest throughput through HTTP (gunicorn, concurrent clients, batches of 5,000)
next to raw binary COPY into the same ``samples`` table and next to VictoriaMetrics
receiving the same samples, in the same run, rounds interleaved.

    .venv/bin/python bench/bench_ingest.py [--clients 3] [--workers 3] [--batches 40] [--repeat 3]

Two batch shapes: 100 series x 50 times and 1,000 distinct series x 5 times. In
each round and shape the same samples go to ``pgpulse proxy`` as /api/ingest JSON,
to raw binary COPY of as many rows (one connection, a commit per 5,000), and to
VictoriaMetrics (Debian's ``victoria-metrics``, started here: bench/peers.py) as
/api/v1/import JSON lines. Prints samples/s, server CPU microseconds per sample
(user + system of the server's processes), pgpulse's CPU split across its workers,
and the ratios of the medians. Uses a scratch database on the local server
(BENCH_PG_URL, default 127.0.0.1:5432; else embedded), dropped at the end.

    .venv/bin/python bench/bench_ingest.py --parse [--repeat 30]

measures, in this process and without a database, what one request does before it
writes: parse a 5,000-sample body and validate it (fast path and plain table), with
the cyclic garbage collector running and paused, alternating rounds; it prints the
medians and the ratios (the figures behind docs/performance.md's choice on
``gc.disable()``).

    .venv/bin/python bench/bench_ingest.py --writer [--batches 40] [--repeat 5]

measures the store's samples writer in this process against raw binary COPY into
the same table, rounds alternating, one commit per 5,000-row batch: the chosen path
(COPY inside a savepoint; on a unique violation, the staged upsert), the staged
upsert for every batch (the alternative), and a retried batch (the fallback taken).
It prints the medians and each one's ratio to raw COPY (docs/performance.md).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.client
import multiprocessing
import os
import statistics
import struct
import sys
import time
from pathlib import Path

import orjson
import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _db import bench_database, table  # noqa: E402
from peers import Proxy, VictoriaMetrics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BATCH = 5000
_ROW_BYTES = struct.calcsize("!hiqiqid")
SERIES = 100  # distinct series per batch: 100 series x 50 timestamps


def samples_of(client: int, batch: int, batches: int, round_: int, series: int):
    """One batch: (series index, Unix seconds, value) for ``series`` series x
    BATCH // series times, distinct per client, batch and round."""
    # Rounds 6 hours apart (a round spans clients x batches x 50 s): samples are unique
    # per (series, time), and a round writing the same times again would measure
    # overwrites, not ingest. Shapes apart by 3 hours.
    per_series = BATCH // series
    now = time.time() - round_ * 6 * 3600 - (series != SERIES) * 3 * 3600
    t0 = now - 3 * 86400 + (client * batches + batch) * per_series  # inside the window
    return [(s, t0 + i, float(s + i)) for s in range(series) for i in range(per_series)]


def make_bodies(client: int, batches: int, round_: int = 0, series: int = SERIES,
                vm: bool = False) -> list[bytes]:
    """pgpulse /api/ingest bodies, or (``vm``) VictoriaMetrics /api/v1/import JSON
    lines of the same samples (one line per series, times in milliseconds)."""
    bodies = []
    for b in range(batches):
        rows = samples_of(client, b, batches, round_, series)
        if not vm:
            metrics = [{"name": "bench_metric", "labels": {"host": f"h{s % 20}", "dev": f"d{s}"},
                        "value": v, "timestamp": t} for s, t, v in rows]
            bodies.append(orjson.dumps({"metrics": metrics}))
            continue
        per: dict[int, tuple[list, list]] = {}
        for s, t, v in rows:
            values, times = per.setdefault(s, ([], []))
            values.append(v)
            times.append(round(t * 1000))
        bodies.append(b"".join(orjson.dumps(
            {"metric": {"__name__": "bench_metric", "host": f"h{s % 20}", "dev": f"d{s}"},
             "values": values, "timestamps": times}) + b"\n" for s, (values, times) in per.items()))
    return bodies


def client_run(args) -> tuple[int, float, float]:
    port, path, client, batches, round_, series, barrier = args
    bodies = make_bodies(client, batches, round_, series, vm=path != "/api/ingest")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    barrier.wait()
    start = time.perf_counter()
    for body in bodies:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status // 100 != 2:
            raise SystemExit(f"{path} failed: {resp.status} {data[:300]!r}")
    return len(bodies) * BATCH, start, time.perf_counter()


def http_ingest(url: str, clients: int, workers: int, threads: int, batches: int,
                round_: int) -> tuple[int, float]:
    with Proxy(url, workers, threads) as proxy:
        warm_up(proxy.port, round_)
        return send(proxy.port, "/api/ingest", clients, batches, round_)


def warm_up(port: int, round_: int, series: int = SERIES, path: str = "/api/ingest") -> None:
    """Create the series and fill each worker's cache (one connection per body, so
    the bodies reach different workers)."""
    for body in make_bodies(100, 6, round_, series, vm=path != "/api/ingest"):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("POST", path, body, {"Content-Type": "application/json"})
        resp = c.getresponse()
        answer = resp.read()
        if resp.status // 100 != 2:
            raise SystemExit(f"warm-up of {path} failed: {resp.status} {answer[:300]!r}")


def send(port: int, path: str, clients: int, batches: int, round_: int,
         series: int = SERIES) -> tuple[int, float]:
    """Samples sent by ``clients`` processes (keep-alive, ``batches`` bodies each) and
    the seconds from the first start to the last end."""
    with multiprocessing.Manager() as manager:
        barrier = manager.Barrier(clients)
        with multiprocessing.Pool(clients) as pool:
            results = pool.map(client_run, [(port, path, i, batches, round_, series, barrier)
                                            for i in range(clients)])
    return sum(r[0] for r in results), max(r[2] for r in results) - min(r[1] for r in results)


def raw_copy(url: str, rows: int, round_: int, series: int = SERIES) -> tuple[int, float]:
    """Binary COPY of ``rows`` prepared rows into samples, one connection."""
    with psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM series ORDER BY id LIMIT %s", (series,))]
    # Apart from the HTTP rounds' times and from the other rounds' (by an hour).
    pg_now = int((time.time() - 946_684_800 - 2 * 86400 + round_ * 3600) * 1e6)
    pack = struct.Struct("!hiqiqid").pack
    chunks = []
    for start in range(0, rows, BATCH):
        body = b"".join(pack(3, 8, pg_now + (start + i) * 1000, 8, ids[i % len(ids)], 8, float(i))
                        for i in range(min(BATCH, rows - start)))
        chunks.append(b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0) + body + struct.pack("!h", -1))
    with psycopg.connect(url) as conn:
        t0 = time.perf_counter()
        for chunk in chunks:  # one COPY per batch, committed, like the API does
            with conn.cursor() as cur, cur.copy("COPY samples (time, series_id, value) FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(chunk)
            conn.commit()
        return rows, time.perf_counter() - t0


def parse_and_validate(repeat: int, series: int = SERIES) -> None:
    """Medians of decode + validate of one 5,000-sample batch: the typed path, and
    the reference parse + validation with the GC on and paused (fast and plain)."""
    from pgpulse.store.batch import PG_EPOCH_US
    from pgpulse.store.series import SeriesLimits
    from proxy.app import create_app  # noqa: F401 - a proxy-sized heap, like a worker's
    from proxy.validation import Limits, decode_typed, validate, validate_plain

    limits = Limits(SeriesLimits(), 7 * 86400, 600)
    bodies = make_bodies(0, 8, 0, series)
    now_us = time.time_ns() // 1000 - PG_EPOCH_US
    # Old objects a worker keeps (caches, modules): full collections rescan them.
    keep = [{"k": i, "v": [i]} for i in range(int(os.environ.get("BENCH_KEEP", "0")))]

    def once(name: str) -> float:
        paused = name.endswith("paused")
        t0 = time.perf_counter()
        if paused:
            gc.disable()
        try:
            for body in bodies:
                if name.startswith("typed"):
                    assert decode_typed(body, limits, now_us, BATCH) is not None
                else:
                    check = validate if name.startswith("fast") else validate_plain
                    check(orjson.loads(body)["metrics"], limits, now_us)
        finally:
            gc.enable()
        return (time.perf_counter() - t0) / (len(bodies) * BATCH) * 1e6

    runs: dict[str, list[float]] = {"typed (msgspec, columns), GC on": [],
                                    "fast, GC on": [], "fast, GC paused": [],
                                    "plain, GC on": [], "plain, GC paused": []}
    for _ in range(repeat):
        for name in runs:
            runs[name].append(once(name))
    med = {name: statistics.median(v) for name, v in runs.items()}
    print(f"{series} series x {BATCH // series} per batch")
    print(table([(name, f"{m:.3f}", f"{min(runs[name]):.3f}") for name, m in med.items()],
                ("decode + validate", "us/sample median", "us/sample best")))
    print(f"typed / fast (GC on): {med['typed (msgspec, columns), GC on'] / med['fast, GC on']:.2f}; "
          f"GC paused / GC on (fast path): {med['fast, GC paused'] / med['fast, GC on']:.2f}; "
          f"fast / plain (GC on): {med['fast, GC on'] / med['plain, GC on']:.2f}")
    del keep


WRITER_PATHS = ("raw binary COPY", "store write (COPY in a savepoint)",
                "staged upsert for every batch", "store write of a retried batch")


def writer_paths(batches: int, repeat: int) -> None:
    """Rows/s of each way of writing 5,000-row batches (100 series x 50 times), one
    commit each, rounds alternating; medians and ratios to raw COPY."""
    from pgpulse.store import samples

    with bench_database("pgpulse_bench_writer") as url, psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute(
            "INSERT INTO series (name, labels) SELECT 'bench_metric', jsonb_build_object('dev', d) "
            "FROM generate_series(1, %s) d RETURNING id", (SERIES,))]
        conn.commit()
        per_series = BATCH // SERIES
        start = int((time.time() - 946_684_800 - 2 * 86400) * 1e6)
        made = 0

        def fresh() -> list[tuple[int, int, float]]:
            # Times never written before: a new second per batch.
            nonlocal made
            made += 1
            t0 = start + made * per_series * 1_000_000
            return [(t0 + i * 1_000_000, s, float(s + i)) for s in range(SERIES) for i in range(per_series)]

        def raw(cur: psycopg.Cursor, data: bytes) -> None:
            with cur.copy(samples.COPY_SAMPLES) as copy:
                copy.write(data)

        def timed(write, rows_list) -> float:
            t0 = time.perf_counter()
            with conn.cursor() as cur:
                for rows in rows_list:
                    write(cur, samples.copy_rows(rows, ids))
                    conn.commit()
            return len(rows_list) * BATCH / (time.perf_counter() - t0)

        def store_write(cur: psycopg.Cursor, data: bytes) -> None:
            samples.write_stream(cur, data)  # what samples.write does after encoding

        rates: dict[str, list[float]] = {name: [] for name in WRITER_PATHS}
        for _ in range(repeat):
            rates[WRITER_PATHS[0]].append(timed(raw, [fresh() for _ in range(batches)]))
            written = [fresh() for _ in range(batches)]
            rates[WRITER_PATHS[1]].append(timed(store_write, written))
            rates[WRITER_PATHS[2]].append(timed(samples.upsert_staged, [fresh() for _ in range(batches)]))
            rates[WRITER_PATHS[3]].append(timed(store_write, written))
        stored = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
    base = statistics.median(rates[WRITER_PATHS[0]])
    print(table([(name, f"{statistics.median(r):,.0f}", f"{min(r):,.0f} - {max(r):,.0f}",
                  f"{statistics.median(r) / base:.2f}") for name, r in rates.items()],
                ("path (5,000-row batches, a commit each)", "rows/s median", "rounds", "/ raw COPY")))
    print(f"rows stored: {stored} (each retried row once)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=40, help="batches per client")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of (HTTP, raw COPY); the medians are compared")
    parser.add_argument("--baseline", type=Path,
                        help="also run the pgpulse of this directory (an export of an earlier "
                             "commit: git archive REV | tar -x -C DIR) in each round, on its own "
                             "database, for a before/after in the same run")
    parser.add_argument("--parse", action="store_true",
                        help="only parse + validate in this process, GC on and paused")
    parser.add_argument("--writer", action="store_true",
                        help="only the store's samples writer against raw COPY, in this process")
    args = parser.parse_args()
    if args.parse:
        for series in (SERIES, 1000):
            parse_and_validate(max(args.repeat, 5), series)
        return 0
    if args.writer:
        writer_paths(args.batches, args.repeat)
        return 0
    shapes = (SERIES, 1000)
    names = {"pgpulse": "pgpulse /api/ingest", "copy": "raw binary COPY (1 connection)",
             "vm": "VictoriaMetrics /api/v1/import", "base": f"baseline {args.baseline} /api/ingest"}
    if args.baseline is None:
        del names["base"]
    rates = {(k, n): [] for n in shapes for k in names}
    cpu = {(k, n): [] for n in shapes for k in ("pgpulse", "postgres", "vm", "base")}
    rows, splits = [], []
    with contextlib.ExitStack() as stack:
        vm = stack.enter_context(VictoriaMetrics())
        url = stack.enter_context(bench_database("pgpulse_bench_ingest"))
        proxy = stack.enter_context(Proxy(url, args.workers, args.threads))
        base = None
        if args.baseline is not None:
            base_url = stack.enter_context(bench_database("pgpulse_bench_ingest_baseline"))
            base = stack.enter_context(Proxy(base_url, args.workers, args.threads,
                                             root=args.baseline.resolve()))
        for series in shapes:
            warm_up(proxy.port, 0, series)
            warm_up(vm.port, 0, series, "/api/v1/import")
            if base is not None:
                warm_up(base.port, 0, series)
        for round_ in range(1, args.repeat + 1):
            for n_series in shapes:
                shape = f"{n_series} series x {BATCH // n_series}"
                backends = postgres_backends(url)
                before, workers0, pg0 = proxy.cpu_seconds(), proxy.worker_cpu(), backend_cpu(backends)
                n, t = send(proxy.port, "/api/ingest", args.clients, args.batches, round_, n_series)
                used = proxy.cpu_seconds() - before
                split = {pid: c - workers0.get(pid, 0.0) for pid, c in proxy.worker_cpu().items()}
                splits.append((round_, shape, " / ".join(f"{c:.1f}" for c in sorted(split.values(), reverse=True))))
                cpu["pgpulse", n_series].append(used / n * 1e6)
                cpu["postgres", n_series].append((backend_cpu(backends) - pg0) / n * 1e6)
                rates["pgpulse", n_series].append(n / t)
                rows.append((round_, shape, names["pgpulse"], n, f"{t:.2f}", f"{n / t:,.0f}",
                             f"{used / n * 1e6:.1f}"))
                n_copy, t_copy = raw_copy(url, n, 2 * round_ + shapes.index(n_series), n_series)
                rates["copy", n_series].append(n_copy / t_copy)
                rows.append((round_, shape, names["copy"], n_copy, f"{t_copy:.2f}",
                             f"{n_copy / t_copy:,.0f}", ""))
                if base is not None:
                    before, workers0 = base.cpu_seconds(), base.worker_cpu()
                    n, t = send(base.port, "/api/ingest", args.clients, args.batches, round_, n_series)
                    used = base.cpu_seconds() - before
                    split = {pid: c - workers0.get(pid, 0.0) for pid, c in base.worker_cpu().items()}
                    splits.append((round_, shape + " (baseline)",
                                   " / ".join(f"{c:.1f}" for c in sorted(split.values(), reverse=True))))
                    cpu["base", n_series].append(used / n * 1e6)
                    rates["base", n_series].append(n / t)
                    rows.append((round_, shape, names["base"], n, f"{t:.2f}", f"{n / t:,.0f}",
                                 f"{used / n * 1e6:.1f}"))
                before = vm.cpu_seconds()
                n, t = send(vm.port, "/api/v1/import", args.clients, args.batches, round_, n_series)
                used = vm.cpu_seconds() - before
                cpu["vm", n_series].append(used / n * 1e6)
                rates["vm", n_series].append(n / t)
                rows.append((round_, shape, names["vm"], n, f"{t:.2f}", f"{n / t:,.0f}",
                             f"{used / n * 1e6:.1f}"))
        with psycopg.connect(url) as conn:
            stored = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
            conn.execute("CHECKPOINT")
            heap, total = conn.execute(
                "SELECT sum(pg_relation_size(relid)), sum(pg_total_relation_size(relid)) "
                "FROM pg_partition_tree('samples')").fetchone()
        vm.flush()
        vm_stored = vm.rows_inserted("vmimport")
    print(f"{args.clients} clients, {args.workers} workers x {args.threads} threads, "
          f"{args.batches} batches of {BATCH} per client, {args.repeat} rounds interleaved")
    print(table(rows, ("round", "shape", "path", "samples", "seconds", "samples/s",
                       "server CPU us/sample")))
    print("\npgpulse CPU seconds per worker in each run (busiest first):")
    print(table(splits, ("round", "shape", "worker CPU s")))
    med = {key: statistics.median(v) for key, v in rates.items()}
    mcpu = {key: statistics.median(v) for key, v in cpu.items()}
    summary = []
    for n_series in shapes:
        summary.append((f"{n_series} series x {BATCH // n_series}",
                        f"{med['pgpulse', n_series]:,.0f}", f"{mcpu['pgpulse', n_series]:.1f}",
                        f"{mcpu['postgres', n_series]:.1f}", f"{med['copy', n_series]:,.0f}",
                        f"{med['vm', n_series]:,.0f}", f"{mcpu['vm', n_series]:.1f}",
                        f"{med['pgpulse', n_series] / med['copy', n_series]:.2f}",
                        f"{med['pgpulse', n_series] / med['vm', n_series]:.2f}"))
    print("\nmedians")
    print(table(summary, ("shape", "pgpulse/s", "proxy CPU us", "PG backend CPU us", "raw COPY/s",
                          "VM/s", "VM CPU us", "pgpulse / COPY", "pgpulse / VM")))
    if base is not None:
        print(table([(f"{n} series x {BATCH // n}", f"{med['base', n]:,.0f}", f"{mcpu['base', n]:.1f}",
                      f"{med['base', n] / med['copy', n]:.2f}", f"{med['base', n] / med['vm', n]:.2f}",
                      f"{med['pgpulse', n] / med['base', n]:.2f}") for n in shapes],
                    ("baseline shape", "samples/s", "proxy CPU us", "/ COPY", "/ VM", "pgpulse / baseline")))
    print(f"rows stored: pgpulse {stored:,}, VictoriaMetrics {vm_stored:,}")
    # The physical limit: what binary COPY moves per row (2 + 3 x (4 + 8) bytes) and
    # what a row takes on disk in `samples`, heap and index.
    print(f"binary COPY stream: {_ROW_BYTES} bytes per row; on disk in samples: "
          f"{heap / stored:.1f} bytes per row heap, {(total - heap) / stored:.1f} index "
          f"({total / stored:.1f} in all)")
    return 0


def postgres_backends(url: str) -> list[int]:
    """The pids of the PostgreSQL backends serving this benchmark's database."""
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")]


def backend_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += t.user + t.system
    return total


if __name__ == "__main__":
    sys.exit(main())
