"""Throwaway PostgreSQL clusters made by the test itself from Debian's PostgreSQL 15
binaries (``initdb``, ``pg_ctl``, ``pg_basebackup``): a primary and its streaming
replica for the read-replica tests.

Each cluster listens on a free loopback port with trust authentication and keeps its
socket in its own directory. As root (a container), the server runs as the
``postgres`` user, which PostgreSQL requires, in a directory that user owns.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from polling import wait_for

BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _run(*args: str) -> None:
    out = subprocess.run([*_as_server_user(), *args], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({out.returncode}): {out.stderr or out.stdout}")


class Cluster:
    """One PostgreSQL server under ``base`` on ``port``."""

    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.port = port
        self.data = base / "data"
        self.log = base / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def init(self) -> None:
        _run(str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        options = (f"-c port={self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.base} -c wal_level=replica "
                   "-c max_wal_senders=4 -c hot_standby=on -c fsync=off")
        _run(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
             "-w", "-t", "120", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            _run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "120", "stop")

    def replica(self, base: Path) -> Cluster:
        """A streaming replica of this server (``pg_basebackup -R``), started."""
        replica = Cluster(base, free_port())
        _run(str(BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-D", str(replica.data), "-R", "-X", "stream", "--no-sync")
        replica.start()
        return replica


def workdir() -> Path:
    """A directory the server's user can reach (pytest's own tmp is root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="pgpulse-cluster-"))
    base.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    return base


def make_subdir(base: Path, name: str) -> Path:
    path = base / name
    path.mkdir()
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return path


def wait_replayed(primary_conn, replica_conn, timeout: float = 120) -> None:
    """Until the replica has replayed everything the primary wrote so far."""
    (lsn,) = primary_conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    wait_for(lambda: replica_conn.execute(
        "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0],
        timeout, "the replica to replay the primary's writes")
