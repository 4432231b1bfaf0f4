"""Monthly sample quotas per tenant: counted in PostgreSQL in the transaction of the
samples they count (so a restart keeps them and usage equals what is stored), a
batch that would pass the quota refused whole with 429 and the figures on every
ingest protocol, two writers racing unable to overshoot, and GET /api/usage."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from google.rpc import code_pb2, status_pb2
from polling import wait_for
from proxy_helpers import assert_error, new_key, sample
from test_ratelimit_protocols import PROTOCOLS, post

from pgpulse.config import SettingsError
from pgpulse.settings import load_core
from pgpulse.store import usage
from pgpulse.store.errors import QuotaExceeded

DEADLINE = 60  # seconds: generous, for a busy machine
NO_LIMITS = {
    "PROXY_RATELIMIT_INGEST_PER_KEY": "off",
    "PROXY_RATELIMIT_INGEST_PER_ADDRESS": "off",
    "PROXY_RATELIMIT_QUERY_PER_KEY": "off",
    "PROXY_RATELIMIT_QUERY_PER_ADDRESS": "off",
}


def stored(db_url: str) -> int:
    """Samples and snapshots stored: what the quota counts."""
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM samples) + (SELECT count(*) FROM system_metrics)"
        ).fetchone()[0]


def used(db_url: str, tenant: str = "default") -> int:
    with psycopg.connect(db_url) as conn:
        return usage.months(conn, tenant, 1)[0].samples


def this_month() -> str:
    return datetime.now(UTC).date().replace(day=1).isoformat()


def snapshots_request(n: int, tag: str) -> tuple[str, dict, dict]:
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    items = [{"host": f"{tag}{k}", "time": t.isoformat().replace("+00:00", "Z"), "data": {}}
             for k in range(n)]
    return "/api/ingest/snapshots", {"snapshots": items}, {}


EVERY_PATH = {**PROTOCOLS, "snapshots": snapshots_request}


# -- settings -------------------------------------------------------------------------


def test_the_default_quota_is_unlimited_and_bad_values_name_the_variable():
    assert load_core({}).monthly_sample_quota == 0
    with pytest.raises(SettingsError, match="PGPULSE_MONTHLY_SAMPLE_QUOTA='-1': must be >= 0"):
        load_core({"PGPULSE_MONTHLY_SAMPLE_QUOTA": "-1"})
    with pytest.raises(SettingsError, match="PGPULSE_MONTHLY_SAMPLE_QUOTA='lots': expected an integer"):
        load_core({"PGPULSE_MONTHLY_SAMPLE_QUOTA": "lots"})


# -- refusals on every path -----------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EVERY_PATH))
def test_a_batch_that_would_pass_the_quota_is_refused_whole(make_app, db_url, path):
    client = make_app(**NO_LIMITS, PGPULSE_MONTHLY_SAMPLE_QUOTA="5").test_client()
    build = EVERY_PATH[path]
    first = post(client, build(3, "a"))
    assert first.status_code in (200, 204), first.get_data(as_text=True)
    assert stored(db_url) == used(db_url) == 3
    refused = post(client, build(3, "b"))
    assert refused.status_code == 429, refused.get_data(as_text=True)
    # Until 00:00 UTC on the first of next month, at most about 31 days.
    assert 1 <= int(refused.headers["Retry-After"]) <= 32 * 86400
    assert stored(db_url) == used(db_url) == 3, "a refused batch stores nothing and counts nothing"
    if path == "otlp":
        status = status_pb2.Status.FromString(refused.get_data())
        assert status.code == code_pb2.RESOURCE_EXHAUSTED
        assert "monthly sample quota exceeded" in status.message and "3 of 5" in status.message
    elif path == "influx":
        body = refused.get_json()  # InfluxDB 2.x's error shape
        assert body["code"] == "too many requests" and "3 of 5" in body["message"]
        assert (body["used"], body["quota"], body["batch"]) == (3, 5, 3)
    else:
        body = assert_error(refused, 429)
        assert (body["used"], body["quota"], body["batch"]) == (3, 5, 3)
        assert body["month"] == this_month() and body["tenant"] == "default"
        reset = datetime.fromisoformat(body["reset"])
        assert reset.day == 1 and reset > datetime.now(UTC)
    # What fits exactly is still taken: the quota is "at most", not "less than".
    fits = post(client, build(2, "c"))
    assert fits.status_code in (200, 204), fits.get_data(as_text=True)
    assert stored(db_url) == used(db_url) == 5


def test_usage_equals_what_every_path_stored(make_app, db_url):
    client = make_app(**NO_LIMITS).test_client()  # unlimited: usage is still counted
    for k, (name, build) in enumerate(sorted(EVERY_PATH.items())):
        response = post(client, build(k + 2, name))
        assert response.status_code in (200, 204), (name, response.get_data(as_text=True))
    assert stored(db_url) == used(db_url) == sum(k + 2 for k in range(len(EVERY_PATH)))
    # A replayed idempotent batch stores nothing again, and counts nothing again.
    body = {"metrics": [sample(i="idem")]}
    for _ in range(2):
        assert client.post("/api/ingest", json=body, headers={"Idempotency-Key": "k1"}).status_code == 200
    assert stored(db_url) == used(db_url)


def test_a_batch_larger_than_the_whole_quota_is_refused_and_names_it(make_app, db_url):
    client = make_app(**NO_LIMITS, PGPULSE_MONTHLY_SAMPLE_QUOTA="2").test_client()
    body = assert_error(client.post("/api/ingest", json={"metrics": [sample(i=str(k)) for k in range(3)]}), 429)
    assert (body["used"], body["quota"], body["batch"]) == (0, 2, 3)
    assert stored(db_url) == used(db_url) == 0


# -- a restart ------------------------------------------------------------------------


def test_the_quota_survives_a_restart(make_app, db_url):
    first = make_app(**NO_LIMITS, PGPULSE_MONTHLY_SAMPLE_QUOTA="4")
    assert first.test_client().post("/api/ingest", json={"metrics": [
        sample(i=str(k)) for k in range(3)]}).status_code == 200
    # A new app (its own pool, its own caches) on the same database: what a restarted
    # process sees.
    second = make_app(**NO_LIMITS, PGPULSE_MONTHLY_SAMPLE_QUOTA="4").test_client()
    assert second.get("/api/usage").get_json()["used"] == 3
    refused = assert_error(second.post("/api/ingest", json={"metrics": [sample(i="x"), sample(i="y")]}), 429)
    assert refused["used"] == 3
    assert stored(db_url) == 3


# -- two writers racing ---------------------------------------------------------------


def _blocked_on_a_lock(db_url: str, pid: int) -> bool:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None and row[0] == "Lock"


@pytest.mark.parametrize("existing", [False, True], ids=["first-of-month", "counted-before"])
def test_two_writers_racing_cannot_overshoot(db_url, existing):
    """The second writer charges while the first's charge is uncommitted: it waits for
    the first to commit and is then refused against the committed count."""
    if existing:
        with psycopg.connect(db_url) as conn:
            usage.charge(conn, "default", 1, 10)
    with psycopg.connect(db_url) as a, psycopg.connect(db_url) as b:
        usage.charge(a, "default", 5, 10)  # a's transaction stays open
        outcome: list[object] = []

        def second() -> None:
            try:
                outcome.append(usage.charge(b, "default", 5, 10))
                b.commit()
            except QuotaExceeded as exc:
                b.rollback()
                outcome.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        wait_for(lambda: _blocked_on_a_lock(db_url, b.info.backend_pid), DEADLINE,
                 "the second writer to wait for the first's lock", interval=0.05)
        a.commit()
        thread.join(DEADLINE)
        assert not thread.is_alive()
    if existing:
        [refusal] = outcome
        assert isinstance(refusal, QuotaExceeded), outcome
        assert (refusal.details["used"], refusal.details["batch"]) == (6, 5)
        assert used(db_url) == 6
    else:
        assert outcome == [10]  # 5 + 5 fits exactly
        assert used(db_url) == 10


def test_many_writers_through_the_proxy_stay_within_the_quota(make_app, db_url):
    """Writers of one tenant in parallel through one app (threads, each its pooled
    connection): what is stored never passes the quota, and equals the usage."""
    app = make_app(**NO_LIMITS, PGPULSE_MONTHLY_SAMPLE_QUOTA="20")
    statuses: list[int] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        client = app.test_client()
        for k in range(4):
            r = client.post("/api/ingest", json={"metrics": [sample(w=str(w), k=str(k), i=str(i))
                                                              for i in range(3)]})
            with lock:
                statuses.append(r.status_code)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert sorted(set(statuses)) == [200, 429]
    assert statuses.count(200) == 6  # 6 batches of 3 fit in 20; a 7th would make 21
    assert stored(db_url) == used(db_url) == 18


# -- GET /api/usage -------------------------------------------------------------------


def test_usage_shows_this_month_and_the_months_before(make_app, db_url):
    client = make_app(**NO_LIMITS, PGPULSE_MONTHLY_SAMPLE_QUOTA="100").test_client()
    month = datetime.now(UTC).date().replace(day=1)
    earlier = (month - timedelta(days=1)).replace(day=1)
    with psycopg.connect(db_url) as conn:  # last month's count, as it was left then
        conn.execute("INSERT INTO usage_monthly (tenant, month, samples) VALUES ('default', %s, 42)",
                     (earlier,))
    assert client.post("/api/ingest", json={"metrics": [sample(i="1"), sample(i="2")]}).status_code == 200
    body = client.get("/api/usage?months=3").get_json()
    assert body["tenant"] == "default" and body["quota"] == 100
    assert (body["month"], body["used"], body["remaining"]) == (month.isoformat(), 2, 98)
    assert datetime.fromisoformat(body["reset"]) == usage.reset_time(month)
    assert [m["samples"] for m in body["months"]] == [2, 42, 0]
    assert body["months"][1]["month"] == earlier.isoformat()
    assert_error(client.get("/api/usage?months=0"), 400)
    unlimited = make_app(**NO_LIMITS).test_client().get("/api/usage").get_json()
    assert (unlimited["quota"], unlimited["remaining"], unlimited["used"]) == (None, None, 2)
    assert len(unlimited["months"]) == 12


def test_usage_needs_a_query_or_admin_key(make_app, db_url):
    client = make_app(**NO_LIMITS, PGPULSE_AUTH="on").test_client()
    assert_error(client.get("/api/usage"), 401)
    ingest_only = {"Authorization": f"Bearer {new_key(db_url, 'ingest')}"}
    assert_error(client.get("/api/usage", headers=ingest_only), 403)
    for scope in ("query", "admin"):
        r = client.get("/api/usage", headers={"Authorization": f"Bearer {new_key(db_url, scope)}"})
        assert r.status_code == 200 and r.get_json()["used"] == 0


def test_reset_time_is_the_first_of_the_next_month():
    from datetime import date
    assert usage.reset_time(date(2026, 12, 1)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert usage.reset_time(date(2026, 2, 1)) == datetime(2026, 3, 1, tzinfo=UTC)
