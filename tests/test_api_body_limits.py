"""Request bodies sent without Content-Length (chunked): the size cap still answers
413, whatever the body holds; a chunked body within the cap is read whole."""

from __future__ import annotations

import io
import json

from proxy_helpers import assert_error

CHUNKED = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
# What a server that decoded the chunks says (gunicorn and werkzeug's server both do).
TERMINATED = {"wsgi.input_terminated": True}


def post_chunked(client, body: bytes):
    return client.post("/api/ingest", input_stream=io.BytesIO(body), headers=CHUNKED,
                       environ_base=TERMINATED)


def test_chunked_body_over_the_limit_is_413(make_app, conn):
    c = make_app(PROXY_MAX_BODY_BYTES="2000").test_client()
    body = json.dumps({"metrics": [{"name": "m", "value": 1}] * 200}).encode()
    assert len(body) > 2000
    assert assert_error(post_chunked(c, body), 413)["limit_bytes"] == 2000
    assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 0


def test_chunked_body_within_the_limit_is_read_whole(make_app, conn):
    c = make_app(PROXY_MAX_BODY_BYTES="2000").test_client()
    body = json.dumps({"metrics": [{"name": "m", "labels": {"i": str(i)}, "value": 1}
                                   for i in range(5)]}).encode()
    r = post_chunked(c, body)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json["accepted"] == 5
    assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 5
