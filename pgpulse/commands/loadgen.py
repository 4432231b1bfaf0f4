"""``pgpulse loadgen app|ingest``: traffic for the demo app, or ingest load in each
protocol for benchmarks (pgpulse/loadgen/).

``app`` drives an HTTP app (the demo app of ``make demo`` by default) with weighted
endpoints, a rate, a pattern and a share of bad requests; ``ingest`` posts batches of
samples to an ingest endpoint (pgpulse's JSON, OTLP or Influx line protocol) at a rate
of requests per second. Both print a progress line every few seconds and a summary
at the end; Ctrl-C ends a run early, still with its summary.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from pgpulse.loadgen.schedule import PATTERNS


def register(sub) -> None:
    p = sub.add_parser("loadgen", help="generate load: requests to an app, or ingest in each protocol")
    modes = p.add_subparsers(dest="loadgen_mode", required=True, metavar="MODE")

    def common(q) -> None:
        q.add_argument("--rate", type=float, default=10.0, help="requests per second (default 10)")
        q.add_argument("--duration", type=float, default=60.0,
                       help="seconds to run (default 60; 0: until Ctrl-C)")
        q.add_argument("--pattern", choices=PATTERNS, default="steady",
                       help="steady; bursts (every --burst-every s, --burst-length s at --burst-factor x "
                            "the rate); wave (a sine of period --wave-period s around the rate)")
        q.add_argument("--burst-every", type=float, default=60.0)
        q.add_argument("--burst-length", type=float, default=10.0)
        q.add_argument("--burst-factor", type=float, default=4.0)
        q.add_argument("--wave-period", type=float, default=300.0)
        q.add_argument("--even", action="store_true",
                       help="evenly spaced requests instead of Poisson arrivals")
        q.add_argument("--concurrency", type=int, default=32, help="most requests in flight (default 32)")
        q.add_argument("--seed", type=int, default=None, help="seed of the random choices (repeatable runs)")
        q.add_argument("--progress-every", type=float, default=10.0, help="seconds between progress lines")
        q.add_argument("--json", action="store_true", help="print the summary as JSON")

    a = modes.add_parser("app", help="drive an HTTP app (default: the demo app of `make demo`)")
    a.add_argument("--url", default="http://127.0.0.1:8090", help="the app's base URL")
    a.add_argument("--endpoint", dest="endpoints", action="append", metavar="'METHOD /path=WEIGHT'",
                   help="an endpoint and its weight; repeat (default: the demo app's endpoints)")
    a.add_argument("--error-ratio", type=float, default=0.02,
                   help="share of requests sent wrong on purpose, answered 4xx (default 0.02)")
    common(a)
    a.set_defaults(func=run_app)

    i = modes.add_parser("ingest", help="post samples to an ingest endpoint, for benchmarks")
    i.add_argument("--url", default="http://127.0.0.1:8085", help="pgpulse's base URL")
    i.add_argument("--protocol", choices=("json", "otlp", "influx", "remote_write"), default="json")
    i.add_argument("--encoding", choices=("protobuf", "json"), default="protobuf",
                   help="OTLP's encoding (default protobuf)")
    i.add_argument("--path", default=None,
                   help="the endpoint's path (default: pgpulse's for the protocol; another "
                        "receiver's for side-by-side runs)")
    i.add_argument("--batch", type=int, default=100, help="samples per request (default 100)")
    i.add_argument("--series", type=int, default=1000, help="distinct series (default 1000)")
    i.add_argument("--gzip", action="store_true", help="gzip the bodies")
    i.add_argument("--api-key-file", type=Path, default=None,
                   help="a file holding an API key with the ingest scope ('-': read it from stdin)")
    common(i)
    i.set_defaults(func=run_ingest)


def _pattern(args):
    from pgpulse.loadgen.schedule import Pattern

    return Pattern(args.pattern, args.rate, burst_every=args.burst_every, burst_length=args.burst_length,
                   burst_factor=args.burst_factor, wave_period=args.wave_period)


def _read_key(path: Path | None) -> str | None:
    if path is None:
        return None
    text = sys.stdin.readline() if str(path) == "-" else path.read_text()
    return text.strip() or None


def _go(args, make, sender, tally) -> int:
    """Run the schedule on the real clock, then report."""
    from pgpulse.loadgen.schedule import SystemClock, arrivals, run
    from pgpulse.runtime import stop_on_signals

    pattern = _pattern(args)
    stop = stop_on_signals()
    rng = random.Random(args.seed)
    duration = args.duration if args.duration > 0 else None
    print(f"loadgen: {args.rate:g} req/s ({args.pattern}) for "
          f"{'ever (Ctrl-C stops)' if duration is None else f'{duration:g} s'} -> {args.url}", file=sys.stderr)
    try:
        seconds = run(arrivals(pattern, rng, poisson=not args.even), make, sender, SystemClock(stop),
                      duration=duration, stop=stop,
                      progress=lambda t: print(tally.progress_line(t), file=sys.stderr),
                      progress_every=args.progress_every)
    finally:
        sender.close(wait=not stop.is_set())
    summary = tally.summary(seconds)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(tally.progress_line(seconds), file=sys.stderr)
        for endpoint, n in summary["by_endpoint"].items():
            print(f"  {n:>8}  {endpoint}")
        if summary["failures"]:
            print("  failures: " + "; ".join(f"{k} (x{v})" for k, v in summary["failures"].items()))
    if summary["sent"] and not summary["answered"] - summary["by_status"].get("0", 0):
        print(f"loadgen: no request got an answer from {args.url}", file=sys.stderr)
        return 1
    return 0


def _check(args) -> str | None:
    if not args.rate > 0:
        return "--rate must be > 0"
    if args.duration < 0:
        return "--duration must be >= 0"
    if args.concurrency < 1:
        return "--concurrency must be >= 1"
    return None


def run_app(args) -> int:
    from pgpulse.loadgen.schedule import DEMO_ENDPOINTS, Endpoint, Picker, Tally
    from pgpulse.loadgen.sender import HttpSender

    try:
        problem = _check(args)
        if problem:
            raise ValueError(problem)
        endpoints = [Endpoint.parse(e) for e in args.endpoints] if args.endpoints else list(DEMO_ENDPOINTS)
        picker = Picker(endpoints, random.Random(args.seed), error_ratio=args.error_ratio)
        _pattern(args)
    except ValueError as exc:
        print(f"pgpulse loadgen: {exc}", file=sys.stderr)
        return 2
    tally = Tally()
    sender = HttpSender(args.url, tally, concurrency=args.concurrency)
    return _go(args, picker.pick, sender, tally)


def run_ingest(args) -> int:
    from pgpulse.loadgen import payloads
    from pgpulse.loadgen.schedule import Tally
    from pgpulse.loadgen.sender import HttpSender

    try:
        problem = _check(args) or ("--batch must be >= 1" if args.batch < 1 else None) or (
            "--series must be >= 1" if args.series < 1 else None)
        if problem:
            raise ValueError(problem)
        _pattern(args)
        key = _read_key(args.api_key_file)
    except (ValueError, OSError) as exc:
        print(f"pgpulse loadgen: {exc}", file=sys.stderr)
        return 2
    series = payloads.SeriesSet(args.series)
    build = payloads.builder(args.protocol, encoding=args.encoding, start_ns=time.time_ns())
    headers = payloads.auth_headers(args.protocol, key)
    # What Influx clients send with every write: a bucket, an organisation and the precision.
    params = {"bucket": "loadgen", "org": "pgpulse", "precision": "ns"} if args.protocol == "influx" else {}

    def make() -> payloads.Payload:
        return payloads.payload(series.take(args.batch, time.time_ns()), build, headers=headers,
                                compress=args.gzip)

    tally = Tally()
    sender = HttpSender(args.url, tally, concurrency=args.concurrency,
                        path=args.path or payloads.DEFAULT_PATHS[args.protocol], params=params)
    return _go(args, make, sender, tally)
