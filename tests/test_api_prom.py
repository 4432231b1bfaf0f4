"""Prometheus's HTTP API on pgpulse: envelopes, parameters, auth, discovery endpoints,
staleness markers, refusals, and no 500 for any query text. Real PostgreSQL; the
answers' equality with Prometheus itself is tests/test_promql_oracle.py."""

from __future__ import annotations

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st
from proxy_helpers import new_key

from pgpulse.store.batch import PG_EPOCH_US, Batch
from pgpulse.store.samples import write_batch
from pgpulse.store.series import SeriesLimits

T = 1_767_225_600  # 2026-01-01T00:00:00Z


def _write(db_url: str, rows: list[tuple[str, dict[str, str], int, float]],
           stale: list[tuple[str, dict[str, str], int]] = (),
           metadata: dict[str, tuple[str, str, str]] | None = None) -> None:
    batch = Batch()
    for name, labels, t, v in rows:
        batch.rows.append((t * 1_000_000 - PG_EPOCH_US, batch.series(name, labels), v))
    for name, labels, t in stale:
        batch.stale.append((t * 1_000_000 - PG_EPOCH_US, batch.series(name, labels)))
    batch.metadata.update(metadata or {})
    with psycopg.connect(db_url) as conn, conn.transaction():
        write_batch(conn, batch, SeriesLimits(), tenant="default")


def _seed(db_url: str) -> None:
    _write(db_url, [("cpu", {"host": h}, T + i * 10, float(i) * (2 if h == "b" else 1))
                    for h in ("a", "b") for i in range(60)]
           + [("mem", {"host": "a", "kind": "rss"}, T + i * 10, 100.0 + i) for i in range(60)],
           metadata={"cpu": ("gauge", "CPU use", "percent")})


def test_instant_query_envelope_and_values_as_strings(client, db_url):
    _seed(db_url)
    r = client.get("/api/v1/query", query_string={"query": 'cpu{host="b"} / 4', "time": T + 100})
    assert r.status_code == 200
    assert r.get_json() == {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"host": "b"}, "value": [T + 100, "5"]}]}}


def test_range_query_by_form_post_with_rfc3339_and_duration_step(client, db_url):
    _seed(db_url)
    r = client.post("/api/v1/query_range", data={
        "query": "sum(cpu)", "start": "2026-01-01T00:01:00Z", "end": "2026-01-01T00:02:00Z",
        "step": "30s"})
    assert r.status_code == 200, r.get_json()
    data = r.get_json()["data"]
    assert data["resultType"] == "matrix"
    assert data["result"] == [{"metric": {}, "values": [[T + 60, "18"], [T + 90, "27"],
                                                        [T + 120, "36"]]}]


def test_scalar_string_and_matrix_results(client, db_url):
    _seed(db_url)
    r = client.get("/api/v1/query", query_string={"query": "1 / 8", "time": "1767225600.5"})
    assert r.get_json()["data"] == {"resultType": "scalar", "result": [1767225600.5, "0.125"]}
    r = client.get("/api/v1/query", query_string={"query": '"x"', "time": T})
    assert r.get_json()["data"] == {"resultType": "string", "result": [T, "x"]}
    r = client.get("/api/v1/query", query_string={"query": 'cpu{host="a"}[25s]', "time": T + 50})
    assert r.get_json()["data"]["result"] == [{"metric": {"__name__": "cpu", "host": "a"},
                                               "values": [[T + 30, "3"], [T + 40, "4"],
                                                          [T + 50, "5"]]}]


def test_a_staleness_marker_ends_a_series_at_once(client, db_url):
    _write(db_url, [("g", {"k": "v"}, T + i * 10, 7.0) for i in range(10)] + [
        ("g", {"k": "v"}, T + 200, 8.0)], stale=[("g", {"k": "v"}, T + 95)])

    def at(t: int) -> list:
        r = client.get("/api/v1/query", query_string={"query": "g", "time": t})
        return r.get_json()["data"]["result"]

    assert at(T + 94) == [{"metric": {"__name__": "g", "k": "v"}, "value": [T + 94, "7"]}]
    assert at(T + 95) == []  # within the lookback of the sample at T+90, but marked stale
    assert at(T + 150) == []
    assert at(T + 200) == [{"metric": {"__name__": "g", "k": "v"}, "value": [T + 200, "8"]}]
    # A range selector leaves the marker out: it is not a value.
    r = client.get("/api/v1/query", query_string={"query": "count_over_time(g[5m])",
                                                  "time": T + 200})
    assert r.get_json()["data"]["result"][0]["value"] == [T + 200, "11"]


def test_series_labels_values_metadata_buildinfo(client, db_url):
    _seed(db_url)
    r = client.get("/api/v1/series", query_string={"match[]": ['cpu{host="a"}', "mem"]})
    assert r.get_json() == {"status": "success", "data": [
        {"__name__": "cpu", "host": "a"}, {"__name__": "mem", "host": "a", "kind": "rss"}]}
    r = client.get("/api/v1/series", query_string={"match[]": "cpu", "start": T + 10_000})
    assert r.get_json()["data"] == []
    r = client.get("/api/v1/series", query_string={"match[]": "cpu", "limit": "1"})
    assert len(r.get_json()["data"]) == 1 and r.get_json()["warnings"]
    assert client.get("/api/v1/labels").get_json()["data"] == ["__name__", "host", "kind"]
    r = client.post("/api/v1/labels", data={"match[]": "cpu"})
    assert r.get_json()["data"] == ["__name__", "host"]
    assert client.get("/api/v1/label/__name__/values").get_json()["data"] == ["cpu", "mem"]
    r = client.get("/api/v1/label/host/values", query_string={"match[]": 'cpu{host="b"}'})
    assert r.get_json()["data"] == ["b"]
    assert client.get("/api/v1/metadata").get_json()["data"] == {
        "cpu": [{"type": "gauge", "help": "CPU use", "unit": "percent"}]}
    assert client.get("/api/v1/status/buildinfo").get_json()["data"]["version"] == "2.42.0"


def test_auth_uses_the_same_keys_and_errors_keep_the_envelope(make_app, db_url):
    app = make_app(PGPULSE_AUTH="on")
    c = app.test_client()
    r = c.get("/api/v1/query", query_string={"query": "1"})
    assert r.status_code == 401
    assert r.get_json()["status"] == "error" and r.get_json()["errorType"] == "unauthorized"
    ingest = new_key(db_url, "ingest")
    r = c.get("/api/v1/query", query_string={"query": "1"},
              headers={"Authorization": f"Bearer {ingest}"})
    assert r.status_code == 403 and r.get_json()["status"] == "error"
    key = new_key(db_url, "query")
    r = c.get("/api/v1/query", query_string={"query": "1", "time": T},
              headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.get_json()["data"]["result"] == [T, "1"]


REFUSED = {
    'sort_by_label(cpu, "host")': "sort_by_label",
    "info(cpu)": "info",
    "holt_winters(cpu[5m], 0.5, 0.5)": "holt_winters",
}


def test_refused_expressions_name_what_is_refused(client, db_url):
    _seed(db_url)
    for expr, name in REFUSED.items():
        r = client.get("/api/v1/query", query_string={"query": expr, "time": T})
        body = r.get_json()
        assert r.status_code == 400, body
        assert body["status"] == "error" and body["errorType"] == "bad_data"
        assert name in body["error"], body


def test_limits_timeout_and_unknown_parameters(client, db_url):
    _seed(db_url)
    r = client.get("/api/v1/query_range", query_string={
        "query": "cpu", "start": T, "end": T + 86_400 * 30, "step": "1"})
    assert r.status_code == 400 and "maximum resolution" in r.get_json()["error"]
    r = client.get("/api/v1/query", query_string={"query": "cpu", "timeout": "soon"})
    assert r.status_code == 400 and r.get_json()["errorType"] == "bad_data"
    r = client.get("/api/v1/query", query_string={"query": "cpu", "stpe": "1"})
    assert r.status_code == 400 and r.get_json()["status"] == "error"


def test_no_query_text_gives_a_500(client, db_url):
    _seed(db_url)

    @settings(max_examples=150, deadline=None)
    @given(text=st.one_of(
        st.text(max_size=40),
        st.lists(st.sampled_from(["cpu", "mem", "(", ")", "[5m]", "[1m:10s]", "rate", "sum",
                                  "by", "(host)", "+", "/", ">", "bool", "on", "ignoring",
                                  "group_left", "offset", "-5m", "@", "0", "1e308", "NaN",
                                  "{", "}", 'host="a"', ",", "topk", "quantile", "absent",
                                  "histogram_quantile", "label_replace", '"x"', "or",
                                  "unless", "and", "^", "%", "atan2"]),
                 max_size=12).map(" ".join)),
        instant=st.booleans())
    def check(text, instant):
        if instant:
            r = client.get("/api/v1/query", query_string={"query": text, "time": T + 300})
        else:
            r = client.get("/api/v1/query_range", query_string={
                "query": text, "start": T, "end": T + 600, "step": "37"})
        assert r.status_code in (200, 400, 422), (text, r.status_code, r.get_data(as_text=True))
        body = r.get_json()
        assert body["status"] == ("success" if r.status_code == 200 else "error"), body

    check()
