"""A newcomer's first run, timed: a fresh clone, ``make run``, and this host in the
console in a browser (Debian's Chromium, headless, Playwright).

    .venv/bin/python bench/first_run.py [--repo .] [--keep]

Clones ``--repo`` (its committed HEAD) into a temporary directory and runs ``make
run`` there as a newcomer would, with empty pip and npm caches (a fresh machine has
none) and a free port. Times, from the start of ``make run``:

* each install step it announces (``==> [n/3] ...``) and the banner (``pgpulse is up``);
* the host listed by the console's API (``/api/hosts``, with the admin key the banner
  prints);
* the host on the console's Hosts page in the browser, logged in with that key;
* the host's CPU chart drawn with at least one point.

The last figure is the one the first-run goal is about (under three minutes); the
others say where the time goes. Prints a table and writes ``--json`` if given.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
GOAL_S = 180.0
DEADLINE_S = 900.0  # give up: something is broken, not slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Output:
    """Lines of ``make run`` (stdout and stderr merged) with the time each arrived."""

    def __init__(self, proc: subprocess.Popen, t0: float, log: Path) -> None:
        self.lines: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.t0 = t0
        self.thread = threading.Thread(target=self._read, args=(proc, log), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen, log: Path) -> None:
        with open(log, "w") as out:
            for line in proc.stdout:
                with self.lock:
                    self.lines.append((time.monotonic() - self.t0, line.rstrip("\n")))
                out.write(line)
                out.flush()

    def first(self, pattern: str) -> tuple[float, re.Match] | None:
        with self.lock:
            for t, line in self.lines:
                m = re.search(pattern, line)
                if m:
                    return t, m
        return None

    def text(self) -> str:
        with self.lock:
            return "\n".join(line for _, line in self.lines)


def wait(what: str, check, proc: subprocess.Popen, out: Output, t0: float):
    while True:
        got = check()
        if got:
            return got
        if proc.poll() is not None:
            raise SystemExit(f"make run exited ({proc.returncode}) before {what}:\n{out.text()[-4000:]}")
        if time.monotonic() - t0 > DEADLINE_S:
            raise SystemExit(f"gave up waiting for {what} after {DEADLINE_S:.0f} s:\n{out.text()[-4000:]}")
        time.sleep(0.25)


def newcomer_env(work: Path, port: int) -> dict[str, str]:
    """The user's environment without pgpulse's own settings, with empty caches."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PGPULSE_", "DATABASE_URL", "OTEL_", "PROXY_", "COLLECTOR_", "LOG_"))
           and k not in ("PORT", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    env["PORT"] = str(port)
    env["PIP_CACHE_DIR"] = str(work / "pip-cache")
    env["npm_config_cache"] = str(work / "npm-cache")
    return env


def run(repo: Path, keep: bool) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="pgpulse-first-run-"))
    clone = work / "pgpulse"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(repo), str(clone)], check=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    proc = subprocess.Popen(["make", "run"], cwd=clone, env=newcomer_env(work, port), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    out = Output(proc, t0, work / "make-run.log")
    times: dict[str, float] = {}
    try:
        for step in (1, 2, 3):
            t, _ = wait(f"step {step}", lambda s=step: out.first(rf"^==> \[{s}/3\]"), proc, out, t0)
            times[f"step {step} starts"] = t
        t, _ = wait("the banner", lambda: out.first(r"pgpulse is up"), proc, out, t0)
        times["banner"] = t
        _, m = wait("the key", lambda: out.first(r"(pgpk_[A-Za-z0-9_-]{20,})"), proc, out, t0)
        key = m.group(1)
        headers = {"Authorization": f"Bearer {key}"}

        def host_in_api() -> str | None:
            r = requests.get(f"{base}/api/hosts", headers=headers, timeout=30)
            hosts = r.json().get("hosts", []) if r.status_code == 200 else []
            return hosts[0]["host"] if hosts else None

        host = wait("a host in /api/hosts", host_in_api, proc, out, t0)
        times["host in the API"] = time.monotonic() - t0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-dev-shm-usage"])
            try:
                page = browser.new_page()
                page.set_default_timeout(DEADLINE_S * 1000)
                page.goto(base + "/")
                page.get_by_label("API key").fill(key)
                page.get_by_role("button", name="Log in").click()
                page.get_by_role("link", name=host).first.wait_for()
                times["host in the browser"] = time.monotonic() - t0
                page.get_by_role("link", name=host).first.click()
                page.wait_for_function("""() => {
                    const plot = document.querySelector('figure[data-field="cpu_percent"] .plot');
                    return plot && plot.uplot && plot.uplot.data[1].some((y) => y !== null);
                }""")
                times["CPU chart in the browser"] = time.monotonic() - t0
            finally:
                browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    return times


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="the repository to clone (default: this one)")
    parser.add_argument("--keep", action="store_true", help="keep the clone and its log")
    parser.add_argument("--json", type=Path, help="also write the times here")
    args = parser.parse_args(argv)
    times = run(args.repo.resolve(), args.keep)
    print(f"{'from the start of make run':<30} {'seconds':>8}")
    for name, t in times.items():
        print(f"{name:<30} {t:>8.1f}")
    total = times["CPU chart in the browser"]
    print(f"\nfirst run: {total:.0f} s, {total / GOAL_S:.2f} of the {GOAL_S:.0f} s goal")
    if args.json:
        args.json.write_text(json.dumps(times, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
