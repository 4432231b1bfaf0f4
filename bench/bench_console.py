"""The console's time to interactive: 50 hosts with a year of hourly data, in Debian's
Chromium (headless, Playwright), against a live proxy on this machine.

    .venv/bin/python bench/bench_console.py [--runs 5]

For each page, the time from the start of navigation until its data is on screen
(the Hosts table with every host's figures; every chart of a host drawn), median of
``--runs`` loads, and its ratio to the ceiling of one second. The 1h tier is filled
directly (a year of raw snapshots would take long to generate); raw snapshots cover
the last two hours, rolled up by the portable engine's own refresh.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
from pathlib import Path

import psycopg
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _db import bench_database, table  # noqa: E402

from pgpulse.tiers import HOST_FIELDS  # noqa: E402
from proxy import close_app, create_app  # noqa: E402

HOSTS = 50
CEILING_MS = 1000.0
FIELDS = ("cpu_percent", "mem_percent", "load1", "rootfs_percent", "disk_read_bps",
          "disk_write_bps", "net_rx_bps", "net_tx_bps")


def seed(url: str) -> None:
    doc = ("jsonb_build_object('cpu', jsonb_build_object('percent', random() * 100), "
           "'memory', jsonb_build_object('percent', 50), 'load', jsonb_build_object('load1', 1), "
           "'disk', jsonb_build_object('read_bytes_per_s', 1e6, 'write_bytes_per_s', 2e6), "
           "'network', jsonb_build_object('rx_bytes_per_s', 3e6, 'tx_bytes_per_s', 4e6), "
           "'filesystems', jsonb_build_object('/', jsonb_build_object('percent', 40, 'total', 1e11)))")
    cols = ", ".join(f"{f}_count, {f}_sum, {f}_min, {f}_max, {f}_last" for f in HOST_FIELDS)
    values = ", ".join("360, 360 * 50.0, 0, 100, 50" for _ in HOST_FIELDS)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO system_metrics (time, host, data) "  # noqa: S608 - constants only
            f"SELECT now() - m * interval '1 minute', 'host-' || lpad(h::text, 2, '0'), {doc} "
            "FROM generate_series(0, 119) m, generate_series(1, %s) h", (HOSTS,))
        conn.execute("SELECT * FROM pgpulse_refresh_tiers(interval '3 hours', interval '14 days', interval '90 days')")
        conn.execute(
            f"INSERT INTO pgpulse_system_metrics_1h_store (bucket, host, snapshots, {cols}) "  # noqa: S608
            f"SELECT b, 'host-' || lpad(h::text, 2, '0'), 360, {values} FROM generate_series("
            "date_bin('1 hour', now() - interval '365 days', 'epoch'), "
            "pgpulse_watermark('system_metrics_1h') - interval '3 hours', interval '1 hour') b, "
            "generate_series(1, %s) h ON CONFLICT DO NOTHING", (HOSTS,))
        conn.execute("ANALYZE")


HOSTS_READY = """(n) => document.querySelectorAll('#hosts tbody tr').length === n &&
    [...document.querySelectorAll('#hosts td[data-field="cpu_percent"]')].every((td) => td.textContent.includes('%'))"""
CHARTS_READY = """([fields, tier]) => fields.every((f) => {
    const fig = document.querySelector(`figure[data-field="${f}"]`);
    const plot = fig && fig.querySelector('.plot');
    return fig && fig.dataset.tier === tier && plot.dataset.points > 0 && plot.uplot; })"""


def load_ms(page, url: str, ready: str, arg) -> float:
    page.goto("about:blank")
    page.goto(url)
    page.wait_for_function(ready, arg=arg, timeout=120_000, polling="raf")
    return page.evaluate("performance.now()")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    with bench_database("pgpulse_bench_console") as url:
        seed(url)
        app = create_app({"DATABASE_URL": url, "PGPULSE_AUTH": "off", "LOG_LEVEL": "warning"})
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.server_port}/"
        rows = []
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                            args=["--no-sandbox", "--disable-dev-shm-usage"])
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                cases = [("Hosts, 50 hosts", base + "#/hosts", HOSTS_READY, HOSTS)]
                for name, tier in (("1h", "raw"), ("24h", "5m"), ("30d", "1h"), ("1y", "1h")):
                    cases.append((f"host page, {name} (tier {tier})", base + f"#/host/host-07?range={name}",
                                  CHARTS_READY, [list(FIELDS), tier]))
                for name, target, ready, arg in cases:
                    load_ms(page, target, ready, arg)  # warm-up
                    ms = statistics.median(load_ms(page, target, ready, arg) for _ in range(args.runs))
                    rows.append((name, f"{ms:.0f}", f"{ms / CEILING_MS:.2f}"))
                browser.close()
        finally:
            server.shutdown()
            thread.join(timeout=30)
            close_app(app)
    print(f"console time to data on screen, median of {args.runs} loads (ceiling {CEILING_MS:.0f} ms)\n")
    print(table(rows, ("page", "ms", "ratio to ceiling")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
