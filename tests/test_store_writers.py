"""One writer per table family: the source tree is scanned for the SQL that writes
(INSERT INTO, UPDATE ... SET, DELETE FROM, COPY ... FROM, TRUNCATE) and each table
of the store's families must be written by its store module alone.

Statements whose table name is composed at run time (``psycopg.sql.Identifier``:
the tiers' rollups and retention) are not seen by the scan; the migrations, which
own the schema, are left out.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pgpulse", "proxy", "collector", "etl")
SKIP = ("pgpulse/migrations/",)

# Table -> the one module that writes it.
OWNERS = {
    "samples": "pgpulse/store/samples.py",
    "series": "pgpulse/store/series.py",
    "system_metrics": "pgpulse/store/snapshots.py",
    "ingest_idempotency": "pgpulse/store/idempotency.py",
    "api_keys": "pgpulse/store/keys.py",
    "reading_analytics": "pgpulse/store/readings.py",
    "etl_runs": "pgpulse/store/etl_runs.py",
    "etl_rejects": "pgpulse/store/etl_runs.py",
    "stale_markers": "pgpulse/store/staleness.py",
    "metric_metadata": "pgpulse/store/metadata.py",
    "audit_log": "pgpulse/store/audit.py",
    "tenants": "pgpulse/store/tenants.py",
}

_NAME = r"([a-z_][a-z0-9_]*)"
WRITES = re.compile(
    rf"\bINSERT\s+INTO\s+{_NAME}"
    rf"|\bUPDATE\s+(?:ONLY\s+)?{_NAME}(?:\s+(?:AS\s+)?[a-z_]+)?\s+SET\b"
    rf"|\bDELETE\s+FROM\s+(?:ONLY\s+)?{_NAME}"
    rf"|\bCOPY\s+{_NAME}\s*(?:\([^)]*\)\s*)?FROM\b"
    rf"|\bTRUNCATE\s+(?:TABLE\s+)?{_NAME}"
)


def writers() -> dict[str, set[str]]:
    """Table name -> the source files whose SQL writes it."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(SKIP):
                continue
            for match in WRITES.finditer(path.read_text()):
                table = next(g for g in match.groups() if g)
                found.setdefault(table, set()).add(rel)
    return found


def test_the_scan_sees_the_writes_it_looks_for():
    text = ("INSERT INTO a (x) ... UPDATE b AS r SET ... DELETE FROM c WHERE ... "
            "COPY d (x, y) FROM STDIN ... TRUNCATE e ... COPY into a temp table ... UPDATE to it")
    assert [next(g for g in m.groups() if g) for m in WRITES.finditer(text)] == list("abcde")


def test_each_store_table_has_its_store_module_as_only_writer():
    found = writers()
    for table, owner in OWNERS.items():
        assert found.get(table) == {owner}, f"{table} is written by {sorted(found.get(table, ()))}"


def test_every_table_has_one_writing_module():
    several = {table: sorted(files) for table, files in writers().items() if len(files) > 1}
    assert several == {}
