"""Host collector: CPU time per snapshot, memory of the running agent, and the same
work done by Prometheus node_exporter, measured in the same run.

* CPU per snapshot: ``Sampler.sample()`` (every probe, the document), top-N off and
  on, then with the JSON encoding and the durable spool append, and the postgres
  sink's client-side cost of writing one snapshot. Ceiling: 2 ms with top-N off.
* RSS of the agent: ``python -m collector`` and ``pgpulse collect`` running against
  the bench database at a 50 ms interval; VmRSS after the run. Ceiling: 50 MB.
* node_exporter (Debian package prometheus-node-exporter): started on a loopback
  port, /metrics scraped N times; its CPU seconds from /proc/<pid>/stat, against
  our N snapshots (top-N off).

Run: .venv/bin/python bench/bench_collector.py [snapshots]   (default 1,000)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

sys.path.insert(0, os.path.dirname(__file__))
from _db import bench_database, table  # noqa: E402

from collector.sinks.postgres import PostgresSink  # noqa: E402
from collector.snapshot import Sampler  # noqa: E402
from collector.spool import Entry, Spool  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
ROOT = Path(__file__).resolve().parent.parent
CPU_CEILING_MS = 2.0
RSS_CEILING_MB = 50.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_per_call(fn, n: int) -> float:
    """Milliseconds of this process's CPU per call of ``fn`` (after a warm-up)."""
    for _ in range(5):
        fn()
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1000


def sampler_cost(top_n: int, n: int) -> float:
    sampler = Sampler(top_n=top_n)
    logging_off()
    return cpu_per_call(sampler.sample, n)


def logging_off() -> None:
    import logging

    logging.getLogger("collector").setLevel(logging.ERROR)


def tick_cost(n: int, spool_dir: Path) -> float:
    sampler = Sampler(top_n=0)
    spool = Spool(spool_dir, max_rows=n + 100)

    def tick() -> None:
        at, doc = sampler.sample()
        spool.append("bench", at.isoformat(), orjson.dumps(doc))

    try:
        return cpu_per_call(tick, n)
    finally:
        spool.close()


def sink_cost(url: str, n: int) -> float:
    sampler = Sampler(top_n=0)
    sampler.sample()
    data = orjson.dumps(sampler.sample()[1])
    sink = PostgresSink(url)
    start = datetime.now(UTC) - timedelta(hours=1)
    counter = iter(range(10**9))

    def write() -> None:
        i = next(counter)
        sink.write([Entry(i, "bench-sink", (start + timedelta(milliseconds=i)).isoformat(), data)])

    try:
        return cpu_per_call(write, n)
    finally:
        sink.close()


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    values = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
              if line.startswith(("VmRSS", "VmHWM"))}
    return values["VmRSS"] / 1024, values["VmHWM"] / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent_rss(command: list[str], url: str, seconds: float) -> tuple[float, float, int]:
    """(VmRSS MB, VmHWM MB, snapshots stored) of an agent run for ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="pgpulse-bench-agent-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPULSE_", "COLLECTOR_", "LOG_"))}
        host = "bench-agent-" + command[-1].replace(" ", "")
        env.update(DATABASE_URL=url, PGPULSE_DATA_DIR=tmp, COLLECTOR_INTERVAL="0.05",
                   COLLECTOR_HOSTNAME=host, LOG_LEVEL="warning")
        proc = subprocess.Popen(command, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(seconds)
            rss, hwm = rss_mb(proc.pid)
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
    import psycopg

    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM system_metrics WHERE host = %s", (host,)).fetchone()[0]
    return rss, hwm, stored


def node_exporter(n: int) -> tuple[float, float, int] | None:
    """(CPU ms per scrape, VmRSS MB, bytes per scrape) of node_exporter, or None."""
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary is None:
        return None
    port = free_port()
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        for _ in range(10):
            urllib.request.urlopen(url, timeout=10).read()
        before = proc_cpu_seconds(proc.pid)
        size = 0
        for _ in range(n):
            size = len(urllib.request.urlopen(url, timeout=10).read())
        used = proc_cpu_seconds(proc.pid) - before
        rss, _ = rss_mb(proc.pid)
        return used / n * 1000, rss, size
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    procs = sum(name.isdigit() for name in os.listdir("/proc"))
    print(f"host: {os.cpu_count()} CPUs, {procs} processes; {N} snapshots per figure\n")
    off = sampler_cost(0, N)
    on = sampler_cost(5, max(100, N // 5))
    with tempfile.TemporaryDirectory(prefix="pgpulse-bench-spool-") as tmp:
        tick = tick_cost(max(100, N // 5), Path(tmp))
    size_off = len(orjson.dumps(Sampler(top_n=0).sample()[1]))
    with bench_database("pgpulse_bench_collector") as url:
        write = sink_cost(url, max(100, N // 5))
        lean = agent_rss([sys.executable, "-m", "collector"], url, 8)
        cli = agent_rss([sys.executable, "-m", "pgpulse", "collect"], url, 8)

    rows = [
        ("snapshot, top-N off", f"{off:.3f}", f"{CPU_CEILING_MS:.1f}", f"{off / CPU_CEILING_MS:.2f}"),
        ("snapshot, top-N 5", f"{on:.3f}", "-", "-"),
        ("+ JSON + spool append (top-N off)", f"{tick:.3f}", "-", "-"),
        ("postgres sink write of 1 (client)", f"{write:.3f}", "-", "-"),
    ]
    print(table(rows, ("CPU per snapshot", "ms", "ceiling ms", "ratio")))
    print(f"\nsnapshot document: {size_off} bytes of JSON (top-N off)\n")
    rss_rows = [
        ("python -m collector", f"{lean[0]:.1f}", f"{lean[1]:.1f}", str(lean[2]), f"{RSS_CEILING_MB:.0f}",
         f"{lean[0] / RSS_CEILING_MB:.2f}"),
        ("pgpulse collect", f"{cli[0]:.1f}", f"{cli[1]:.1f}", str(cli[2]), f"{RSS_CEILING_MB:.0f}",
         f"{cli[0] / RSS_CEILING_MB:.2f}"),
    ]
    print(table(rss_rows, ("agent (8 s at 50 ms, top-N 5)", "RSS MB", "peak MB", "snapshots", "ceiling MB", "ratio")))

    ne = node_exporter(N)
    print()
    if ne is None:
        print("node_exporter: not installed (apt-get install prometheus-node-exporter); no comparison")
        return
    ne_ms, ne_rss, ne_bytes = ne
    print(table(
        [
            (f"pgpulse collector, {N} snapshots (top-N off)", f"{off * N / 1000:.3f}", f"{off:.3f}", "-"),
            (f"node_exporter, {N} scrapes of /metrics", f"{ne_ms * N / 1000:.3f}", f"{ne_ms:.3f}", f"{ne_rss:.1f}"),
        ],
        ("same work", "CPU s", "ms each", "RSS MB"),
    ))
    print(f"\nratio collector / node_exporter CPU: {off / ne_ms:.2f} "
          f"(node_exporter answers {ne_bytes} bytes per scrape)")


if __name__ == "__main__":
    main()
