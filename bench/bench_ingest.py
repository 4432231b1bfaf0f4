"""Ingest throughput through HTTP (gunicorn, concurrent clients, batches of 5,000)
next to raw binary COPY into the same ``samples`` table, in the same run.

    .venv/bin/python bench/bench_ingest.py [--clients 3] [--workers 3] [--batches 40] [--repeat 3]

Prints a table and the ratio HTTP / raw COPY. Uses a scratch database on the local
server (BENCH_PG_URL, default 127.0.0.1:5432; else embedded), dropped at the end.

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
import gc
import http.client
import multiprocessing
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _db import bench_database, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BATCH = 5000
SERIES = 100  # distinct series per batch: 100 series x 50 timestamps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_bodies(client: int, batches: int, round_: int = 0) -> list[bytes]:
    # Rounds 6 hours apart (a round spans clients x batches x 50 s): samples are unique
    # per (series, time), and a round writing the same times again would measure
    # overwrites, not ingest.
    now = time.time() - round_ * 6 * 3600
    bodies = []
    per_series = BATCH // SERIES
    for b in range(batches):
        t0 = now - 3 * 86400 + (client * batches + b) * per_series  # distinct, inside the window
        metrics = [
            {"name": "bench_metric", "labels": {"host": f"h{s % 20}", "dev": f"d{s}"},
             "value": float(s + i), "timestamp": t0 + i}
            for s in range(SERIES) for i in range(per_series)
        ]
        bodies.append(orjson.dumps({"metrics": metrics}))
    return bodies


def client_run(args: tuple[int, int, int, int, multiprocessing.Barrier]) -> tuple[int, float, float]:
    port, client, batches, round_, barrier = args
    bodies = make_bodies(client, batches, round_)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    barrier.wait()
    start = time.perf_counter()
    sent = 0
    for body in bodies:
        conn.request("POST", "/api/ingest", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise SystemExit(f"ingest failed: {resp.status} {data[:300]!r}")
        sent += BATCH
    return sent, start, time.perf_counter()


def wait_ready(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("proxy did not become ready")


def http_ingest(url: str, clients: int, workers: int, threads: int, batches: int,
                round_: int) -> tuple[int, float]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "PGPULSE_AUTH": "off", "PORT": str(port),
           "PROXY_HOST": "127.0.0.1", "LOG_LEVEL": "warning", "PROXY_MAX_SERIES": "100000"}
    proc = subprocess.Popen([sys.executable, "-m", "pgpulse", "proxy", "--workers", str(workers),
                             "--threads", str(threads)], env=env, cwd=ROOT)
    try:
        wait_ready(port)
        # Warm-up: create the series and fill each worker's cache.
        for body in make_bodies(999, 4, round_):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("POST", "/api/ingest", body, {"Content-Type": "application/json"})
            assert c.getresponse().status == 200
        with multiprocessing.Manager() as manager:
            barrier = manager.Barrier(clients)
            with multiprocessing.Pool(clients) as pool:
                results = pool.map(client_run, [(port, i, batches, round_, barrier)
                                                  for i in range(clients)])
        total = sum(r[0] for r in results)
        elapsed = max(r[2] for r in results) - min(r[1] for r in results)
        return total, elapsed
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def raw_copy(url: str, rows: int, round_: int) -> tuple[int, float]:
    """Binary COPY of ``rows`` prepared rows into samples, one connection."""
    with psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM series ORDER BY id LIMIT %s", (SERIES,))]
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


def parse_and_validate(repeat: int) -> None:
    """Medians of parse + validate of one 5,000-sample batch: GC on/off, fast/plain."""
    from pgpulse.store.batch import PG_EPOCH_US
    from pgpulse.store.series import SeriesLimits
    from proxy.app import create_app  # noqa: F401 - a proxy-sized heap, like a worker's
    from proxy.validation import Limits, validate, validate_plain

    limits = Limits(SeriesLimits(), 7 * 86400, 600)
    bodies = make_bodies(0, 8)
    now_us = time.time_ns() // 1000 - PG_EPOCH_US
    # Old objects a worker keeps (caches, modules): full collections rescan them.
    keep = [{"k": i, "v": [i]} for i in range(int(os.environ.get("BENCH_KEEP", "0")))]

    def once(check, paused: bool) -> float:
        t0 = time.perf_counter()
        if paused:
            gc.disable()
        try:
            for body in bodies:
                check(orjson.loads(body)["metrics"], limits, now_us)
        finally:
            gc.enable()
        return (time.perf_counter() - t0) / (len(bodies) * BATCH) * 1e6

    runs: dict[str, list[float]] = {"fast, GC on": [], "fast, GC paused": [],
                                    "plain, GC on": [], "plain, GC paused": []}
    for _ in range(repeat):
        for name in runs:
            runs[name].append(once(validate if name.startswith("fast") else validate_plain,
                                   name.endswith("paused")))
    med = {name: statistics.median(v) for name, v in runs.items()}
    print(table([(name, f"{m:.3f}", f"{min(runs[name]):.3f}") for name, m in med.items()],
                ("parse + validate", "us/sample median", "us/sample best")))
    print(f"GC paused / GC on (fast path): {med['fast, GC paused'] / med['fast, GC on']:.2f}; "
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
    parser.add_argument("--parse", action="store_true",
                        help="only parse + validate in this process, GC on and paused")
    parser.add_argument("--writer", action="store_true",
                        help="only the store's samples writer against raw COPY, in this process")
    args = parser.parse_args()
    if args.parse:
        parse_and_validate(max(args.repeat, 5))
        return 0
    if args.writer:
        writer_paths(args.batches, args.repeat)
        return 0
    rows = []
    http_rates, copy_rates = [], []
    with bench_database("pgpulse_bench_ingest") as url:
        for round_ in range(1, args.repeat + 1):
            n_http, t_http = http_ingest(url, args.clients, args.workers, args.threads,
                                         args.batches, round_)
            n_copy, t_copy = raw_copy(url, n_http, round_)
            http_rates.append(n_http / t_http)
            copy_rates.append(n_copy / t_copy)
            rows.append((round_, f"HTTP /api/ingest ({args.clients} clients, {args.workers}x{args.threads} workers)",
                         n_http, f"{t_http:.2f}", f"{n_http / t_http:,.0f}"))
            rows.append((round_, "raw binary COPY (1 connection)", n_copy, f"{t_copy:.2f}",
                         f"{n_copy / t_copy:,.0f}"))
        with psycopg.connect(url) as conn:
            stored = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
    print(table(rows, ("round", "path", "samples", "seconds", "samples/s")))
    http_med, copy_med = statistics.median(http_rates), statistics.median(copy_rates)
    print(f"median HTTP {http_med:,.0f}/s, median raw COPY {copy_med:,.0f}/s, "
          f"ratio HTTP / raw COPY: {http_med / copy_med:.2f}   (rows stored: {stored})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
