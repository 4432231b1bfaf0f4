"""/api/openapi.json agrees with the app's routes, and every error response has the
documented JSON shape (property-based requests to every route). Real PostgreSQL."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

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
