"""Ingest and a full-scan aggregate on one node next to a Citus cluster, same run.

    BENCH_CITUS_URL=postgresql://...coordinator.../db .venv/bin/python bench/bench_citus.py \
        [--batches 20] [--repeat 3]

The single node is a scratch database on the local server (BENCH_PG_URL, as the other
benchmarks); the cluster is the migrated database at BENCH_CITUS_URL (revision 0009
distributed it; docs/scaling.md). Both get the store's samples writer
(``samples.write_stream``: COPY in a savepoint) with 5,000-row batches of 1,000
series, one commit each, rounds alternating; the cluster once with Citus's default
connection cache and once with ``citus.max_cached_conns_per_worker`` raised. Then
the time of one aggregate over every stored sample. Prints medians and the ratio to
the single node (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _db import bench_database  # noqa: E402

from pgpulse.store import samples  # noqa: E402

SERIES = 1000
BATCH = 5000
AGGREGATE = "SELECT count(*), sum(value) FROM (SELECT series_id, avg(value) AS value FROM samples GROUP BY 1) s"


def table(rows, header) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


class Target:
    def __init__(self, url: str, settings: tuple[str, ...] = ()) -> None:
        self.conn = psycopg.connect(url)
        for statement in settings:
            self.conn.execute(statement)
        self.ids = [r[0] for r in self.conn.execute(
            "INSERT INTO series (name, labels) SELECT 'bench_citus', jsonb_build_object('dev', d, 'run', %s) "
            "FROM generate_series(1, %s) d RETURNING id", (time.time_ns(), SERIES))]
        self.conn.commit()
        self.made = 0
        self.start = int((time.time() - 946_684_800 - 86400) * 1e6)

    def rate(self, batches: int) -> float:
        per_series = BATCH // SERIES
        streams = []
        for _ in range(batches):
            self.made += 1
            t0 = self.start + self.made * per_series * 1_000_000
            rows = [(t0 + i * 1_000_000, s, float(s + i)) for s in range(SERIES) for i in range(per_series)]
            streams.append(samples.copy_rows(rows, self.ids))
        t0 = time.perf_counter()
        with self.conn.cursor() as cur:
            for data in streams:
                samples.write_stream(cur, data)
                self.conn.commit()
        return batches * BATCH / (time.perf_counter() - t0)

    def aggregate_s(self) -> float:
        t0 = time.perf_counter()
        self.conn.execute(AGGREGATE).fetchone()
        self.conn.commit()
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    citus = os.environ.get("BENCH_CITUS_URL")
    if not citus:
        raise SystemExit("BENCH_CITUS_URL is not set: the URL of a migrated database on a Citus coordinator")
    with bench_database("pgpulse_bench_citus") as single_url:
        targets = {
            "single node": Target(single_url),
            "cluster, Citus defaults": Target(citus),
            "cluster, max_cached_conns_per_worker = 8": Target(
                citus, ("SET citus.max_cached_conns_per_worker = 8",)),
        }
        with psycopg.connect(citus) as conn:
            workers = conn.execute("SELECT count(*) FROM citus_get_active_worker_nodes()").fetchone()[0]
        rates: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(args.repeat):
            for name, target in targets.items():
                rates[name].append(target.rate(args.batches))
        scans = {name: statistics.median([t.aggregate_s() for _ in range(args.repeat)])
                 for name, t in list(targets.items())[:2]}
        for target in targets.values():
            target.conn.close()
    base = statistics.median(rates["single node"])
    print(f"Citus workers: {workers}; {BATCH:,}-row batches of {SERIES:,} series, a commit each")
    print(table([(name, f"{statistics.median(r):,.0f}", f"{min(r):,.0f} - {max(r):,.0f}",
                  f"{statistics.median(r) / base:.2f}") for name, r in rates.items()],
                ("samples writer", "rows/s median", "rounds", "/ single node")))
    one = scans["single node"]
    print(table([(name, f"{s * 1000:,.0f}", f"{s / one:.2f}") for name, s in scans.items()],
                ("aggregate over every sample", "ms median", "/ single node")))


if __name__ == "__main__":
    main()
