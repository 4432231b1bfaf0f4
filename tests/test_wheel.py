"""pgpulse installs like a Python package: a wheel, installed (not editable) into a
fresh virtualenv outside the checkout, migrates a fresh database and runs `pgpulse up`.
And every third-party module the packages import is a declared dependency.

How the wheel is tested, and why:

* The wheel is built by ``pip wheel --no-deps`` (with build isolation, so setuptools
  comes from pyproject's ``build-system``, from pip's cache after the first time) from
  a copy of exactly what the Docker build sees (.dockerignore's allow-list): a file
  the package needs but the build leaves out fails here as it would in the image.
* The virtualenv is made without pip and without system site-packages, and the wheel
  goes in with ``pip --python <venv> install --no-deps --no-index``: only the wheel's
  own files land in it, nothing is fetched from an index.
* Its dependencies come from the test environment: a ``.pth`` file written *after*
  the install appends the test environment's site-packages to the venv's path. A path
  in a ``.pth`` is not a site directory, so the ``.pth`` files inside it (among them
  the checkout's editable install) are not processed: the checkout stays invisible,
  and the venv's own site-packages comes first. A test checks both.

This keeps the test fast and offline while it checks what matters here, the
package's own files (migrations as package data, entry point, imports); that the
declared dependencies are the imported ones is checked from the sources below.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
import venv
from pathlib import Path

import psycopg
import pytest
from polling import wait_for

from pgpulse import schema

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = [p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- declared dependencies ---------------------------------------------------------


def imported_modules() -> dict[str, set[str]]:
    """Top-level names of every absolute import in the packages (lazy ones included),
    outside the standard library and the packages themselves -> the files importing them."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def declared_distributions() -> set[str]:
    return {normalise(re.match(r"[A-Za-z0-9._-]+", dep).group(0))
            for dep in PYPROJECT["project"]["dependencies"]}


def test_every_imported_module_is_a_declared_dependency():
    modules = imported_modules()
    assert {"psycopg", "flask", "alembic"} <= set(modules), "the import scan found too little"
    providers = importlib.metadata.packages_distributions()
    declared = declared_distributions()
    undeclared = {}
    for module, files in sorted(modules.items()):
        dists = {normalise(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported by {sorted(files)}) is not installed in the test environment"
        if not dists & declared:
            undeclared[module] = (sorted(dists), sorted(files))
    assert not undeclared, f"declare in pyproject.toml [project] dependencies: {undeclared}"


def test_the_scan_sees_lazy_imports():
    # pgserver is imported only inside functions; a scan of module tops would miss it.
    assert "pgserver" in imported_modules()
    assert "requests" in imported_modules() and "requests" in declared_distributions()


# -- the wheel in a fresh virtualenv -------------------------------------------------


def image_sources() -> list[str]:
    """What the Docker build context lets in (the allow-list of .dockerignore)."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line[1:].rstrip("/") for line in lines if line.startswith("!")]


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv holding the built wheel; returns its directory."""
    tmp = tmp_path_factory.mktemp("wheel")
    src, dist, env_dir = tmp / "src", tmp / "dist", tmp / "venv"
    src.mkdir()
    for name in image_sources():
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules"))
        else:
            shutil.copy2(ROOT / name, src / name)
    # The Docker build copies the console's npm libraries in from its node stage
    # (COPY --from=console ...), as `make console` puts them in a checkout.
    shutil.copytree(ROOT / "proxy" / "console" / "node_modules", src / "proxy" / "console" / "node_modules")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
         "-w", str(dist), str(src)],
        cwd=tmp, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(dist.glob("pgpulse-*.whl"))
    assert len(wheels) == 1, wheels

    venv.EnvBuilder(with_pip=False, system_site_packages=False, clear=True).create(env_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv_python(env_dir)), "install", "--no-deps",
         "--no-index", "--quiet", "--disable-pip-version-check", str(wheels[0])],
        cwd=tmp, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # Dependencies from the test environment, appended after the venv's own packages.
    proc = subprocess.run(
        [str(venv_python(env_dir)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, timeout=60, check=True)
    site = Path(proc.stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "test_environment.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    return env_dir


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: no pgpulse settings, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PGPULSE_", "DATABASE_URL", "COLLECTOR_", "MONGO_", "PROXY_", "PYTHON"))
           and k not in ("PORT", "VIRTUAL_ENV")}
    env.update({"PGPULSE_DATA_DIR": str(tmp_path / "var"), "LOG_FORMAT": "text"})
    env.update(extra)
    return env


def test_the_packages_come_from_the_wheel_not_the_checkout(installed, tmp_path):
    code = (
        "import json, collector, etl, proxy, pgpulse, pgpulse.schema as s\n"
        "print(json.dumps({m.__name__: m.__file__ for m in (collector, etl, proxy, pgpulse)}"
        " | {'migrations': str(s.MIGRATIONS)}))"
    )
    proc = subprocess.run([str(venv_python(installed)), "-c", code], env=clean_env(tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name, where in json.loads(proc.stdout).items():
        assert Path(where).is_relative_to(installed), f"{name} imported from {where}"
    migrations = Path(json.loads(proc.stdout)["migrations"])
    assert (migrations / "env.py").is_file() and (migrations / "script.py.mako").is_file()
    shipped = sorted(p.name for p in (migrations / "versions").glob("*.py"))
    assert shipped == sorted(p.name for p in (schema.MIGRATIONS / "versions").glob("*.py"))


def test_the_wheel_carries_the_console(installed, tmp_path):
    code = ("from proxy import assets; print(assets.STATIC_DIR.parent.parent.parent.name, "
            "sorted(p.name for p in assets.STATIC_DIR.iterdir()), assets.missing())")
    proc = subprocess.run([venv_python(installed), "-c", code], env=clean_env(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split(" ", 1) == [
        "site-packages", "['app.css', 'app.js', 'favicon.svg', 'index.html'] []\n"]


def test_installed_pgpulse_migrates_a_fresh_database(installed, empty_db_url, tmp_path, test_engine):
    env = clean_env(tmp_path, DATABASE_URL=empty_db_url)
    proc = subprocess.run([str(installed / "bin" / "pgpulse"), "migrate"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"schema at {schema.head_revision()} (engine: {test_engine})" in proc.stdout
    with psycopg.connect(empty_db_url) as conn:
        assert schema.current_revision(conn) == schema.head_revision()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_installed_pgpulse_up_serves_and_stops_cleanly(installed, empty_db_url, tmp_path, stop_signal):
    port = free_port()
    env = clean_env(tmp_path, DATABASE_URL=empty_db_url, PORT=str(port), PGPULSE_AUTH="off")
    proc = subprocess.Popen([str(installed / "bin" / "pgpulse"), "up", "--no-collector"], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: proc.poll() is not None or health(port), 120, "the proxy's /health")
        assert proc.poll() is None, proc.communicate()[0]
    finally:
        proc.send_signal(stop_signal)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert f"received {stop_signal.name}, stopping" in out
    assert "proxy stopped" in out and "scheduler stopped" in out
    with psycopg.connect(empty_db_url) as conn:
        assert schema.current_revision(conn) == schema.head_revision()
