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
from pgpulse import tiers
from pgpulse.cli import main
from pgpulse.store import audit

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


def test_round_trip_restores_every_table(populated, pg_server, tmp_path, test_engine):
    before = stats(populated)
    assert before["samples"]["rows"] > 2000 and before["system_metrics"]["rows"] > 400
    if test_engine == "portable":
        assert before["pgpulse_samples_5m_store"]["rows"] > 0, "the rollups ran"
    lines: list[str] = []

    manifest = backups.backup(populated, tmp_path / "b", progress=lines.append)

    assert manifest.tables == before
    on_disk = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert on_disk["tables"] == before and on_disk["engine"] == test_engine
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
        assert conn.execute("SELECT value FROM pgpulse_meta WHERE key = 'engine'").fetchone()[0] == test_engine
        assert conn.execute("SELECT count(*) FROM system_metrics_5m").fetchone()[0] > 0
        assert conn.execute(
            "SELECT has_table_privilege('pgpulse_reader', 'system_metrics_1h', 'SELECT'), "
            "has_table_privilege('pgpulse_reader', 'api_keys', 'SELECT'), "
            "has_table_privilege('pgpulse_writer', 'samples', 'INSERT')"
        ).fetchone() == (True, False, True)
        if test_engine == "portable":
            conn.execute("SELECT * FROM pgpulse_refresh_tiers(INTERVAL '1 hour', INTERVAL '14 days', "
                         "INTERVAL '90 days')")
            partitions = conn.execute(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'samples'::regclass").fetchone()[0]
            assert partitions > 1
        else:
            # The aggregates belong to pgpulse_tiers again (pg_restore --no-owner gave
            # them to the restorer), so the writer's `tiers refresh` works.
            owners = {r[0] for r in conn.execute(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = ANY(%s)",
                (list(tiers.CAGGS),)).fetchall()}
            assert owners == {tiers.TIERS_ROLE}
            assert conn.execute("SELECT pg_has_role('pgpulse_writer', %s, 'SET')",
                                (tiers.TIERS_ROLE,)).fetchone()[0]
            assert conn.execute(
                "SELECT count(*) FROM timescaledb_information.jobs WHERE job_id >= 1000").fetchone()[0] >= 12


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
    # Both attempts are in the audit log: the refused one was recorded in the database
    # that the forced restore then replaced, so only the restore itself remains.
    with psycopg.connect(populated) as conn:
        logged, _ = audit.list_entries(conn, audit.Filters(action="restore"))
    assert [(e["outcome"], e["target"], e["details"]["force"]) for e in logged] == [
        ("ok", str(written.resolve()), True)]
    assert logged[0]["actor"].startswith("cli:")


def test_tools_match_the_server_major(populated):
    with psycopg.connect(populated) as conn:
        major = backups.server_major(conn)
    tools = backups.find_tools(major)
    assert tools.major == major
    assert backups.find_tools(major - 1).major >= major - 1  # a newer pg_dump reads older servers
    with pytest.raises(backups.BackupError, match="no pg_dump/pg_restore for PostgreSQL 99"):
        backups.find_tools(99)
    assert backups.tool_major(Path("/nonexistent")) is None


# -- every check before the target is touched (issue 9, items 2 and 3) -------------------


def edit_manifest(backup_dir: Path, change) -> None:
    path = backup_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["extensions"].update(pg_trgm="99.0"),
         r"made with pg_trgm 99\.0; this server offers (1\.\d+|no version of it)"),
        (lambda m: m["extensions"].update(no_such_extension="1.0"),
         "no_such_extension 1.0; this server offers no version of it"),
        (lambda m: m.update(pg_dump_major=99), "no pg_dump/pg_restore for PostgreSQL 99"),
    ],
)
def test_force_makes_every_check_before_dropping(populated, tmp_path, change, message):
    backups.backup(populated, tmp_path / "b")
    edit_manifest(tmp_path / "b", change)
    before = stats(populated)
    with pytest.raises(backups.BackupError, match=message) as err:
        backups.restore(populated, tmp_path / "b", force=True)
    assert stats(populated) == before, "the target was touched before a check that failed"
    assert "incomplete" not in str(err.value)


def test_an_archive_damaged_inside_is_found_by_a_full_read_first(populated, tmp_path):
    backups.backup(populated, tmp_path / "b")
    dump = tmp_path / "b" / backups.DUMP
    data = bytearray(dump.read_bytes())
    # Spoil compressed table data near the end (past the table of contents), and make
    # the manifest's SHA-256 agree, as a damaged copy of a damaged archive would.
    for i in range(len(data) - 4000, len(data) - 3000):
        data[i] ^= 0x5A
    dump.write_bytes(bytes(data))
    edit_manifest(tmp_path / "b", lambda m: m["dump"].update(sha256=backups._sha256(dump)))
    before = stats(populated)
    with pytest.raises(backups.BackupError, match="damaged; nothing was changed"):
        backups.restore(populated, tmp_path / "b", force=True)
    assert stats(populated) == before


def test_not_enough_disk_space_is_found_before_dropping(populated, tmp_path):
    with psycopg.connect(populated) as conn:
        if backups.free_disk_bytes(conn) is None:
            pytest.skip("the server's disk is not visible from this test (remote server)")
    backups.backup(populated, tmp_path / "b")
    edit_manifest(tmp_path / "b", lambda m: m.update(database_bytes=10**18))
    before = stats(populated)
    with pytest.raises(backups.BackupError, match="not enough free disk space"):
        backups.restore(populated, tmp_path / "b", force=True)
    assert stats(populated) == before


def test_a_restore_that_fails_part_way_says_so_and_how_to_retry(populated, pg_server, tmp_path):
    backups.backup(populated, tmp_path / "b")
    before = stats(populated)
    wipe(pg_server, populated)
    with psycopg.connect(populated, autocommit=True) as conn:
        # Not a relation, so the target counts as empty; pg_restore then fails on the
        # table of that name, after creating those it restores first.
        conn.execute("CREATE DOMAIN system_metrics AS integer")
    with pytest.raises(backups.BackupError) as err:
        backups.restore(populated, tmp_path / "b")
    message = str(err.value)
    assert "system_metrics" in message
    assert f"database {psycopg.conninfo.conninfo_to_dict(populated)['dbname']} is now incomplete" in message
    assert f"pgpulse restore --force {tmp_path / 'b'}" in message

    backups.restore(populated, tmp_path / "b", force=True)  # the retry it names
    assert stats(populated) == before


def test_restore_refuses_while_a_proxy_is_connected(populated, tmp_path, make_app):
    from polling import wait_for

    from proxy import close_app

    backups.backup(populated, tmp_path / "b")
    app = make_app()
    c = app.test_client()
    ingest = {"metrics": [{"name": "after_backup", "labels": {"k": "v"}, "value": 7}]}
    assert c.post("/api/ingest", json=ingest).status_code == 200

    def proxy_sessions() -> list[str]:
        with psycopg.connect(populated) as conn:
            return [s for s in backups.pgpulse_sessions(conn) if s.startswith("pgpulse-proxy")]

    wait_for(proxy_sessions, 60, "the proxy's connections")
    before = stats(populated)
    with pytest.raises(backups.BackupError,
                       match=r"pgpulse-proxy from 127\.0\.0\.1 port \d+ \(server pid \d+") as err:
        backups.restore(populated, tmp_path / "b", force=True)
    assert "nothing was changed" in str(err.value)
    assert stats(populated) == before
    # The running proxy goes on writing into the database its cache matches.
    r = c.get("/api/query", query_string={"query": "after_backup", "agg": "last", "step": "1m"})
    assert r.status_code == 200 and r.json["series"][0]["labels"] == {"k": "v"}

    close_app(app)
    wait_for(lambda: not proxy_sessions(), 60, "the proxy's connections to end")
    manifest = backups.restore(populated, tmp_path / "b", force=True)
    assert stats(populated) == manifest.tables

    # A proxy started after the restore writes and reads what the backup holds.
    c = make_app().test_client()
    assert c.post("/api/ingest", json={"metrics": [
        {"name": "after_restore", "labels": {"k": "w"}, "value": 3}]}).status_code == 200
    r = c.get("/api/query", query_string={"query": "after_restore", "agg": "last", "step": "1m"})
    assert r.status_code == 200 and r.json["series"][0]["labels"] == {"k": "w"}
    assert c.get("/api/query", query_string={"query": "after_backup"}).json["series"] == []
    with psycopg.connect(populated) as conn:
        orphans = conn.execute(
            "SELECT count(*) FROM samples s WHERE NOT EXISTS "
            "(SELECT 1 FROM series r WHERE r.id = s.series_id)").fetchone()[0]
    assert orphans == 0
