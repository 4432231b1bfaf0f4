"""The web console in a real browser: Debian's Chromium (/usr/bin/chromium), driven
headless by Playwright's Python package, against a live proxy on a populated
database (real PostgreSQL, portable engine, rollups run).

What a user does is what is checked: log in with a key (a wrong one refused), every
host's charts hold the points the API answers, a longer range is served by a coarser
tier, a PromQL query in Explore shows the series Prometheus's API answers (a bad one
Prometheus's error; the native selector mode too), a reject is replayed,
and each page passes axe-core's WCAG 2 A/AA rules and can be worked with the keyboard.
Screenshots of every page go to tests/artifacts/console/ (git-ignored).

MongoDB cannot be installed on the test machines: the ETL reads mongomock through the
production MongoSource (etl_helpers.MockSource). Playwright drives the system Chromium
(``executable_path``); no browser is downloaded.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import mongomock
import psycopg
import pytest
import requests
from etl_helpers import MONGO_URI, MockSource, reading
from playwright import sync_api as playwright_api
from proxy_helpers import new_key
from werkzeug.serving import make_server

from etl.settings import load_etl
from pgpulse import tiers
from pgpulse.settings import load_core
from pgpulse.store import snapshots
from proxy import assets, close_app, create_app

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "console"
AXE = assets.MODULES_DIR / "axe-core" / "axe.min.js"
HOSTS = ("db1", "web1", "web2")
FIELDS = ("cpu_percent", "mem_percent", "load1", "rootfs_percent", "disk_read_bps",
          "disk_write_bps", "net_rx_bps", "net_tx_bps")
TIMEOUT_MS = 60_000  # generous: a busy 2-core machine
USAGE_QUOTA = 1_000_000


def _check_setup() -> None:
    # Missing pieces are failures, not skips: CI installs all of them.
    assert CHROMIUM.exists(), "Debian's chromium is needed (apt-get install chromium; .ci/run does)"
    assert not assets.missing(), "the console's libraries are not installed: run `make console`"
    assert AXE.is_file(), "axe-core is not installed: run `make console` (npm ci in proxy/console)"


def snapshot(host: str, t: datetime, i: int) -> dict:
    k = HOSTS.index(host) + 1
    return {"host": host, "time": t, "data": {
        "cpu": {"percent": 10 * k + i % 7}, "memory": {"percent": 40 + k}, "load": {"load1": 0.5 * k},
        "disk": {"read_bytes_per_s": 1000.0 * k, "write_bytes_per_s": 2000.0 * k},
        "network": {"rx_bytes_per_s": 3000.0 * k, "tx_bytes_per_s": 4000.0 * k},
        "filesystems": {"/": {"percent": 50 + 20 * k, "fstype": "ext4", "total": 1e11},
                        "/data": {"percent": 12.5, "fstype": "xfs", "total": 5e11}},
    }}


@pytest.fixture(scope="module")
def populated(module_db_url: str) -> Iterator[dict]:
    """Three hosts with two days of snapshots every 5 minutes (and one a minute over
    the last hour), rolled up into the 5m and 1h tiers; two application series; keys."""
    now = datetime.now(UTC).replace(microsecond=0)
    items = []
    for host in HOSTS:
        items += [snapshot(host, now - timedelta(minutes=5 * i), i) for i in range(12, 2 * 288)]
        items += [snapshot(host, now - timedelta(minutes=i), i) for i in range(60)]
    with psycopg.connect(module_db_url) as conn:
        snapshots.write(conn, items, tenant="default")
    tiers.refresh(module_db_url, load_core({}, database_url=module_db_url), backfill=True)
    yield {
        "url": module_db_url,
        "admin": new_key(module_db_url, "admin"),
        "query": new_key(module_db_url, "query"),
    }


@pytest.fixture(scope="module")
def mongo() -> mongomock.MongoClient:
    return mongomock.MongoClient(tz_aware=True)


@pytest.fixture(scope="module")
def live(populated, mongo) -> Iterator[str]:
    # A monthly quota far above what the tests write: the usage page shows its meter.
    config = {"DATABASE_URL": populated["url"], "PGPULSE_AUTH": "on", "MONGO_URI": MONGO_URI,
              "PGPULSE_MONTHLY_SAMPLE_QUOTA": str(USAGE_QUOTA)}
    app = create_app(config, etl_source=MockSource(load_etl(config), mongo))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    now = time.time()
    r = requests.post(f"{base}/api/ingest", timeout=60, headers={"Authorization": f"Bearer {populated['admin']}"},
                      json={"metrics": [{"name": "cpu_temp", "labels": {"host": h, "zone": "eu-1"},
                                         "value": 40 + i, "timestamp": now - 1800 + 60 * i}
                                        for h in ("a", "b") for i in range(30)]})
    assert r.status_code == 200, r.text
    try:
        yield base
    finally:
        server.shutdown()
        thread.join(timeout=60)
        close_app(app)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    _check_setup()
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


class Session:
    """One browser tab on the console, recording what it sent and what went wrong."""

    def __init__(self, browser, base: str) -> None:
        # bypass_csp: only so that the test can inject axe-core; the page runs under its CSP.
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.base = base
        self.urls: list[str] = []
        self.auth_headers: set[str] = set()
        self.errors: list[str] = []
        self.page.on("request", self._request)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" and
                     "status of 4" not in m.text and "status of 503" not in m.text else None)

    def _request(self, request) -> None:
        self.urls.append(request.url)
        header = request.headers.get("authorization")
        if header:
            self.auth_headers.add(header)

    def login(self, key: str) -> None:
        self.page.goto(self.base + "/")
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Log in").click()

    def go(self, fragment: str) -> None:
        self.page.goto(f"{self.base}/#/{fragment}")

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def session(browser, live, populated) -> Iterator[Session]:
    s = Session(browser, live)
    s.login(populated["admin"])
    s.page.get_by_role("heading", name="Hosts").wait_for()
    yield s
    try:
        assert not s.errors, f"errors in the page: {s.errors}"
        key = populated["admin"]
        assert not [u for u in s.urls if key in u], "the key went into a URL"
        assert s.auth_headers <= {f"Bearer {key}"}
    finally:
        s.close()


def chart_values(page, field: str) -> list[list[float]]:
    """The (time, value) pairs the uPlot chart of ``field`` holds (nulls left out)."""
    return page.evaluate("""(field) => {
        const plot = document.querySelector(`figure[data-field="${field}"] .plot`);
        if (!plot || !plot.uplot) return null;
        const [xs, ys] = plot.uplot.data;
        return xs.map((x, i) => [x, ys[i]]).filter(([, y]) => y !== null);
    }""", field)


def wait_charts(page, tier: str | None = None) -> None:
    """Every chart drawn (with its tier named, and ``tier`` when given)."""
    page.wait_for_function("""([fields, tier]) => fields.every((f) => {
        const fig = document.querySelector(`figure[data-field="${f}"]`);
        return fig && fig.dataset.tier && (!tier || fig.dataset.tier === tier)
            && fig.querySelector('.plot').dataset.points !== undefined;
    })""", arg=[list(FIELDS), tier], timeout=TIMEOUT_MS)


def api(base: str, key: str, path: str, **params) -> dict:
    r = requests.get(base + path, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


# -- login ----------------------------------------------------------------------------


def test_a_wrong_key_is_refused(browser, live):
    s = Session(browser, live)
    try:
        s.login("pgpk_" + "x" * 40)
        alert = s.page.get_by_role("alert")
        alert.wait_for()
        assert "refused" in alert.inner_text()
        assert s.page.locator("#nav").is_hidden()
        assert s.page.evaluate("sessionStorage.getItem('pgpulse.key')") is None
        s.shot("login-refused")
        assert not [u for u in s.urls if "pgpk_" in u]
    finally:
        s.close()


# -- hosts ----------------------------------------------------------------------------


def test_every_host_with_its_figures_and_charts(session, live, populated):
    page = session.page
    rows = page.locator("#hosts tbody tr")
    rows.first.wait_for()
    assert [r.get_attribute("data-host") for r in rows.all()] == list(HOSTS)
    # Headline figures are the hosts' latest: web2 (k=3) has the root filesystem at 110 %.
    page.wait_for_function("document.querySelector('tr[data-host=\"web2\"] td[data-field=\"cpu_percent\"]')"
                           ".textContent.includes('%')")
    assert page.locator('tr[data-host="web2"] td[data-field="mem_percent"]').inner_text() == "43.0 %"
    assert "nearly full" in page.locator('tr[data-host="web2"] td[data-field="rootfs_percent"]').inner_text()
    assert "nearly full" not in page.locator('tr[data-host="db1"] td[data-field="rootfs_percent"]').inner_text()
    session.shot("hosts")

    for host in HOSTS:
        page.get_by_role("link", name=host, exact=True).click()
        page.get_by_role("heading", name=f"Host {host}").wait_for()
        wait_charts(page, "raw")
        for field in FIELDS:
            values = chart_values(page, field)
            assert values, f"{host} {field}: empty chart"
            # The chart holds what the API answers for the same field and host.
            plot = page.locator(f'figure[data-field="{field}"] .plot')
            assert int(plot.get_attribute("data-points")) == len(values)
            answer = api(live, populated["query"], "/api/hosts/query", field=field, host=host,
                         start=int(values[0][0]), end=int(values[-1][0]) + 1)
            served = dict(map(tuple, answer["series"][0]["points"]))
            common = [t for t, _ in values if t in served]
            assert common and all(served[t] == v for t, v in values if t in served)
        assert chart_values(page, "mem_percent")[0][1] == 40 + HOSTS.index(host) + 1
        fs = page.locator("#filesystems tbody tr")
        fs.first.wait_for()
        assert sorted(r.locator("th").inner_text() for r in fs.all()) == ["/", "/data"]
        session.shot(f"host-{host}")
        page.get_by_role("link", name="← all hosts").click()
        rows.first.wait_for()


def test_a_longer_range_is_served_by_a_coarser_tier(session):
    page = session.page
    session.go("host/web1?range=1h")
    wait_charts(page, "raw")
    assert "tier raw" in page.locator('figure[data-field="cpu_percent"] .tier').inner_text()
    for range_name, tier in (("24h", "5m"), ("30d", "1h"), ("15m", "raw")):
        page.get_by_label("Range").select_option(range_name)
        wait_charts(page, tier)
        assert re.search(rf"#/host/web1\?range={range_name}$", page.url)
        assert f"tier {tier}" in page.locator('figure[data-field="cpu_percent"] .tier').inner_text()
        values = chart_values(page, "cpu_percent")
        assert values, f"{range_name}: empty chart from tier {tier}"
        if tier == "1h":
            assert all(t % 3600 == 0 for t, _ in values)
            session.shot("host-web1-30d")


def test_live_refresh_polls_the_api(session):
    page = session.page
    session.go("host/db1?range=15m")
    wait_charts(page, "raw")
    assert page.get_by_label("Live refresh").is_checked()
    before = sum("/api/hosts/query" in u for u in session.urls)
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while sum("/api/hosts/query" in u for u in session.urls) < before + len(FIELDS):
        assert time.monotonic() < deadline, "the charts were not refreshed"
        page.wait_for_timeout(500)  # lets the browser's requests reach the listener
    wait_charts(page, "raw")


# -- explore --------------------------------------------------------------------------


def explore_box(page):
    return page.get_by_role("combobox", name="Query")


def explore_chart(page) -> list[list[float]]:
    """The (time, value) pairs of every series the Explore chart holds (nulls left out)."""
    return page.evaluate("""() => { const u = document.getElementById('explore-plot').uplot;
        if (!u) return null;
        return u.data.slice(1).map((ys) => u.data[0].map((x, i) => [x, ys[i]]).filter(([, y]) => y !== null)); }""")


def fragment_params(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).fragment.partition("?")[2])


def prom_answer(session: Session, key: str) -> dict:
    """What the API answers to the last PromQL range query the page sent (the same URL)."""
    sent = [u for u in session.urls if "/api/v1/query_range?" in u][-1]
    r = requests.get(sent, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_explore_completes_and_runs_promql_and_shares_it(session, populated):
    page = session.page
    page.get_by_role("link", name="Explore").click()
    assert page.get_by_label("Language").input_value() == "promql"
    assert page.get_by_label("Aggregation").is_hidden()  # the native API's controls
    box = explore_box(page)
    # Grouping labels, a function, then a metric, label and value inside the function.
    box.press_sequentially("sum by (z")
    page.get_by_role("option", name="zone").wait_for()
    box.press("ArrowDown")
    box.press("Enter")
    assert box.input_value() == "sum by (zone"
    box.press_sequentially(") (ra")
    page.get_by_role("option", name="rate()").wait_for()
    assert page.locator("#suggestions li").all_inner_texts()[:2] == ["rad()", "rate()"]
    box.press("ArrowDown")
    box.press("ArrowDown")
    box.press("Enter")
    assert box.input_value() == "sum by (zone) (rate("
    box.press_sequentially("cpu_t")
    page.get_by_role("option", name="cpu_temp").wait_for()
    box.press("ArrowDown")
    box.press("Enter")
    assert box.input_value() == "sum by (zone) (rate(cpu_temp"
    box.press_sequentially("{")
    page.get_by_role("option", name="zone").wait_for()
    assert set(page.locator("#suggestions").get_by_role("option").all_inner_texts()) == {"host", "zone"}
    box.press_sequentially("ho")
    box.press("ArrowDown")
    box.press("Tab")
    assert box.input_value() == 'sum by (zone) (rate(cpu_temp{host="'
    page.get_by_role("option", name="b").wait_for()
    box.press("ArrowDown")
    box.press("Enter")
    query = 'sum by (zone) (rate(cpu_temp{host="a"}[5m]))'
    assert box.input_value() == query[:-7]
    box.press("Escape")
    box.press_sequentially("}[5m]))")
    page.get_by_role("button", name="Run query").click()
    page.locator("#series-table tbody tr").first.wait_for()
    assert page.locator("#result-tier").get_attribute("data-tier") == "raw"
    assert page.locator("#result-step").inner_text() == "15 s"  # 1 h in about 240 points, at least 15 s
    assert re.fullmatch(r"\d+ ms", page.locator("#result-time").inner_text())
    assert page.locator("#series-table tbody th").all_inner_texts() == ['{zone="eu-1"}']
    # The chart holds what Prometheus's API answers: cpu_temp rises by 1 a minute.
    [drawn] = explore_chart(page)
    answer = prom_answer(session, populated["admin"])
    [served] = answer["data"]["result"]
    assert served["metric"] == {"zone": "eu-1"}
    assert drawn and drawn == [[t, float(v)] for t, v in served["values"]]
    assert max(v for _, v in drawn) == pytest.approx(1 / 60)
    assert fragment_params(page.url) == {"query": [query], "range": ["1h"]}
    session.shot("explore")

    # An explicit step and a longer range: both in the URL, the step shown.
    page.get_by_label("Step").fill("1m")
    page.get_by_role("button", name="Run query").click()
    page.wait_for_function("document.getElementById('result-step')?.textContent === '60 s'")
    assert fragment_params(page.url)["step"] == ["1m"]
    page.get_by_label("Step").fill("")
    page.get_by_label("Range").select_option("24h")  # a new range runs the query again
    page.wait_for_function("document.getElementById('result-step')?.textContent === '288 s'")
    assert fragment_params(page.url) == {"query": [query], "range": ["24h"]}
    assert "step=288" in [u for u in session.urls if "/api/v1/query_range?" in u][-1]

    # The URL alone runs a query again (a shared link): here both hosts.
    page.goto(f"{session.base}/#/explore?" + urlencode({"query": "rate(cpu_temp[5m])", "range": "6h"}))
    page.locator("#series-table tbody tr").nth(1).wait_for()
    assert page.get_by_label("Range").input_value() == "6h"
    assert page.locator("#result-step").inner_text() == "72 s"  # 6 h in 300 points
    assert page.locator("#series-table tbody th").all_inner_texts() == [
        '{host="a", zone="eu-1"}', '{host="b", zone="eu-1"}']
    drawn = explore_chart(page)
    assert len(drawn) == 2 and all(drawn)
    answer = prom_answer(session, populated["admin"])
    assert drawn == [[[t, float(v)] for t, v in s["values"]] for s in answer["data"]["result"]]


def test_explore_completion_knows_where_it_is_in_promql(session):
    page = session.page
    session.go("explore")
    box = explore_box(page)

    def type_anew(text: str) -> None:
        box.fill("")
        box.press("Escape")
        box.press_sequentially(text)

    def offered(expected: list[str]) -> None:
        page.wait_for_function("""(expected) => { const list = document.getElementById('suggestions');
            const texts = [...list.querySelectorAll('li')].map((li) => li.textContent);
            return !list.hidden && expected.every((t) => texts.includes(t))
                && (expected.includes('cpu_temp') || texts.length === expected.length); }""", arg=expected)

    # After an operator: metric names; in a nested selector: its labels and values.
    type_anew("1 + ")
    offered(["cpu_temp"])
    type_anew('max(rate(cpu_temp{zone="eu-1", h')
    offered(["host"])
    type_anew('avg without (host) (cpu_temp{host=~"')
    offered(["a", "b"])
    # Not in a range, an offset or a string (the names are cached by now: no late answer).
    for text in ("rate(cpu_temp[5", "cpu_temp offset 5", 'label_replace(cpu_temp, "cpu'):
        type_anew(text)
        page.wait_for_timeout(300)
        assert page.locator("#suggestions").is_hidden(), text


def test_explore_shows_nan_and_infinity_as_prometheus_writes_them(session):
    page = session.page
    session.go("explore?" + urlencode({"query": 'cpu_temp{host="a"} / 0 or (cpu_temp{host="b"} - cpu_temp{host="b"}) / 0'}))
    page.locator("#series-table tbody tr").nth(1).wait_for()
    rows = page.locator("#series-table tbody tr")
    assert {r.locator("td").nth(1).inner_text() for r in rows.all()} == {"+Inf", "NaN"}
    assert int(rows.first.locator("td").first.inner_text()) > 0
    # Not finite: in the table, not drawn.
    assert explore_chart(page) == [[], []]


def test_explore_native_selector_mode(session):
    page = session.page
    # Links written before PromQL (agg=, no lang=) still run as native queries.
    session.go("explore?query=cpu_temp&range=1h&agg=avg&by=zone")
    page.locator("#series-table tbody tr").first.wait_for()
    assert page.get_by_label("Language").input_value() == "native"
    assert page.get_by_label("Aggregation").is_visible() and page.get_by_label("Group by (labels)").is_visible()
    assert page.locator("#series-table tbody th").all_inner_texts() == ['cpu_temp{zone="eu-1"}']
    assert page.locator("#result-tier").get_attribute("data-tier") == "raw"
    [drawn] = explore_chart(page)
    assert [v for _, v in drawn] == [40 + i for i in range(30)]  # avg of a and b per minute
    page.get_by_label("Group by (labels)").fill("")
    page.get_by_role("button", name="Run query").click()
    page.locator("#series-table tbody tr").nth(1).wait_for()
    assert fragment_params(page.url) == {"query": ["cpu_temp"], "range": ["1h"], "lang": ["native"], "agg": ["avg"]}
    # Back to PromQL: the native controls go.
    page.get_by_label("Language").select_option("promql")
    assert page.get_by_label("Aggregation").is_hidden()


def test_explore_shows_a_bad_promql_query_error(session, live, populated):
    page = session.page
    session.go("explore")
    bad = "sum(rate(cpu_temp[5m])"
    explore_box(page).fill(bad)
    page.get_by_role("button", name="Run query").click()
    alert = page.locator("#result [role=alert]")
    alert.wait_for()
    r = requests.get(live + "/api/v1/query_range", timeout=60,
                     params={"query": bad, "start": 0, "end": 60, "step": 15},
                     headers={"Authorization": f"Bearer {populated['admin']}"})
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"
    assert "parse error" in r.json()["error"]
    assert alert.inner_text() == f"{r.json()['error']} (bad_data, HTTP 400)"
    assert page.locator("#series-table").count() == 0
    session.shot("explore-error")

    # A query the parser takes but that cannot be evaluated as a range: Prometheus's message.
    explore_box(page).fill("cpu_temp[5m]")
    page.get_by_role("button", name="Run query").click()
    page.wait_for_function("document.querySelector('#result [role=alert]')?.textContent.includes('range vector')")
    assert "(bad_data, HTTP 400)" in alert.inner_text()

    # A valid query that cannot be evaluated on this data (two series on each side of
    # on(zone)): Prometheus's execution error, a 422.
    many = "cpu_temp + on(zone) cpu_temp"
    explore_box(page).fill(many)
    page.get_by_role("button", name="Run query").click()
    page.wait_for_function("document.querySelector('#result [role=alert]')?.textContent.includes('HTTP 422')")
    sent = [u for u in session.urls if "/api/v1/query_range?" in u][-1]  # the page's request again
    r = requests.get(sent, timeout=60, headers={"Authorization": f"Bearer {populated['admin']}"})
    assert r.status_code == 422 and r.json()["errorType"] == "execution"
    assert alert.inner_text() == f"{r.json()['error']} (execution, HTTP 422)"


def test_explore_shows_a_bad_native_query_error(session, live, populated):
    page = session.page
    session.go("explore?lang=native")
    bad = 'cpu_temp{host=~"("}'
    explore_box(page).fill(bad)
    page.get_by_role("button", name="Run query").click()
    alert = page.locator("#result [role=alert]")
    alert.wait_for()
    r = requests.get(live + "/api/query", params={"query": bad}, timeout=60,
                     headers={"Authorization": f"Bearer {populated['admin']}"})
    assert r.status_code == 400
    assert alert.inner_text() == f"{r.json()['error']} (HTTP 400)"


# -- cardinality, ETL, status ---------------------------------------------------------


def session_key(session: Session) -> str:
    return session.page.evaluate("sessionStorage.getItem('pgpulse.key')")


def test_cardinality_page(session):
    page = session.page
    page.get_by_role("link", name="Cardinality").click()
    page.locator("#card-metrics tbody tr").first.wait_for()
    card = api(session.base, session_key(session), "/api/cardinality", limit=20)
    assert page.locator("#card-metrics tbody th").all_inner_texts() == [m["name"] for m in card["metrics"]]
    assert "cpu_temp" in page.locator("#card-metrics tbody th").all_inner_texts()
    meter = page.get_by_label(re.compile(rf"^Series: {card['series']} of the limit {card['limit']}"))
    assert meter.get_attribute("value") == str(card["series"])
    session.shot("cardinality")


def test_usage_page(session):
    page = session.page
    page.get_by_role("link", name="Usage").click()
    page.locator("#usage-months tbody tr").first.wait_for()
    usage = api(session.base, session_key(session), "/api/usage", months=12)
    assert usage["quota"] == USAGE_QUOTA and usage["used"] > 0  # the live fixture's samples
    meter = page.get_by_label(re.compile(rf"^Samples stored in .+: {usage['used']} of the quota {USAGE_QUOTA} "))
    assert meter.get_attribute("value") == str(usage["used"])
    rows = page.locator("#usage-months tbody tr")
    assert [r.get_attribute("data-month") for r in rows.all()] == [m["month"] for m in usage["months"]]
    assert rows.first.locator("td").inner_text() == str(usage["used"])
    session.shot("usage")


def test_replay_a_reject(session, live, populated, mongo):
    collection = mongo["pgpulse"]["readings"]
    bad = collection.insert_one(reading(50, time="later")).inserted_id
    r = requests.post(live + "/api/sync/reading", timeout=60,
                      headers={"Authorization": f"Bearer {populated['admin']}"})
    assert r.status_code == 200 and r.json()["rejected"] == 1, r.text
    reject_id = next(x["id"] for x in api(live, populated["admin"], "/api/sync/rejects")["rejects"]
                     if x["mongo_id"] == str(bad))
    page = session.page
    page.get_by_role("link", name="Readings ETL").click()
    row = page.locator(f'#rejects tr[data-reject="{reject_id}"]')
    row.wait_for()
    assert "not an RFC 3339 time" in row.inner_text()
    assert page.locator("#runs tbody tr").count() >= 1
    session.shot("etl")
    collection.update_one({"_id": bad}, {"$set": {"time": "2026-11-20T12:00:10Z"}})
    page.get_by_role("button", name=f"Replay reject {reject_id}", exact=True).click()
    page.locator("#replay-result .ok").wait_for()
    assert "1 loaded, 0 rejected again" in page.locator("#replay-result").inner_text()
    row.wait_for(state="detached")
    assert reject_id not in {x["id"] for x in api(live, populated["admin"], "/api/sync/rejects")["rejects"]}


def test_replay_needs_an_admin_key(browser, live, populated, mongo):
    mongo["pgpulse"]["readings"].insert_one(reading(60, time="never"))
    requests.post(live + "/api/sync/reading", timeout=60,
                  headers={"Authorization": f"Bearer {populated['admin']}"}).raise_for_status()
    s = Session(browser, live)
    try:
        s.login(populated["query"])
        s.page.get_by_role("heading", name="Hosts").wait_for()
        s.go("etl")
        s.page.get_by_role("button", name=re.compile(r"^Replay reject \d+$")).first.click()
        alert = s.page.locator("#replay-result [role=alert]")
        alert.wait_for()
        assert "Replay needs an admin key" in alert.inner_text() and "admin" in alert.inner_text()
        assert api(live, populated["admin"], "/api/sync/rejects")["rejects"]
    finally:
        s.close()


def test_status_page(session, test_engine):
    page = session.page
    page.get_by_role("link", name="Status").click()
    page.locator("#tiers tbody tr").first.wait_for()
    assert page.locator("#engine").inner_text() == test_engine
    relations = page.locator("#tiers tbody th").all_inner_texts()
    assert {"system_metrics", "system_metrics_5m", "system_metrics_1h", "samples"} <= set(relations)
    page.get_by_text("Samples ingested").wait_for()
    page.wait_for_function("document.getElementById('figures').textContent.includes('/s')",
                           timeout=TIMEOUT_MS)
    session.shot("status")


# -- accessibility ----------------------------------------------------------------------

PAGES = ("hosts", "host/web1", "explore?query=rate(cpu_temp[5m])", "explore?lang=native&query=cpu_temp",
         "cardinality", "usage", "etl", "status")


def _tab_through(page, presses: int = 60) -> set[str]:
    """What Tab focuses, from the top of the page, ``presses`` times."""
    page.evaluate("""() => { window.__focused = [];
        document.addEventListener('focusin', (ev) => { const e = ev.target;
            window.__focused.push(e.id || e.getAttribute('aria-label') || e.textContent.trim().slice(0, 40)
                                  || e.tagName); }); }""")
    for _ in range(presses):
        page.keyboard.press("Tab")
    return set(page.evaluate("window.__focused"))


@pytest.mark.parametrize("fragment", PAGES)
def test_each_page_is_accessible(session, fragment):
    page = session.page
    session.go(fragment)
    page.locator("main h1").wait_for()
    page.wait_for_load_state("networkidle")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""() => axe.run(document, {runOnly: {type: 'tag',
        values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})""")
    problems = [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]]
    assert not problems, problems
    assert result["passes"], "axe-core checked nothing"

    # Keyboard: Tab reaches the skip link, every page link and every control of the page.
    page.evaluate("document.activeElement && document.activeElement.blur()")
    reached = _tab_through(page)
    controls = page.evaluate("""() => [...document.querySelectorAll(
        'main input, main select, main button, nav a')].filter((e) => e.offsetParent !== null)
        .map((e) => e.id || e.getAttribute('aria-label') || e.textContent.trim().slice(0, 40))""")
    assert "skip" in reached  # the skip link (by its id)
    assert {"Hosts", "Explore", "Cardinality", "Usage", "Readings ETL", "Status"} <= reached
    assert set(controls) <= reached, set(controls) - reached
    # The skip link moves focus to the content.
    page.keyboard.press("Shift+Tab")
    page.evaluate("document.getElementById('skip').focus()")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    session.shot("a11y-" + fragment.split("?")[0].replace("/", "-") + ("-native" if "lang=native" in fragment else ""))
