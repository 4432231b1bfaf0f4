"""What the control plane costs: ingest samples/s and query latency with the tenant
check, the rate limits and the monthly quota on, and with them off, rounds
alternating in one run.

    .venv/bin/python bench/bench_controlplane.py [--clients 3] [--batches 10] [--repeat 4] [--runs 200]

* ingest: batches of 5,000 samples (bench_ingest.py's bodies) through the proxy's
  full request path in this process (Flask test clients, one thread per client:
  routing, auth, rate limits, parse, validate, write, quota, commit), without the
  network. "Off": PGPULSE_AUTH=off, PROXY_RATELIMIT=off and the quota's charge left
  out. "On": an API key checked on every request, the ingest rate limits counted
  (process memory; Redis too when one answers, as bench_ratelimit.py), a monthly
  quota (10^12, never reached) charged in each batch's transaction, the clients all
  of one tenant (so they queue on its usage row at commit). "Quota only": auth and
  rate limits off, the quota charged.
* store: the quota's SQL alone: one connection, write_batch and commit, with and
  without usage.charge in the transaction.
* query: GET /api/query of 1 h of one series (raw tier), median and p99 server time,
  off and on (the key check and the query rate limits; queries pay no quota).

Prints medians and each "on" mode's ratio to "off". A scratch database (_db.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _db import bench_database, table  # noqa: E402
from bench_ingest import BATCH, make_bodies  # noqa: E402
from bench_ratelimit import redis_url  # noqa: E402

import proxy.quota  # noqa: E402
from pgpulse.store import samples, series, usage  # noqa: E402
from pgpulse.store.keys import create_key  # noqa: E402
from proxy import close_app, create_app  # noqa: E402
from proxy.validation import Limits, validate  # noqa: E402

QUOTA = 10**12
OFF = {"PGPULSE_AUTH": "off", "PROXY_RATELIMIT": "off", "REDIS_URL": ""}
ON = {"PGPULSE_AUTH": "on", "PROXY_RATELIMIT": "on", "REDIS_URL": "",
      "PGPULSE_MONTHLY_SAMPLE_QUOTA": str(QUOTA)}


@contextlib.contextmanager
def quota_left_out(off: bool) -> Iterator[None]:
    """The "off" rounds: the views' quota charge replaced by nothing (only here)."""
    charge = proxy.quota.charge
    if off:
        proxy.quota.charge = lambda conn, stored: None
    try:
        yield
    finally:
        proxy.quota.charge = charge


def modes(url: str, key: str) -> dict[str, tuple[dict, dict]]:
    """mode -> (app config, request headers)."""
    auth = {"Authorization": f"Bearer {key}"}
    out = {"off": (OFF, {}), "quota only": ({**OFF, "PGPULSE_MONTHLY_SAMPLE_QUOTA": str(QUOTA)}, {}),
           "on, limits in memory": (ON, auth)}
    found = redis_url()
    if found:
        out["on, limits in Redis"] = ({**ON, "REDIS_URL": found,
                                       "PROXY_RATELIMIT_NAMESPACE": f"bench-{os.getpid()}"}, auth)
    return out


def ingest_round(app, headers: dict, clients: int, batches: int, round_: int) -> float:
    """Samples/s of ``clients`` threads each posting ``batches`` bodies."""
    bodies = [make_bodies(c, batches, round_) for c in range(clients)]
    barrier = threading.Barrier(clients + 1)
    failures: list[str] = []

    def run(mine: list[bytes]) -> None:
        client = app.test_client()
        barrier.wait()
        for body in mine:
            r = client.post("/api/ingest", data=body, headers={**headers, "Content-Type": "application/json"})
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.get_data()[:300]!r}")
                return

    threads = [threading.Thread(target=run, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if failures:
        raise SystemExit(f"ingest failed: {failures[0]}")
    return clients * batches * BATCH / elapsed


def bench_ingest(url: str, key: str, args) -> list[tuple]:
    ms = modes(url, key)
    # Rounds are 6 hours apart (bench_ingest.make_bodies): a window of 14 days holds them.
    apps = {m: create_app({"DATABASE_URL": url, "LOG_LEVEL": "warning", "PROXY_MAX_SERIES": "100000",
                           "PROXY_MAX_SAMPLE_AGE_SECONDS": str(14 * 86400), **config})
            for m, (config, _) in ms.items()}
    rates: dict[str, list[float]] = {m: [] for m in ms}
    try:
        for m, app in apps.items():  # warm-up: series created, caches filled
            with quota_left_out(m == "off"):
                ingest_round(app, ms[m][1], 1, 1, -1)
        round_ = 0
        for _ in range(args.repeat):
            for m, app in apps.items():
                with quota_left_out(m == "off"):
                    rates[m].append(ingest_round(app, ms[m][1], args.clients, args.batches, round_))
                round_ += 1
    finally:
        for app in apps.values():
            close_app(app)
    base = statistics.median(rates["off"])
    return [(f"ingest, {args.clients} clients: {m}", f"{statistics.median(r):,.0f} samples/s",
             f"{max(r):,.0f}", f"{statistics.median(r) / base:.3f}") for m, r in rates.items()]


def bench_store(url: str, args) -> list[tuple]:
    """write_batch + commit, with and without usage.charge, alternating, one connection."""
    limits = Limits(series.SeriesLimits(), 14 * 86400, 600)
    now_us = time.time_ns() // 1000 - 946_684_800 * 1_000_000
    rates: dict[str, list[float]] = {"store write": [], "store write + quota charge": []}
    round_ = args.repeat * 4  # after the ingest rounds' times
    cache = series.SeriesCache()
    with psycopg.connect(url) as conn:
        for _ in range(args.repeat * 2):
            for mode in rates:
                batches = [validate(orjson.loads(b)["metrics"], limits, now_us)
                           for b in make_bodies(0, args.batches, round_)]
                round_ += 1
                t0 = time.perf_counter()
                for batch in batches:
                    taken, learned = samples.write_batch(conn, batch, limits.series, cache)
                    if mode != "store write":
                        usage.charge(conn, "default", taken, QUOTA)
                    conn.commit()
                    cache.update(learned)
                rates[mode].append(len(batches) * BATCH / (time.perf_counter() - t0))
    base = statistics.median(rates["store write"])
    return [(m, f"{statistics.median(r):,.0f} samples/s", f"{max(r):,.0f}",
             f"{statistics.median(r) / base:.3f}") for m, r in rates.items()]


def bench_query(url: str, key: str, args) -> list[tuple]:
    now = time.time()
    params = {"query": "bench_metric", "start": now - 4 * 86400, "end": now - 2 * 86400,
              "step": "60s", "agg": "avg"}
    out = []
    ms = modes(url, key)
    apps = {m: create_app({"DATABASE_URL": url, "LOG_LEVEL": "warning", **config})
            for m, (config, _) in ms.items()}
    times: dict[str, list[float]] = {m: [] for m in ms}
    try:
        clients = {m: app.test_client() for m, app in apps.items()}
        for m, client in clients.items():
            for _ in range(10):  # warm-up
                assert client.get("/api/query", query_string={**params, "query": 'bench_metric{dev="d1"}'},
                                  headers=ms[m][1]).status_code == 200
        for _ in range(args.runs):
            for m, client in clients.items():
                t0 = time.perf_counter()
                r = client.get("/api/query", query_string={**params, "query": 'bench_metric{dev="d1"}'},
                               headers=ms[m][1])
                times[m].append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.get_data()[:300]
    finally:
        for app in apps.values():
            close_app(app)
    base = statistics.median(times["off"])
    for m, t in times.items():
        t = sorted(t)
        out.append((f"query (GET /api/query, 1 series): {m}", f"{statistics.median(t):.2f} ms median",
                    f"p99 {t[int(len(t) * 0.99) - 1]:.2f} ms", f"{statistics.median(t) / base:.3f}"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--batches", type=int, default=10, help="batches of 5,000 per client per round")
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--runs", type=int, default=200, help="query requests per mode")
    args = ap.parse_args()
    with bench_database("pgpulse_bench_controlplane") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            key, _ = create_key(conn, "bench", ["ingest", "query"])
        rows = bench_ingest(url, key, args)
        rows += bench_store(url, args)
        rows += bench_query(url, key, args)
    print(table(rows, ("what", "median", "best / p99", "ratio to off")))


if __name__ == "__main__":
    main()
