"""The audit log: administrative acts recorded by the CLI and the API, listed with
filters and paging, and unalterable by the application's role and by the owner."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from proxy_helpers import assert_error, new_key
from psycopg import sql

from pgpulse.cli import main
from pgpulse.store import audit


def entries(conn: psycopg.Connection, **filters) -> list[dict]:
    rows, _ = audit.list_entries(conn, audit.Filters(**filters), limit=1000)
    return rows


@pytest.fixture
def writer_url(conn, pg_server):
    """A LOGIN role in pgpulse_writer, as the application connects in the full stack."""
    name = f"pgpulse_test_{uuid.uuid4().hex[:10]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER IN ROLE pgpulse_writer").format(sql.Identifier(name)))
    conn.commit()
    yield pg_server.url(conn.info.dbname).replace(f"{pg_server.user}@", f"{name}@", 1)
    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    conn.commit()


def test_application_role_appends_and_reads_but_cannot_change(writer_url):
    with psycopg.connect(writer_url, autocommit=True) as conn:
        entry_id = audit.record(conn, audit.Actor("cli:test"), "key.create", target="key:1")
        assert [e["id"] for e in entries(conn)] == [entry_id]
        for statement in ("UPDATE audit_log SET outcome = 'failed'", "DELETE FROM audit_log",
                          "TRUNCATE audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                conn.execute(statement)
        assert entries(conn)[0]["outcome"] == "ok"


def test_even_the_owner_cannot_change_rows(conn):
    """The test connects as the superuser that owns the table: the triggers still refuse."""
    entry_id = audit.record(conn, audit.Actor("cli:test"), "key.revoke", target="key:2")
    conn.commit()
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log",
                      "TRUNCATE audit_log"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)
        conn.rollback()
    assert [(e["id"], e["actor"]) for e in entries(conn)] == [(entry_id, "cli:test")]


def test_grafana_reader_cannot_read_it(conn, pg_server):
    name = f"pgpulse_test_{uuid.uuid4().hex[:10]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE pgpulse_reader").format(sql.Identifier(name)))
    conn.commit()
    url = pg_server.url(conn.info.dbname).replace(f"{pg_server.user}@", f"{name}@", 1)
    try:
        with psycopg.connect(url, autocommit=True) as reader, \
                pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("SELECT * FROM audit_log")
    finally:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
        conn.commit()


def test_cli_keys_are_audited_and_listed(db_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["keys", "create", "grafana", "--scope", "query"]) == 0
    assert main(["keys", "revoke", "999999"]) == 1
    with psycopg.connect(db_url) as conn:
        key_id = conn.execute("SELECT max(id) FROM api_keys").fetchone()[0]
    assert main(["keys", "revoke", str(key_id)]) == 0
    capsys.readouterr()
    assert main(["audit", "--json", "--action", "key."]) == 0
    listed = json.loads(capsys.readouterr().out)["entries"]
    assert [(e["action"], e["target"], e["outcome"]) for e in listed] == [
        ("key.revoke", str(key_id), "ok"),
        ("key.revoke", "999999", "refused"),
        ("key.create", f"key:{key_id}", "ok"),
    ]
    assert all(e["actor"].startswith("cli:") and e["address"] is None for e in listed)
    assert listed[2]["details"]["scopes"] == ["query"]
    assert main(["audit", "--outcome", "refused"]) == 0
    out = capsys.readouterr().out
    assert "999999" in out and "key.create" not in out
    assert main(["audit", "--limit", "0"]) == 2


def test_api_keys_are_audited_with_key_and_address(make_app, db_url):
    app = make_app(PGPULSE_AUTH="on")
    admin = new_key(db_url, "admin")
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = "192.0.2.44"
    h = {"X-API-Key": admin}
    r = c.post("/api/keys", json={"name": "ci", "scopes": ["ingest"]}, headers=h)
    assert r.status_code == 201, r.get_data(as_text=True)
    made = r.get_json()
    assert made["key"].startswith("pgpk_") and made["scopes"] == ["ingest"]
    # The new key works, and is listed without its secret.
    assert c.post("/api/ingest", json={"metrics": []}, headers={"X-API-Key": made["key"]}).status_code == 200
    listed = c.get("/api/keys", headers=h).get_json()["keys"]
    assert made["id"] in [k["id"] for k in listed] and all("key" not in k for k in listed)
    assert c.delete(f"/api/keys/{made['id']}", headers=h).status_code == 200
    assert_error(c.delete(f"/api/keys/{made['id']}", headers=h), 404)
    assert_error(c.post("/api/keys", json={"name": "x", "scopes": ["root"]}, headers=h), 400)
    # A key cannot revoke itself (refused, and recorded so).
    admin_id = c.get("/api/audit", headers=h).get_json()["entries"][0]["actor_key_id"]
    assert_error(c.delete(f"/api/keys/{admin_id}", headers=h), 409)
    assert c.get("/api/keys", headers=h).status_code == 200, "the admin key still works"
    # Only admin keys administer.
    assert_error(c.get("/api/audit", headers={"X-API-Key": new_key(db_url, "query", "ingest")}), 403)

    page = c.get("/api/audit", headers=h).get_json()
    assert [(e["action"], e["outcome"], e["target"]) for e in page["entries"]] == [
        ("key.revoke", "refused", f"key:{admin_id}"),
        ("key.revoke", "refused", f"key:{made['id']}"),
        ("key.revoke", "ok", f"key:{made['id']}"),
        ("key.create", "ok", f"key:{made['id']}"),
    ]
    assert all(e["actor"] == f"key:{admin_id}" and e["address"] == "192.0.2.44" for e in page["entries"])
    assert page["next_before"] is None


def test_api_audit_filters_and_pages(make_app, db_url, conn):
    for i in range(5):
        audit.record(conn, audit.Actor("cli:a" if i % 2 else "cli:b"), "restore", target=f"/b/{i}",
                     outcome="ok" if i < 4 else "failed")
    conn.commit()
    c = make_app().test_client()
    first = c.get("/api/audit?limit=2").get_json()
    assert [e["target"] for e in first["entries"]] == ["/b/4", "/b/3"]
    second = c.get(f"/api/audit?limit=2&before={first['next_before']}").get_json()
    assert [e["target"] for e in second["entries"]] == ["/b/2", "/b/1"]
    third = c.get(f"/api/audit?limit=2&before={second['next_before']}").get_json()
    assert [e["target"] for e in third["entries"]] == ["/b/0"] and third["next_before"] is None
    assert [e["target"] for e in c.get("/api/audit?actor=cli:a").get_json()["entries"]] == ["/b/3", "/b/1"]
    assert [e["target"] for e in c.get("/api/audit?outcome=failed").get_json()["entries"]] == ["/b/4"]
    assert c.get("/api/audit?action=key.").get_json()["entries"] == []
    assert len(c.get("/api/audit?since=2000-01-01T00:00:00Z&until=2200-01-01T00:00:00Z")
               .get_json()["entries"]) == 5
    assert c.get("/api/audit?until=2000-01-01T00:00:00Z").get_json()["entries"] == []
    assert_error(c.get("/api/audit?outcome=maybe"), 400)
    assert_error(c.get("/api/audit?limit=0"), 400)
    assert_error(c.get("/api/audit?since=yesterday"), 400)
    assert_error(c.get("/api/audit?since=2001-01-01T00:00:00Z&until=2000-01-01T00:00:00Z"), 400)
    assert_error(c.get("/api/audit?color=red"), 400)


def test_unknown_action_or_outcome_is_refused(conn):
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.record(conn, audit.Actor("cli:x"), "drop.everything")
    with pytest.raises(ValueError, match="unknown audit outcome"):
        audit.record(conn, audit.Actor("cli:x"), "restore", outcome="meh")
