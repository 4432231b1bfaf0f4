"""API keys on the proxy: 401, 403, keys in the query string, revocation (real PostgreSQL)."""

from __future__ import annotations

import base64

import psycopg
from proxy_helpers import assert_error, new_key

from pgpulse.store.keys import hash_key, list_keys, revoke_key


def test_missing_and_bad_keys_get_401(make_app):
    c = make_app(PGPULSE_AUTH="on").test_client()
    body = assert_error(c.get("/api/series"), 401)
    assert "Authorization" in body["error"]
    assert assert_error(c.get("/api/series", headers={"X-API-Key": "pgpk_nope"}), 401)
    r = c.get("/api/series", headers={"Authorization": "Basic dXNlcjpwYXNz"})  # user:pass, no such key
    assert_error(r, 401)
    assert r.headers["WWW-Authenticate"] == "Bearer"
    for header in ("Digest abc", "Bearer ", "Basic !!!", "Basic " + _b64("no-colon"), "Basic " + _b64("user:")):
        body = assert_error(c.get("/api/series", headers={"Authorization": header}), 401)
        assert "Authorization" in body["error"] or "Basic" in body["error"], header


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_basic_and_token_schemes_carry_the_key(make_app, db_url):
    """Prometheus's basic_auth (key as the password, any user name) and the
    'Token <key>' of InfluxDB 2.x clients and Telegraf authenticate like Bearer."""
    c = make_app(PGPULSE_AUTH="on").test_client()
    key = new_key(db_url, "query")
    for header in (f"Basic {_b64('prometheus:' + key)}", f"Basic {_b64(':' + key)}", f"Token {key}",
                   f"bearer {key}"):
        assert c.get("/api/series", headers={"Authorization": header}).status_code == 200, header
    assert_error(c.get("/api/series", headers={"Authorization": f"Basic {_b64(key + ':x')}"}), 401)


def test_scopes_and_admin(make_app, db_url):
    c = make_app(PGPULSE_AUTH="on").test_client()
    ingest = new_key(db_url, "ingest")
    query = new_key(db_url, "query")
    admin = new_key(db_url, "admin")
    body = assert_error(c.get("/api/series", headers={"Authorization": f"Bearer {ingest}"}), 403)
    assert body["required_scope"] == "query" and body["key_scopes"] == ["ingest"]
    assert c.get("/api/series", headers={"X-API-Key": query}).status_code == 200
    assert c.get("/api/series", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    r = c.post("/api/ingest", json={"metrics": []}, headers={"X-API-Key": query})
    assert_error(r, 403)
    r = c.post("/api/ingest", json={"metrics": []}, headers={"X-API-Key": admin})
    assert r.status_code == 200


def test_key_in_query_string_is_400_even_when_valid(make_app, db_url):
    key = new_key(db_url, "query")
    for auth in ("on", "off"):
        c = make_app(PGPULSE_AUTH=auth).test_client()
        body = assert_error(c.get(f"/api/series?api_key={key}"), 400)
        assert "query string" in body["error"] and body["parameter"] == "api_key"
        assert_error(c.get(f"/api/query?query=m&x={key}"), 400)
        assert_error(c.get("/health?token=abc"), 400)


def test_keys_are_stored_hashed_and_revocation_works(make_app, db_url):
    c = make_app(PGPULSE_AUTH="on", PROXY_KEY_CACHE_SECONDS="0").test_client()
    key = new_key(db_url, "query")
    with psycopg.connect(db_url, autocommit=True) as conn:
        stored = conn.execute("SELECT prefix, key_hash FROM api_keys").fetchone()
        assert stored == (key[:13], hash_key(key))
        assert key not in str(conn.execute("SELECT * FROM api_keys").fetchall())
        assert c.get("/api/labels", headers={"X-API-Key": key}).status_code == 200
        assert list_keys(conn)[0]["last_used_at"] is not None
        assert revoke_key(conn, key[:13]) == 1
        assert_error(c.get("/api/labels", headers={"X-API-Key": key}), 401)
        assert list_keys(conn) == [] and len(list_keys(conn, include_revoked=True)) == 1


def test_open_endpoints_need_no_key(make_app):
    c = make_app(PGPULSE_AUTH="on").test_client()
    for path in ("/health", "/ready", "/metrics", "/api/openapi.json"):
        assert c.get(path).status_code == 200, path
