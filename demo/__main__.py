"""``python -m demo``: run the demo app, exporting its metrics to pgpulse over OTLP/HTTP.

    python -m demo --port 8090 --otlp-endpoint http://127.0.0.1:8085/v1/metrics \\
        --api-key-file var/demo/api-key

Without --otlp-endpoint the SDK's variables apply (``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_METRIC_EXPORT_INTERVAL``). Ctrl-C or SIGTERM
stops it after a last export.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from werkzeug.serving import make_server

from demo import telemetry
from demo.app import Behaviour, create_app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--otlp-endpoint", default=None,
                   help="pgpulse's OTLP metrics URL, e.g. http://127.0.0.1:8085/v1/metrics")
    p.add_argument("--api-key-file", type=Path, default=None, help="a file holding a key with the ingest scope")
    p.add_argument("--export-interval", type=float, default=None,
                   help="seconds between exports (default: OTEL_METRIC_EXPORT_INTERVAL, else 60)")
    p.add_argument("--error-rate", type=float, default=Behaviour.error_rate,
                   help="share of orders that fail 5xx (default %(default)s)")
    p.add_argument("--latency-scale", type=float, default=Behaviour.latency_scale,
                   help="factor on every simulated delay (default %(default)s; 0: none)")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)

    api_key = args.api_key_file.read_text().strip() if args.api_key_file else None
    interval = args.export_interval * 1000 if args.export_interval else None
    provider = telemetry.meter_provider(telemetry.exporting_reader(args.otlp_endpoint, api_key, interval))
    instruments = telemetry.Instruments(provider.get_meter("pgpulse.demo"))
    app = create_app(instruments, Behaviour(args.error_rate, args.latency_scale, args.seed))
    server = make_server(args.host, args.port, app, threaded=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request: the metrics count them

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, name="demo-http", daemon=True)
    thread.start()
    print(f"demo app on http://{args.host}:{server.server_port}, metrics to "
          f"{args.otlp_endpoint or 'the OTEL_EXPORTER_OTLP_* endpoint'}", file=sys.stderr, flush=True)
    stop.wait()
    server.shutdown()
    provider.shutdown()  # a last export of what was counted
    return 0


if __name__ == "__main__":
    sys.exit(main())
