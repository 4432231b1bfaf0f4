"""Backup and restore (``pgpulse backup`` / ``pgpulse restore``) against the real
PostgreSQL server, in the portable engine mode: a populated database is dumped,
wiped (dropped and re-created), restored, and compared table by table."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgpulse import backup as backups
from pgpulse.cli import main

POPULATE = """
INSERT INTO series (name, labels, type)
SELECT 'metric_' || (i % 4), jsonb_build_object('host', 'h' || i, 'zone', 'z' || (i % 3)),
       CASE WHEN i % 4 = 0 THEN 'counter' ELSE 'gauge' END
FROM generate_series(1, 12) AS i;

INSERT INTO samples (time, series_id, value)
SELECT t, s.id, s.id * 100 + extract(epoch FROM t)::bigint % 997 / 7.0
FROM generate_series(now() - INTERVAL '3 hours', now(), INTERVAL '1 minute') AS t
CROSS JOIN series s;

-- Some rows older than the daily partitions made ahead: they land in the default one.
INSERT INTO samples (time, series_id, value)
SELECT now() - INTERVAL '5 days' + g * INTERVAL '1 hour', (SELECT min(id) FROM series), g
FROM generate_series(1, 24) AS g;

INSERT INTO system_metrics (time, host, data)
SELECT t, h, jsonb_build_object(
    'version', 1,
    'cpu', jsonb_build_object('percent', 10 + extract(minute FROM t), 'iowait', 0.5),
    'memory', jsonb_build_object('percent', 42.25),
    'filesystems', jsonb_build_object('/', jsonb_build_object('percent', 61.5)),
    'note', 'quote '' and unicode é')
FROM generate_series(now() - INTERVAL '2 hours', now(), INTERVAL '30 seconds') AS t
CROSS JOIN (VALUES ('alpha'), ('beta')) AS hosts (h);

INSERT INTO etl_runs (id, started_at, finished_at, status, trigger, claimed, loaded, rejected, error)
VALUES ('00000000-0000-0000-0000-000000000001', now() - INTERVAL '1 hour', now() - INTERVAL '59 minutes',
        'succeeded', 'schedule', 10, 9, 1, NULL),
       ('00000000-0000-0000-0000-000000000002', now() - INTERVAL '10 minutes', now() - INTERVAL '9 minutes',
        'failed', 'manual', 0, 0, 0, 'mongo unreachable');

INSERT INTO reading_analytics (mongo_id, reading_time, source_id, run_id, payload)
SELECT 'm' || i, now() - i * INTERVAL '1 minute', 'sensor-' || (i % 5),
       '00000000-0000-0000-0000-000000000001', jsonb_build_object('value', i * 1.5, 'unit', 'C')
FROM generate_series(1, 50) AS i;

INSERT INTO etl_rejects (run_id, mongo_id, reason, document)
VALUES ('00000000-0000-0000-0000-000000000001', 'bad1', 'missing timestamp', '{"_id": "bad1"}');

INSERT INTO api_keys (name, prefix, key_hash, scopes)
VALUES ('ci', 'pp_abc', 'sha256:deadbeef', ARRAY['ingest', 'query']);

SELECT * FROM pgpulse_refresh_tiers(INTERVAL '1 hour', INTERVAL '14 days', INTERVAL '90 days');
"""


@pytest.fixture
def populated(db_url: str) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(POPULATE)
    return db_url


def stats(url: str) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        return backups.table_stats(conn)


def wipe(pg_server, url: str) -> None:
    """Drop the database of ``url`` and create it again, empty."""
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def test_round_trip_restores_every_table(populated, pg_server, tmp_path):
    before = stats(populated)
    assert before["samples"]["rows"] > 2000 and before["system_metrics"]["rows"] > 400
    assert before["pgpulse_samples_5m_store"]["rows"] > 0, "the rollups ran"
    lines: list[str] = []

    manifest = backups.backup(populated, tmp_path / "b", progress=lines.append)

    assert manifest.tables == before
    on_disk = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert on_disk["tables"] == before and on_disk["engine"] == "portable"
    assert on_disk["schema_revision"] and on_disk["dump"]["sha256"]
    assert any(line.startswith("dump [") for line in lines), lines

    wipe(pg_server, populated)
    assert stats(populated) == {}

    lines.clear()
    backups.restore(populated, tmp_path / "b", progress=lines.append)

    assert stats(populated) == before
    assert any(line.startswith("restore [1/") for line in lines), lines
    with psycopg.connect(populated, autocommit=True) as conn:
        # Beyond the tables: views, functions, partitions and grants came back.
        assert conn.execute("SELECT value FROM pgpulse_meta WHERE key = 'engine'").fetchone()[0] == "portable"
        assert conn.execute("SELECT count(*) FROM system_metrics_5m").fetchone()[0] > 0
        assert conn.execute(
            "SELECT has_table_privilege('pgpulse_reader', 'system_metrics_1h', 'SELECT'), "
            "has_table_privilege('pgpulse_reader', 'api_keys', 'SELECT'), "
            "has_table_privilege('pgpulse_writer', 'samples', 'INSERT')"
        ).fetchone() == (True, False, True)
        conn.execute("SELECT * FROM pgpulse_refresh_tiers(INTERVAL '1 hour', INTERVAL '14 days', INTERVAL '90 days')")
        partitions = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'samples'::regclass").fetchone()[0]
        assert partitions > 1


def test_refuses_a_database_that_is_not_empty(populated, tmp_path):
    backups.backup(populated, tmp_path / "b")
    with psycopg.connect(populated, autocommit=True) as conn:
        conn.execute("INSERT INTO series (name) VALUES ('added_after_backup')")
    before = stats(populated)

    with pytest.raises(backups.BackupError, match="not empty.*--force"):
        backups.restore(populated, tmp_path / "b")
    assert stats(populated) == before, "a refused restore changes nothing"

    manifest = backups.restore(populated, tmp_path / "b", force=True)
    after = stats(populated)
    assert after == manifest.tables
    assert after["series"]["rows"] == before["series"]["rows"] - 1


def test_missing_manifest(tmp_path):
    with pytest.raises(backups.BackupError, match="manifest.json is missing"):
        backups.load_manifest(tmp_path)
    with pytest.raises(backups.BackupError, match="not a directory"):
        backups.load_manifest(tmp_path / "nope")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m: "{not json", "not valid JSON"),
        (lambda m: json.dumps([1, 2]), "expected a JSON object"),
        (lambda m: json.dumps({**m, "format": 99}), "unknown backup format 99"),
        (lambda m: json.dumps({k: v for k, v in m.items() if k != "tables"}), "missing or invalid tables"),
        (lambda m: json.dumps({**m, "tables": {"series": {"rows": "many"}}}), "missing or invalid tables"),
        (lambda m: json.dumps({**m, "dump": {"file": "../../etc/passwd", "sha256": "x"}}), "plain file name"),
    ],
)
def test_damaged_manifest_is_refused(populated, tmp_path, damage, message):
    backups.backup(populated, tmp_path / "b")
    path = tmp_path / "b" / "manifest.json"
    path.write_text(damage(json.loads(path.read_text())))
    with pytest.raises(backups.BackupError, match=message):
        backups.restore(populated, tmp_path / "b", force=True)
    with psycopg.connect(populated, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM series").fetchone()[0] == 12, "nothing was touched"


def test_damaged_or_missing_archive_is_refused(populated, tmp_path):
    backups.backup(populated, tmp_path / "b")
    dump = tmp_path / "b" / backups.DUMP
    with dump.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(backups.BackupError, match="SHA-256"):
        backups.restore(populated, tmp_path / "b", force=True)
    dump.unlink()
    with pytest.raises(backups.BackupError, match="missing: the backup is incomplete"):
        backups.restore(populated, tmp_path / "b", force=True)


def test_restore_detects_contents_that_differ_from_the_manifest(populated, pg_server, tmp_path):
    backups.backup(populated, tmp_path / "b")
    path = tmp_path / "b" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["tables"]["etl_runs"]["checksum"] = "0" * 32
    manifest["tables"]["series"]["rows"] += 1
    path.write_text(json.dumps(manifest))
    wipe(pg_server, populated)
    with pytest.raises(backups.BackupError) as err:
        backups.restore(populated, tmp_path / "b")
    assert "etl_runs: same row count, different contents" in str(err.value)
    assert "series: 12 rows, the backup has 13" in str(err.value)


def test_backup_refuses_to_overwrite(populated, tmp_path):
    backups.backup(populated, tmp_path / "b")
    with pytest.raises(backups.BackupError, match="already holds a backup"):
        backups.backup(populated, tmp_path / "b")


def test_cli_backup_and_restore(populated, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", populated)
    monkeypatch.chdir(tmp_path)  # no stray .env; default output under ./backups

    assert main(["backup"]) == 0
    out, err = capsys.readouterr()
    assert "backup written to backups/" in out and "tables" in out
    assert "dump [" in err and "counting rows and checksums" in err
    written = backups.latest_backup(tmp_path / "backups")
    assert written is not None

    assert main(["restore", str(written)]) == 1
    out, err = capsys.readouterr()
    assert "restore failed" in err and "--force" in err

    assert main(["restore", "--force"]) == 0  # the newest backup under ./backups
    out, err = capsys.readouterr()
    assert "every table matches" in out
    assert "verifying row counts and checksums" in err


def test_tools_match_the_server_major(populated):
    with psycopg.connect(populated) as conn:
        major = backups.server_major(conn)
    tools = backups.find_tools(major)
    assert tools.major == major
    assert backups.find_tools(major - 1).major >= major - 1  # a newer pg_dump reads older servers
    with pytest.raises(backups.BackupError, match="no pg_dump/pg_restore for PostgreSQL 99"):
        backups.find_tools(99)
    assert backups.tool_major(Path("/nonexistent")) is None
