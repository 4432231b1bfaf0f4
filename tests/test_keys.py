"""``pgpulse keys create|list|revoke`` against the real PostgreSQL of the suite."""

from __future__ import annotations

import pytest

from pgpulse import cli


@pytest.fixture
def env(db_url, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return db_url


def test_create_list_revoke(env, capsys, make_app, conn):
    assert cli.main(["keys", "create", "grafana", "--scope", "query"]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith("pgpk_") and len(key) > 40
    assert "shown once" in out.err
    assert conn.execute("SELECT count(*) FROM api_keys WHERE key_hash <> %s", (key,)).fetchone()[0] == 1

    c = make_app(PGPULSE_AUTH="on", PROXY_KEY_CACHE_SECONDS="0").test_client()
    assert c.get("/api/labels", headers={"Authorization": f"Bearer {key}"}).status_code == 200

    assert cli.main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "grafana" in listing and key[:13] in listing and key not in listing

    assert cli.main(["keys", "revoke", key[:13]]) == 0
    capsys.readouterr()
    assert c.get("/api/labels", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert cli.main(["keys", "revoke", key[:13]]) == 1
    assert cli.main(["keys", "list", "--all", "--json"]) == 0
    assert '"revoked_at": null' not in capsys.readouterr().out


def test_bad_scope_is_refused(env, capsys):
    with pytest.raises(SystemExit):
        cli.main(["keys", "create", "x", "--scope", "root"])
