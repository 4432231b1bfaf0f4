"""The console's front-end libraries: installed from npm at install time, never committed.

``proxy/console/package.json`` and its ``package-lock.json`` name the libraries (uPlot
for the charts); ``npm ci`` puts them in ``proxy/console/node_modules`` (git-ignored),
and the proxy serves the few files listed in :data:`VENDOR` from there. ``make console``
(run by ``make run``, ``make test`` and the Docker build) calls :func:`ensure_installed`,
which runs ``npm ci`` under a lock and only when the lock file changed, so two
installs side by side never empty each other's ``node_modules``.

Without them the proxy still serves everything else; ``/`` then answers 503 with
what to run (:func:`missing`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
STATIC_DIR = CONSOLE_DIR / "static"
MODULES_DIR = CONSOLE_DIR / "node_modules"
_STAMP = MODULES_DIR / ".pgpulse-install-stamp"

# URL name under /console/vendor/ -> file under node_modules: all the console loads.
VENDOR: dict[str, str] = {
    "uPlot.iife.min.js": "uplot/dist/uPlot.iife.min.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
}


class AssetError(RuntimeError):
    """npm is missing or ``npm ci`` failed."""


def vendor_path(name: str) -> Path | None:
    """The file served as /console/vendor/<name>, or None when it is not one of them."""
    relative = VENDOR.get(name)
    return None if relative is None else MODULES_DIR / relative


def missing() -> list[str]:
    """The vendored files that are not installed (empty when the console can run)."""
    return [name for name, relative in VENDOR.items() if not (MODULES_DIR / relative).is_file()]


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update(name.encode())
        digest.update((CONSOLE_DIR / name).read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    # Outside the work tree (npm ci replaces node_modules): one lock per checkout.
    tag = hashlib.sha256(str(CONSOLE_DIR).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"pgpulse-console-{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_installed() -> bool:
    """Run ``npm ci`` in proxy/console unless its libraries are up to date; returns
    whether it ran. Raises :class:`AssetError` when npm is missing or fails."""
    want = _fingerprint()
    if _STAMP.is_file() and _STAMP.read_text() == want and not missing():
        return False
    npm = shutil.which("npm")
    if npm is None:
        raise AssetError("`npm` not found on PATH: the console's chart library (uPlot) is "
                         "installed from npm (apt-get install npm)")
    with _install_lock():
        if _STAMP.is_file() and _STAMP.read_text() == want and not missing():
            return False  # another process did it meanwhile
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=CONSOLE_DIR, capture_output=True, text=True, timeout=600,
                              check=False)
        if proc.returncode != 0 or missing():
            raise AssetError(f"`npm ci` in {CONSOLE_DIR} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        _STAMP.write_text(want)
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m proxy.assets [--optional]``: install the console's libraries.
    ``--optional``: when that fails (no npm, offline), say so and succeed anyway."""
    args = sys.argv[1:] if argv is None else argv
    try:
        ran = ensure_installed()
    except AssetError as exc:
        print(f"console: {exc}", file=sys.stderr)
        if "--optional" in args:  # `make run`: pgpulse itself does not need it
            print("console: pgpulse runs without it; the web console at / says what is missing",
                  file=sys.stderr)
            return 0
        return 1
    print("console: front-end libraries installed" if ran else "console: front-end libraries up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
