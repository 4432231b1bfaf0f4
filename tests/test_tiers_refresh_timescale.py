"""`pgpulse tiers refresh` on a real TimescaleDB while another refresh holds the window.

TimescaleDB refuses a refresh whose window overlaps one in progress (a policy job's,
say) with "could not refresh continuous aggregate ... due to a concurrent refresh".
It knows refreshes in progress from its catalog table
``continuous_aggs_jobs_refresh_ranges`` (window and backend pid). These tests put a
row there for a live session of their own, as a running refresh would, so the
overlap is there for exactly as long as the test wants. Real server only (PGlite
has one session).
"""

from __future__ import annotations

import psycopg
import pytest

from pgpulse import tiers
from pgpulse.cli import main

pytestmark = pytest.mark.engine("timescale")

HOLD = """
INSERT INTO _timescaledb_catalog.continuous_aggs_jobs_refresh_ranges
    (materialization_id, start_range, end_range, pid, job_id, created_at)
SELECT mat_hypertable_id, -9223372036854775808, 9223372036854775807, pg_backend_pid(), -1, now()
FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = 'samples_5m'
"""
RELEASE = "DELETE FROM _timescaledb_catalog.continuous_aggs_jobs_refresh_ranges WHERE job_id = -1"


@pytest.fixture
def holder(db_url):
    """A session that 'refreshes' all of samples_5m until released."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
                     "WHERE job_id >= 1000")
        conn.execute(HOLD)
        yield conn
        conn.execute(RELEASE)


def test_refresh_waits_for_a_concurrent_refresh_and_then_runs(db_url, holder, monkeypatch, capsys):
    waits = []

    def sleep(seconds: float) -> None:
        # The first retry finds the window held; the concurrent refresh ends then.
        waits.append(seconds)
        holder.execute(RELEASE)

    monkeypatch.setattr(tiers.time, "sleep", sleep)
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["tiers", "refresh"]) == 0
    assert len(waits) == 1
    assert "samples_5m" in capsys.readouterr().out


def test_a_refresh_still_held_after_the_retry_period_fails_in_one_line(db_url, holder, monkeypatch, capsys):
    waits = []
    monkeypatch.setattr(tiers.time, "sleep", waits.append)
    # Each pause counts against the deadline: the retries stop once it has passed.
    clock = iter(range(0, 10_000, 30))
    monkeypatch.setattr(tiers.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["tiers", "refresh"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pgpulse: database error: ") and "concurrent refresh" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert waits, "it retried before giving up"
