"""/api/openapi.json agrees with the app's routes, and every error response has the
documented JSON shape (property-based requests to every route). Real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import mongomock
import pytest
from etl_helpers import MONGO_URI, MockSource, reading
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.settings import load_etl
from proxy import close_app, create_app
from proxy.api.openapi import openapi_path

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def routes(app) -> set[tuple[str, str]]:
    return {(openapi_path(rule.rule), method.lower())
            for rule in app.url_map.iter_rules() for method in rule.methods - IGNORED_METHODS}


def test_every_route_is_documented_and_vice_versa(make_app):
    app = make_app()
    doc = app.test_client().get("/api/openapi.json").json
    assert doc["openapi"].startswith("3.")
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert routes(app) == documented
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op.get("summary") and op.get("responses"), (path, method)


def test_error_responses_are_documented_as_error_schema(make_app):
    doc = make_app().test_client().get("/api/openapi.json").json
    assert doc["components"]["schemas"]["Error"]["required"] == ["error"]


_paths = st.sampled_from(["/api/ingest", "/v1/ingest", "/api/ingest/snapshots", "/api/query", "/v1/query",
                          "/api/hosts", "/api/hosts/query", "/api/series", "/api/labels",
                          "/api/labels/host/values", "/api/cardinality", "/api/export", "/ready",
                          "/api/nothing", "/api/labels/%ff/values"])
_params = st.dictionaries(
    st.sampled_from(["query", "start", "end", "step", "agg", "by", "format", "source", "match",
                     "limit", "field", "host", "x"]),
    st.text(max_size=12), max_size=4)


def test_every_error_has_the_json_shape(make_app):
    apps = {True: make_app(PGPULSE_AUTH="on"), False: make_app()}

    @settings(max_examples=150, deadline=None)
    @given(path=_paths, method=st.sampled_from(["GET", "POST", "PUT"]), params=_params,
           body=st.binary(max_size=64), auth=st.booleans())
    def check(path, method, params, body, auth):
        r = apps[auth].test_client().open(path, method=method, query_string=params, data=body,
                                          content_type="application/json")
        assert r.status_code != 500, r.data
        if r.status_code >= 400:
            payload = r.get_json(silent=True)
            assert isinstance(payload, dict) and isinstance(payload.get("error"), str), (
                r.status_code, r.data)

    check()


# -- hostile parameters and stored data: a clear 400 (or the right answer), never a 500 ------

BIG = str(10**30)  # beyond 64 bits
BEFORE_YEAR_1 = "0001-01-01T00:00:00+14:00"  # parses, but lies before year 1 in UTC
AFTER_YEAR_9999 = "9999-12-31T23:59:59-14:00"


@pytest.mark.parametrize(("path", "params", "parameter"), [
    ("/api/series", {"limit": BIG}, "limit"),
    ("/api/series", {"limit": "-" + BIG}, "limit"),
    ("/api/labels/host/values", {"limit": BIG}, "limit"),
    ("/api/cardinality", {"limit": BIG}, "limit"),
    ("/api/sync/runs", {"limit": BIG}, "limit"),
    ("/api/sync/rejects", {"limit": BIG}, "limit"),
    ("/api/reading", {"limit": BIG}, "limit"),
    ("/api/sync/reading", {"max_batches": BIG}, "max_batches"),
    ("/api/query", {"query": "m", "start": BEFORE_YEAR_1}, "start"),
    ("/api/query", {"query": "m", "end": AFTER_YEAR_9999}, "end"),
    ("/api/query", {"query": "m", "start": "1969-12-31T23:00:00Z"}, "start"),
    ("/api/hosts/query", {"field": "load1", "start": BEFORE_YEAR_1}, "start"),
    ("/api/hosts/query", {"field": "load1", "end": AFTER_YEAR_9999}, "end"),
    ("/api/export", {"query": "m", "start": BEFORE_YEAR_1}, "start"),
    ("/api/export", {"source": "hosts", "end": AFTER_YEAR_9999}, "end"),
    ("/api/export", {"source": "hosts", "host": "web\x001"}, "host"),
    ("/api/reading", {"start": BEFORE_YEAR_1}, "start"),
    ("/api/reading", {"end": AFTER_YEAR_9999}, "end"),
    ("/api/query", {"query": "m", "stpe": "5m"}, "stpe"),
])
def test_hostile_parameters_are_a_400_naming_the_parameter(make_app, path, params, parameter):
    c = make_app().test_client()
    method = c.post if path == "/api/sync/reading" else c.get
    r = method(path, query_string=params)
    assert r.status_code == 400, r.data
    assert r.json["parameter"] == parameter and parameter in r.json["error"]


@pytest.mark.parametrize("depth", [250, 254, 255, 600, 1021, 1023, 1030])
def test_deeply_nested_snapshot_is_a_400(make_app, depth):
    """Snapshot data nested this deep (the body 3 levels more) is stored or refused
    with a 400 naming it; never a 500."""
    data = '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)
    when = datetime.now(UTC).isoformat()
    body = f'{{"snapshots": [{{"host": "h", "time": "{when}", "data": {data}}}]}}'
    r = make_app().test_client().post("/api/ingest/snapshots", data=body,
                                      content_type="application/json")
    assert r.status_code in (200, 400), r.data
    if r.status_code == 400:  # the body too deep to parse, or data too deep to store
        assert r.json.get("field", "data") == "data" and r.json["error"], r.json


def test_stored_numbers_beyond_64_bits_are_answered(db_url, conn, request):
    """A BSON double of 1e308 lands in jsonb as a 309-digit integer: /api/reading and
    /api/sync/rejects answer it as a JSON number (which reads back as 1e308)."""
    mongo = mongomock.MongoClient(tz_aware=True)
    mongo["pgpulse"]["readings"].insert_many([
        reading(1, extra=1e308),                      # loads, with 1e308 in its payload
        reading(2, time="yesterday", extra=1e308),    # rejected, 1e308 in the stored document
    ])
    config = {"DATABASE_URL": db_url, "PGPULSE_AUTH": "off", "TESTING": True, "MONGO_URI": MONGO_URI}
    app = create_app(config, etl_source=MockSource(load_etl(config), mongo))
    request.addfinalizer(lambda: close_app(app))
    c = app.test_client()
    r = c.post("/api/sync/reading")
    assert r.status_code == 200 and r.json["loaded"] == 1 and r.json["rejected"] == 1, r.json
    r = c.get("/api/reading")
    assert r.status_code == 200, r.data
    assert 1e308 in _numbers(json.loads(r.data))
    r = c.get("/api/sync/rejects")
    assert r.status_code == 200, r.data
    assert 1e308 in _numbers(json.loads(r.data))


def _numbers(value) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [float(value)] if isinstance(value, int | float) and not isinstance(value, bool) else []


def test_unknown_parameters_are_named_with_the_known_ones(make_app):
    c = make_app().test_client()
    for path, params in (("/api/query", {"query": "m", "stpe": "5m"}),
                         ("/api/hosts/query", {"field": "load1", "hosts": "a"}),
                         ("/api/series", {"matc": "m"}),
                         ("/api/export", {"query": "m", "fromat": "csv"}),
                         ("/api/reading", {"limt": "5"})):
        r = c.get(path, query_string=params)
        body = r.json
        assert r.status_code == 400 and body["unknown"] == [body["parameter"]], (path, body)
        assert body["parameter"] in body["error"] and body["known"], body
        assert set(body["known"]) <= set(body["error"].replace(",", " ").split()), body
    r = c.post("/api/ingest?dry_run=1", json={"metrics": []})
    assert r.status_code == 400 and r.json["known"] == []
    # Operations endpoints take anything (probes and scrapers add their own parameters).
    assert c.get("/health?probe=1").status_code == 200


def test_limits_in_the_document_are_the_settings_in_force(make_app):
    r = make_app(PROXY_MAX_QUERY_SERIES="777").test_client().get("/api/openapi.json")
    assert b"x-maximum-setting" not in r.data
    [limit] = [p for p in r.json["paths"]["/api/series"]["get"]["parameters"] if p["name"] == "limit"]
    assert limit["schema"]["minimum"] == 1 and limit["schema"]["maximum"] == 777
    [query] = [p for p in r.json["paths"]["/api/query"]["get"]["parameters"] if p["name"] == "query"]
    assert query["required"] and query["schema"]["minLength"] == 1
    points = r.json["paths"]["/api/query"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]["properties"]["series"]["items"]["properties"]["points"]
    assert points["items"]["minItems"] == points["items"]["maxItems"] == 2
