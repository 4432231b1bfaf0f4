"""The collector's on-disk spool: durable on append, oldest first, bounded with a
drop counter, one owner at a time, and a corrupt file does not stop collection."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from collector.spool import FILE, Spool
from pgpulse.config import SettingsError


def stamp(i: int) -> str:
    return f"2026-01-01T00:00:{i:02d}+00:00"


def test_append_oldest_delete(tmp_path):
    spool = Spool(tmp_path, max_rows=100)
    for i in range(5):
        assert spool.append("h", stamp(i), b'{"n": %d}' % i) == 0
    assert len(spool) == 5
    batch = spool.oldest(3)
    assert [e.time for e in batch] == [stamp(0), stamp(1), stamp(2)]
    assert batch[0].host == "h" and batch[0].data == b'{"n": 0}'
    spool.delete(e.id for e in batch)
    assert len(spool) == 2
    assert [e.time for e in spool.oldest(10)] == [stamp(3), stamp(4)]
    spool.close()


def test_same_host_and_time_is_kept_once(tmp_path):
    spool = Spool(tmp_path, max_rows=100)
    spool.append("h", stamp(1), b"{}")
    spool.append("h", stamp(1), b"{}")
    spool.append("other", stamp(1), b"{}")
    assert len(spool) == 2
    spool.close()


def test_bound_drops_oldest_and_counts_durably(tmp_path, caplog):
    spool = Spool(tmp_path, max_rows=3)
    dropped = [spool.append("h", stamp(i), b"{}") for i in range(7)]
    assert dropped == [0, 0, 0, 1, 1, 1, 1]
    assert len(spool) == 3
    assert [e.time for e in spool.oldest(10)] == [stamp(4), stamp(5), stamp(6)]
    assert spool.dropped == 4
    assert "spool full" in caplog.text
    spool.close()
    again = Spool(tmp_path, max_rows=3)
    assert again.dropped == 4 and len(again) == 3
    again.close()


def test_rejected_counter(tmp_path):
    spool = Spool(tmp_path, max_rows=10)
    spool.append("h", stamp(1), b"{}")
    spool.delete([spool.oldest(1)[0].id], rejected=True)
    assert spool.rejected == 1 and len(spool) == 0
    spool.close()


def test_wal_and_full_sync(tmp_path):
    spool = Spool(tmp_path, max_rows=10)
    spool.close()
    db = sqlite3.connect(tmp_path / FILE)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    # synchronous is per connection: check the spool's own.
    spool = Spool(tmp_path, max_rows=10)
    assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    spool.close()


def test_appended_snapshot_survives_a_kill(tmp_path):
    # The writer dies (SIGKILL) right after append() returned: nothing buffered
    # in the process may be needed to find the snapshot again.
    script = textwrap.dedent(f"""
        import os, signal
        from collector.spool import Spool
        spool = Spool({str(tmp_path)!r}, max_rows=10)
        spool.append("h", "2026-01-01T00:00:01+00:00", b'{{"kept": true}}')
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9
    spool = Spool(tmp_path, max_rows=10)
    assert [e.data for e in spool.oldest(10)] == [b'{"kept": true}']
    spool.close()


def test_one_agent_per_spool(tmp_path):
    first = Spool(tmp_path, max_rows=10)
    with pytest.raises(SettingsError, match="COLLECTOR_SPOOL_DIR.*another collector"):
        Spool(tmp_path, max_rows=10)
    first.close()
    Spool(tmp_path, max_rows=10).close()  # free again


def test_corrupt_spool_is_moved_aside(tmp_path, caplog):
    (tmp_path / FILE).write_bytes(b"this is not a sqlite database" * 100)
    spool = Spool(tmp_path, max_rows=10)
    spool.append("h", stamp(1), b"{}")
    assert len(spool) == 1
    assert list(tmp_path.glob(FILE + ".corrupt-*"))
    assert "unreadable" in caplog.text
    spool.close()


def test_agent_reports_the_drop_counter_in_its_snapshots(tmp_path):
    import json

    from fake_host import FakeHost

    from collector.agent import Agent
    from collector.snapshot import Sampler

    class Nowhere:  # the sink is never reached in this test: ticks only
        name = "nowhere"

        def describe(self) -> str:
            return "nowhere"

        def close(self) -> None:
            pass

    host = FakeHost(tmp_path / "host").write()
    spool = Spool(tmp_path / "spool", max_rows=3)
    agent = Agent(Sampler(host.source(), top_n=0), spool, Nowhere(), host="h", interval=10)
    for _ in range(5):
        agent.tick()
    assert agent.ticks == 5 and len(spool) == 3 and spool.dropped == 2
    newest = json.loads(spool.oldest(3)[-1].data)
    assert newest["collector"]["spool"] == {"waiting": 3, "dropped": 1, "rejected": 0}
    spool.close()
