"""What the rate limiter costs ingest: samples/s through HTTP (gunicorn, concurrent
clients, batches of 5,000, as bench_ingest.py) with the limiter off, counting in
process memory, and counting in Redis, rounds alternating in one run.

    .venv/bin/python bench/bench_ratelimit.py [--clients 3] [--workers 2] [--batches 20] [--repeat 3]
    .venv/bin/python bench/bench_ratelimit.py --charge [--hits 20000]

``--charge`` measures, in this process, what the limiter adds to one ingest request:
the two hits (per key, per address) of ``charge_samples``, in memory and in Redis,
in microseconds per request.

The limits in force are the defaults (never reached here: the figure is the cost of
counting, not of refusing). Redis is REDIS_URL, else the server on 127.0.0.1:6379;
without one the Redis rounds are left out and the table says so. Prints the medians
and each mode's ratio to the limiter off. Uses a scratch database (see _db.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _db import bench_database, table  # noqa: E402
from bench_ingest import http_ingest  # noqa: E402

MODES = {
    "limiter off": {"PROXY_RATELIMIT": "off"},
    "limiter on, memory": {"PROXY_RATELIMIT": "on", "REDIS_URL": ""},
    "limiter on, Redis": {"PROXY_RATELIMIT": "on"},
}


def redis_url() -> str | None:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return None
    return url


def charge_cost(hits: int, url_redis: str | None) -> None:
    """Microseconds per ingest request's charge (two limits), memory and Redis."""
    import time

    from limits import parse

    from proxy.ratelimit import RateLimits
    from proxy.settings import load_proxy

    item = parse("1000000000/second")
    rows = []
    for name, env in (("memory", {}), ("Redis", {"REDIS_URL": url_redis} if url_redis else None)):
        if env is None:
            continue
        rl = RateLimits(load_proxy({**env, "PROXY_RATELIMIT_NAMESPACE": f"bench-{os.getpid()}"}))
        t0 = time.perf_counter()
        for _ in range(hits):
            rl.hit(item, ("ingest", "key", "1"), 5000)
            rl.hit(item, ("ingest", "address", "127.0.0.1"), 5000)
        rows.append((name, f"{(time.perf_counter() - t0) / hits * 1e6:.1f}"))
        rl.close()
    print(table(rows, ("counter store", "us per ingest request (2 hits)")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--batches", type=int, default=20, help="batches of 5,000 per client per round")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--charge", action="store_true", help="only the cost of one charge, in process")
    ap.add_argument("--hits", type=int, default=20000)
    args = ap.parse_args()

    url_redis = redis_url()
    if args.charge:
        charge_cost(args.hits, url_redis)
        return
    modes = dict(MODES)
    if url_redis is None:
        del modes["limiter on, Redis"]
        print("no Redis answered (REDIS_URL or 127.0.0.1:6379): the Redis rounds are left out")
    else:
        modes["limiter on, Redis"] = {**MODES["limiter on, Redis"], "REDIS_URL": url_redis,
                                      "PROXY_RATELIMIT_NAMESPACE": f"bench-{os.getpid()}"}
    rates: dict[str, list[float]] = {m: [] for m in modes}
    saved = dict(os.environ)
    with bench_database("pgpulse_bench_ratelimit") as url:
        round_ = 0
        try:
            for _ in range(args.repeat):
                for mode, env in modes.items():
                    os.environ.clear()
                    os.environ.update({**saved, **env})
                    total, elapsed = http_ingest(url, args.clients, args.workers, args.threads,
                                                 args.batches, round_)
                    round_ += 1
                    rates[mode].append(total / elapsed)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    base = statistics.median(rates["limiter off"])
    rows = [(mode, f"{statistics.median(r):,.0f}", f"{max(r):,.0f}",
             f"{statistics.median(r) / base:.2f}") for mode, r in rates.items()]
    print(table(rows, ("ingest over HTTP", "samples/s median", "best", "ratio to off")))


if __name__ == "__main__":
    main()
