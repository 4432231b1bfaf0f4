"""What shipping logs to Loki costs the code that logs (pgpulse.logs.LokiShipper).

    .venv/bin/python bench/bench_logging.py [--lines 20000]

The caller's time per log call, for a logger writing JSON lines to a stream (what
every pgpulse process does on stdout), alone and with the Loki shipper added, to a
fast local receiver (a stand-in for Loki on 127.0.0.1 answering 204 at once, in a
process of its own) and to a hung one (accepts connections, never answers: the
queue fills and lines are dropped). The ceiling is python-logging-loki's own
LokiHandler used directly: one synchronous push per call, to the same receiver.
Prints a table and the ratio of the shipper's worst case to that ceiling.
"""

from __future__ import annotations

import argparse
import io
import logging
import multiprocessing
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pgpulse.logs import JsonFormatter, LokiShipper  # noqa: E402


class _Fast(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _serve(ports) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fast)
    ports.put(server.server_address[1])
    server.serve_forever()


def sync_per_call_us(lines: int, url: str) -> float:
    """python-logging-loki's LokiHandler on its own: the caller waits for each push."""
    import logging_loki

    logger = logging.getLogger("bench.logging.sync")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging_loki.LokiHandler(url=url + "/loki/api/v1/push", tags={"service": "bench"}, version="1")
    handler.setFormatter(JsonFormatter("bench"))
    logger.addHandler(handler)
    start = time.perf_counter()
    for i in range(lines):
        logger.info("request served in %d ms", i % 100, extra={"route": "/api/query", "status": 200})
    elapsed = time.perf_counter() - start
    logger.removeHandler(handler)
    return elapsed / lines * 1e6


def per_call_us(lines: int, shipper: LokiShipper | None) -> float:
    logger = logging.getLogger(f"bench.logging.{id(shipper)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    stream = logging.StreamHandler(io.StringIO())
    stream.setFormatter(JsonFormatter("bench"))
    logger.addHandler(stream)
    if shipper is not None:
        logger.addHandler(shipper.handler)
        shipper.start()
    start = time.perf_counter()
    for i in range(lines):
        logger.info("request served in %d ms", i % 100, extra={"route": "/api/query", "status": 200})
    elapsed = time.perf_counter() - start
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    if shipper is not None:
        shipper.stop(timeout=2.0)
    return elapsed / lines * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=20000)
    args = parser.parse_args()

    ports = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    receiver.start()
    fast_url = f"http://127.0.0.1:{ports.get(timeout=30)}"
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    hung_url = f"http://127.0.0.1:{hung.getsockname()[1]}"

    per_call_us(2000, None)  # warm-up
    base = per_call_us(args.lines, None)
    fast = LokiShipper(fast_url, "bench", capacity=args.lines)
    with_fast = per_call_us(args.lines, fast)
    dead = LokiShipper(hung_url, "bench", capacity=1000, timeout=1.0)
    with_hung = per_call_us(args.lines, dead)
    sync = sync_per_call_us(max(args.lines // 10, 100), fast_url)
    receiver.terminate()
    receiver.join()
    hung.close()

    rows = [
        ("JSON to a stream only", base, "-", "-"),
        ("+ shipper, fast receiver", with_fast, f"{fast.sent}", f"{fast.dropped}"),
        ("+ shipper, hung receiver (queue 1,000)", with_hung, f"{dead.sent}", f"{dead.dropped}"),
        ("LokiHandler alone, synchronous (ceiling)", sync, "all", "0"),
    ]
    print(f"{args.lines} log calls per case")
    print(f"{'case':<42} {'us/call':>9} {'sent':>8} {'dropped':>8}")
    for name, us, sent, dropped in rows:
        print(f"{name:<42} {us:>9.1f} {sent:>8} {dropped:>8}")
    worst = max(with_fast, with_hung)
    print(f"\nshipper's worst cost per call {worst:.1f} us, synchronous push {sync:.1f} us: "
          f"ratio {worst / sync:.3f}; over the stream alone: +{worst - base:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
