"""GET /api/export: streamed JSON, NDJSON and CSV of samples and host snapshots (real PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
import logging
import socket
import threading
import time
from datetime import UTC, datetime

import psycopg
import pytest
import requests
from polling import wait_for
from proxy_helpers import assert_error
from psycopg import sql
from psycopg_pool import ConnectionPool
from werkzeug.serving import make_server

from pgpulse.store.exports import ExportAborted, ExportLimits, RowStream


@pytest.fixture
def seeded(make_app):
    # A tiny itersize, so the export really walks its server-side cursor in many fetches.
    c = make_app(PROXY_EXPORT_ITERSIZE="7").test_client()
    base = time.time() - 3000
    c.post("/api/ingest", json={"metrics": [
        {"name": "m", "labels": {"host": h}, "value": i + 0.5, "timestamp": base + i}
        for h in ("a", "b") for i in range(1500)]})
    c.post("/api/ingest/snapshots", json={"snapshots": [
        {"host": "web1", "time": datetime.fromtimestamp(base + i, UTC).isoformat(),
         "data": {"cpu": {"percent": i}, "note": "x,\"y\""}} for i in range(20)]})
    return c, base


def test_formats_stream_every_sample(seeded):
    c, base = seeded
    params = {"query": 'm{host="a"}', "start": base - 1}
    r = c.get("/api/export", query_string={**params, "format": "json"})
    assert r.status_code == 200 and r.is_streamed
    rows = json.loads(r.get_data())
    assert len(rows) == 1500
    assert rows[0]["name"] == "m" and rows[0]["labels"] == {"host": "a"} and rows[0]["value"] == 0.5
    assert datetime.fromisoformat(rows[1]["time"]).timestamp() == pytest.approx(base + 1, abs=1e-5)

    r = c.get("/api/export", query_string={**params, "format": "ndjson"})
    assert r.mimetype == "application/x-ndjson"
    lines = r.get_data().splitlines()
    assert len(lines) == 1500 and json.loads(lines[-1])["value"] == 1499.5

    r = c.get("/api/export", query_string={"query": "m", "start": base - 1, "format": "csv"})
    assert r.mimetype == "text/csv" and "attachment" in r.headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(r.get_data(as_text=True))))
    assert table[0] == ["time", "name", "labels", "value"]
    assert len(table) == 3001
    assert json.loads(table[1][2]) == {"host": "a"} and float(table[1][3]) == 0.5


def test_empty_export_is_valid(seeded):
    c, _ = seeded
    r = c.get("/api/export", query_string={"query": "nothing", "format": "json"})
    assert json.loads(r.get_data()) == []


def test_host_snapshots(seeded):
    c, base = seeded
    r = c.get("/api/export", query_string={"source": "hosts", "start": base - 1, "format": "ndjson"})
    docs = [json.loads(line) for line in r.get_data().splitlines()]
    assert len(docs) == 20 and docs[3]["data"]["cpu"]["percent"] == 3 and docs[0]["host"] == "web1"
    r = c.get("/api/export", query_string={"source": "hosts", "start": base - 1, "format": "csv",
                                           "field": "cpu_percent", "host": "web1"})
    table = list(csv.reader(io.StringIO(r.get_data(as_text=True))))
    assert table[0] == ["time", "host", "field", "value"] and len(table) == 21
    assert table[5][1:] == ["web1", "cpu_percent", "4.0"]
    r = c.get("/api/export", query_string={"source": "hosts", "start": base - 1, "format": "json"})
    assert json.loads(r.get_data())[0]["data"]["note"] == 'x,"y"'


def test_bad_export_parameters(seeded):
    c, _ = seeded
    assert assert_error(c.get("/api/export?query=m&format=xml"), 400)["parameter"] == "format"
    assert assert_error(c.get("/api/export?query=m&source=logs"), 400)["parameter"] == "source"
    assert assert_error(c.get("/api/export"), 400)["parameter"] == "query"
    assert assert_error(c.get("/api/export?source=hosts&field=nope"), 400)["parameter"] == "field"


def test_stream_releases_its_connection_when_closed_early(seeded):
    c, base = seeded
    from proxy.state import EXTENSION

    pool = c.application.extensions[EXTENSION].pool
    for _ in range(pool.max_size + 2):
        r = c.get("/api/export", query_string={"query": "m", "start": base - 1}, buffered=False)
        next(r.response)  # the first chunk only
        r.close()
    assert c.get("/api/series").status_code == 200  # the pool was not drained


# -- clients that stop reading -----------------------------------------------------------

IDLE_MS = 3000
# Longest a proxy session may stay in a transaction, whatever its state: an export's
# transaction lasts its fetches until the client's socket is full, then IDLE_MS. Generous
# for a busy machine, and still far below "until the client goes away".
TRANSACTION_BOUND_S = 20


def _in_transaction(conn) -> list[tuple[int, str, float]]:
    """(pid, state, seconds since the transaction began) of the proxy's sessions in a
    transaction, in any state (active, idle in transaction, waiting)."""
    return conn.execute(
        "SELECT pid, state, extract(epoch FROM now() - xact_start)::float FROM pg_stat_activity "
        "WHERE application_name = 'pgpulse-proxy' AND xact_start IS NOT NULL "
        "AND datname = current_database()").fetchall()


def _cut_by_idle_timeout(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "pgpulse.store.exports"
            and r.levelno == logging.WARNING and "took nothing" in r.getMessage()]


def test_clients_that_never_read_hold_no_session(make_app, conn, caplog):
    """Exports to clients that never read (more of them than the pool has connections):
    each export stalls on its client, its transaction ends after
    PROXY_EXPORT_IDLE_TIMEOUT_MS, its connection goes back to the pool (so the exports
    waiting for one run in turn), and the API keeps answering while the clients stay
    connected."""
    app = make_app(PROXY_DB_POOL_SIZE="2", PROXY_EXPORT_ITERSIZE="1",
                   PROXY_EXPORT_IDLE_TIMEOUT_MS=str(IDLE_MS), PROXY_DB_TIMEOUT_SECONDS="30")
    base = time.time() - 600
    # 30 snapshots of 400 kB: 12 MB an export, far more than a socket's buffers take
    # (net.ipv4.tcp_wmem allows at most 4 MB), so every export must stall on its client.
    big = "x" * 400_000
    for part in range(3):
        r = app.test_client().post("/api/ingest/snapshots", json={"snapshots": [
            {"host": "web1", "time": datetime.fromtimestamp(base + part * 10 + i, UTC).isoformat(),
             "data": {"blob": big}} for i in range(10)]})
        assert r.status_code == 200, r.json
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stalled: list[socket.socket] = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", server.server_port))
            s.sendall(f"GET /api/export?source=hosts&start={int(base) - 1} HTTP/1.1\r\n"
                      "Host: proxy\r\n\r\n".encode())
            stalled.append(s)  # and never read from it

        # Every export stalls on its client and is ended by its idle timeout: the two
        # that got the pool's connections first, then the two that waited for them.
        # Meanwhile no proxy session stays in a transaction beyond the bound. (Polling for
        # a session idle in transaction instead would be a race: it is there only while
        # an export waits, and may be missed on a busy machine.)
        def all_cut() -> bool:
            for pid, state, age_s in _in_transaction(conn):
                assert age_s < TRANSACTION_BOUND_S, (
                    f"proxy session {pid} ({state}) in a transaction for {age_s:.1f} s")
            return len(_cut_by_idle_timeout(caplog)) >= 4

        wait_for(all_cut, 90, "the four stalled exports to be ended by their idle timeout",
                 interval=0.1)
        assert len(_cut_by_idle_timeout(caplog)) == 4
        # Their transactions are over (the pump ends each one right after giving up).
        wait_for(lambda: not _in_transaction(conn), 60, "the exports' transactions to end")
        # The pool is not drained: the API answers while the four clients stay connected.
        r = requests.get(f"http://127.0.0.1:{server.server_port}/api/series", timeout=60)
        assert r.status_code == 200 and r.json()["series"] == []
        r = requests.get(f"http://127.0.0.1:{server.server_port}/api/hosts", timeout=60)
        assert r.status_code == 200 and r.json()["hosts"][0]["host"] == "web1"
    finally:
        for s in stalled:
            s.close()
        server.shutdown()
        thread.join(timeout=60)


def test_wide_rows_leave_in_bounded_chunks(seeded):
    """Chunks are bounded in bytes as well as rows: whole snapshots of 400 kB leave one
    by one (a client that stops reading then holds the export up at once), not after
    CHUNK_ROWS of them were formatted in memory."""
    c, base = seeded
    big = "x" * 400_000
    r = c.post("/api/ingest/snapshots", json={"snapshots": [
        {"host": "wide", "time": datetime.fromtimestamp(base + i, UTC).isoformat(),
         "data": {"blob": big}} for i in range(5)]})
    assert r.status_code == 200, r.json
    for fmt in ("json", "ndjson", "csv"):
        r = c.get("/api/export", query_string={"source": "hosts", "host": "wide",
                                               "start": base - 1, "format": fmt}, buffered=False)
        chunks = [chunk for chunk in r.response if chunk]
        r.close()
        assert len(chunks) >= 5, (fmt, [len(chunk) for chunk in chunks])
        assert max(len(chunk) for chunk in chunks) < 2 * len(big), fmt
        body = b"".join(chunks)
        if fmt == "json":
            assert len(json.loads(body)) == 5
        elif fmt == "ndjson":
            assert len(body.splitlines()) == 5
        else:
            assert body.count(b"\n") == 6  # the header and five rows (csv.reader refuses such fields)


def test_a_stalled_export_returns_its_connection_and_is_cut_short(db_url):
    """The store's row stream: a reader that takes nothing for the idle timeout loses its
    connection to the pool (a pool of one serves another caller), and when it comes
    back it gets ExportAborted, not rows it never saw."""
    with ConnectionPool(db_url, min_size=1, max_size=1, open=True) as pool:
        stream = RowStream(pool, sql.SQL("SELECT i FROM generate_series(1, 100) AS i"), [],
                           ExportLimits(itersize=1, idle_timeout_ms=300))
        rows = iter(stream)
        assert next(rows) == (1,)
        with pool.connection(timeout=60) as conn:  # waits until the stalled export gave it back
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(ExportAborted):
            list(rows)


def test_export_statements_have_their_own_timeout_for_the_transaction_only(db_url):
    """PROXY_EXPORT_STATEMENT_TIMEOUT_MS cancels an export's statement (the error comes
    before any row), and the limits end with the export's transaction: the pooled
    session keeps its own."""
    with ConnectionPool(db_url, min_size=1, max_size=1, open=True,
                        kwargs={"options": "-c statement_timeout=12345"}) as pool:
        with pytest.raises(psycopg.errors.QueryCanceled):
            RowStream(pool, sql.SQL("SELECT pg_sleep(30)"), [],
                      ExportLimits(statement_timeout_ms=200))
        stream = RowStream(pool, sql.SQL("SELECT current_setting('statement_timeout'), "
                                         "current_setting('idle_in_transaction_session_timeout')"),
                           [], ExportLimits(statement_timeout_ms=4000, idle_timeout_ms=7000))
        assert list(stream) == [("4s", "8s")]  # the idle timeout plus the server's margin
        with pool.connection(timeout=60) as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == ("12345ms",)
            assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("0",)
