"""The servers a benchmark measures, started the same way by every bench script.

* :class:`VictoriaMetrics`: Debian's ``victoria-metrics`` (BENCH_VICTORIA_METRICS to
  use another binary) on a free loopback port, its data under a temporary directory
  removed when it stops.
* :class:`Proxy`: ``pgpulse proxy`` (gunicorn) on a free loopback port against a
  database URL, with the CPU time of each of its workers.
* :class:`Prometheus`: Debian's Prometheus over backfilled blocks (the PromQL
  oracle's, tests/promql_oracle.py), re-exported so the scripts have one place.

Each is a context manager; leaving it stops the process (SIGTERM, then SIGKILL after
30 s). ``cpu_seconds()`` is user + system CPU of the server's processes, read from
/proc through psutil: divided by the samples sent between two readings it gives the
server CPU per sample, the cost a peer comparison is fair on.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from promql_oracle import Prometheus  # noqa: E402, F401 - re-exported for the scripts

VICTORIA = os.environ.get("BENCH_VICTORIA_METRICS", "/usr/bin/victoria-metrics")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, timeout: float, proc: subprocess.Popen | None = None,
              what: str = "server") -> None:
    """Until GET ``path`` answers 200 on the loopback ``port`` (SystemExit after
    ``timeout`` seconds, or at once when ``proc`` has exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode} before it was ready")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} did not answer GET {path} within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def _cpu(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return t.user + t.system


class _Server:
    proc: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def processes(self) -> list[psutil.Process]:
        parent = psutil.Process(self.proc.pid)
        return [parent, *parent.children(recursive=True)]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server's processes so far."""
        return sum(_cpu(p) for p in self.processes())

    def stop(self) -> None:
        stop(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class VictoriaMetrics(_Server):
    """``victoria-metrics`` on a loopback port, data in a temporary directory."""

    def __init__(self, *flags: str, timeout: float = 60) -> None:
        if not shutil.which(VICTORIA):
            raise SystemExit(f"{VICTORIA} not found: apt-get install victoria-metrics "
                             "(or set BENCH_VICTORIA_METRICS)")
        self.data_dir = tempfile.mkdtemp(prefix="pgpulse-bench-vm-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [VICTORIA, f"-storageDataPath={self.data_dir}", f"-httpListenAddr=127.0.0.1:{self.port}",
             "-retentionPeriod=100y", "-loggerLevel=ERROR", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(self.port, "/health", timeout, self.proc, "victoria-metrics")
        except SystemExit:
            self.stop()
            raise

    def get(self, path: str) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request("GET", path)
        return conn.getresponse().read()

    def flush(self) -> None:
        """Make what was written searchable (and counted on disk) now."""
        self.get("/internal/force_flush")

    def rows_inserted(self, kind: str) -> int:
        """``vm_rows_inserted_total{type=kind}`` (influx, promremotewrite, vmimport ...)."""
        prefix = f'vm_rows_inserted_total{{type="{kind}"}}'
        return int(sum(float(line.rsplit(" ", 1)[1]) for line in self.get("/metrics").decode().splitlines()
                       if line.startswith(prefix)))

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class Proxy(_Server):
    """``pgpulse proxy`` (gunicorn, ``workers`` x ``threads``) on a loopback port."""

    def __init__(self, database_url: str, workers: int = 3, threads: int = 1,
                 timeout: float = 300, root: Path = ROOT, **env: str) -> None:
        """``root``: the checkout whose pgpulse runs (``python -m`` imports from the
        working directory first), e.g. an export of an earlier commit to compare."""
        self.port = free_port()
        environ = {**os.environ, "DATABASE_URL": database_url, "PGPULSE_AUTH": "off",
                   "PORT": str(self.port), "PROXY_HOST": "127.0.0.1", "LOG_LEVEL": "warning",
                   "PROXY_MAX_SERIES": "1000000", **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "pgpulse", "proxy", "--workers",
                                      str(workers), "--threads", str(threads)], env=environ, cwd=root)
        try:
            # gunicorn's workers can take minutes to start on a loaded machine.
            wait_http(self.port, "/ready", timeout, self.proc, "pgpulse proxy")
        except SystemExit:
            self.stop()
            raise

    def worker_cpu(self) -> dict[int, float]:
        """CPU seconds of each gunicorn worker so far, by pid (the arbiter left out)."""
        return {p.pid: _cpu(p) for p in psutil.Process(self.proc.pid).children(recursive=True)}
