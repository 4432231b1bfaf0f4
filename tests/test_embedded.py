"""The embedded PostgreSQL (pgserver) under a data directory of pgpulse's."""

from __future__ import annotations

import subprocess
import sys

START_AND_QUERY = """
import sys
import psycopg
from pgpulse.embedded import EmbeddedPostgres

embedded = EmbeddedPostgres(sys.argv[1])
with psycopg.connect(embedded.start()) as conn:
    print(conn.execute("SELECT 1").fetchone()[0])
embedded.stop()
"""


def test_processes_starting_it_at_once_share_one_server(tmp_path):
    """`pgpulse up` starting the server while `pgpulse status` joins it: both first
    starts find no data directory; one makes it, the other waits and joins."""
    procs = [subprocess.Popen([sys.executable, "-c", START_AND_QUERY, str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == "1"
    assert (tmp_path / "pgdata" / "PG_VERSION").is_file()
