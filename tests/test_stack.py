"""The full stack's files: docker-compose.yml, the Dockerfile, .env.example, the
database init script, the Grafana/Loki/Promtail/Alloy configuration, the Makefile
and the stack's backup/restore scripts.

There is no Docker engine on these machines. The compose file is validated by
Debian's ``docker-compose config`` (installed by .ci/run), which interpolates the
variables exactly as ``docker compose`` does, with and without the required ones.
The backup/restore scripts run against a stand-in for Docker Compose
(``fake_compose`` below: a script that records its arguments and exits 0, or 1 for
a chosen command), which checks their order of operations; the real commands run
in the stack. The init script runs against the real PostgreSQL server.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql

from pgpulse import backup as backups
from pgpulse.cli import build_parser
from pgpulse.commands import collect, migrate
from pgpulse.commands import proxy as proxy_command
from pgpulse.commands import scheduler as scheduler_command

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
REQUIRED = ["POSTGRES_PASSWORD", "DB_PASSWORD", "GRAFANA_DB_PASSWORD", "GF_SECURITY_ADMIN_PASSWORD",
            "MONGO_ROOT_PASSWORD"]
SERVERS = ["db", "mongo", "loki", "promtail", "alloy", "grafana", "proxy", "redis"]


def docker_compose() -> str:
    path = shutil.which("docker-compose")
    assert path, "docker-compose is not installed (apt-get install docker-compose; .ci/run does it)"
    return path


def compose_config(tmp_path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    env_file = tmp_path / "stack.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return subprocess.run(
        [docker_compose(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *extra, "config", *(
            [] if extra else ["-q"])],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        # Only what a user's shell would add; none of the stack's variables.
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )


def secrets() -> dict[str, str]:
    return {name: f"s3cret{i}" for i, name in enumerate(REQUIRED)}


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict:
    """docker-compose.yml as Compose resolves it (anchors merged, variables filled)."""
    tmp = tmp_path_factory.mktemp("compose")
    proc = compose_config(tmp, secrets(), "--profile", "alloy", "--profile", "tools")
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


# -- docker-compose.yml ---------------------------------------------------------------


def test_compose_file_is_valid_with_the_secrets(tmp_path):
    proc = compose_config(tmp_path, secrets())
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("missing", REQUIRED)
def test_a_missing_secret_stops_compose_with_its_message(tmp_path, missing):
    env = {k: v for k, v in secrets().items() if k != missing}
    proc = compose_config(tmp_path, env)
    assert proc.returncode != 0
    assert f"set {missing} in .env" in proc.stderr, proc.stderr


def test_an_empty_secret_counts_as_missing(tmp_path):
    proc = compose_config(tmp_path, {**secrets(), "DB_PASSWORD": ""})
    assert proc.returncode != 0 and "set DB_PASSWORD in .env" in proc.stderr


def test_every_compose_variable_is_in_env_example():
    text = COMPOSE_FILE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used, "no variables found"
    missing = used - set(env_example())
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_secrets_have_no_working_default():
    text = COMPOSE_FILE.read_text()
    for match in re.finditer(r"\$\{([A-Z_]*PASSWORD[A-Z_]*)(:?[-?])", text):
        assert match.group(2) == ":?", f"{match.group(1)} must use ${{VAR:?message}}"
    example = env_example()
    for name in REQUIRED:
        assert example[name] == "", f".env.example must leave {name} empty"


def test_images_are_pinned(resolved):
    for name, service in resolved["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"
        if name not in ("migrate", "proxy", "collector", "scheduler"):
            assert re.match(r"v?\d+\.\d+", tag), f"{name}: {image} should name a version"
    assert resolved["services"]["db"]["image"].startswith("timescale/timescaledb:2.")
    assert resolved["services"]["db"]["image"].endswith("-pg16")


def test_servers_have_healthchecks_and_restart_policies(resolved):
    services = resolved["services"]
    for name in SERVERS:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert services[name]["restart"] == "unless-stopped", name
    assert services["collector"]["restart"] == "unless-stopped"
    assert services["scheduler"]["restart"] == "unless-stopped"
    assert services["migrate"]["restart"] == "no"


def test_start_order_waits_for_health_and_migrations(resolved):
    services = resolved["services"]
    for name in ("proxy", "collector", "scheduler", "grafana"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["proxy"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["proxy"]["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert services["proxy"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["proxy"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert services["promtail"]["depends_on"]["loki"]["condition"] == "service_healthy"


def test_volumes_network_and_ports(resolved):
    assert {"postgres_data", "grafana_data", "loki_data", "mongo_data"} <= set(resolved["volumes"])
    assert list(resolved["networks"]) == ["pgpulse"]
    published = {name: s["ports"] for name, s in resolved["services"].items() if s.get("ports")}
    assert set(published) == {"db", "mongo", "proxy", "grafana"}
    for name, ports in published.items():
        for port in ports:
            host_ip = port["host_ip"] if isinstance(port, dict) else port.split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} is published beyond this machine by default"
    assert _volumes(resolved["services"]["db"])["/var/lib/postgresql/data"]["source"] == "postgres_data"


def _volumes(service: dict) -> dict[str, dict]:
    out = {}
    for v in service["volumes"]:
        if isinstance(v, str):
            source, target, *mode = v.split(":")
            v = {"source": source, "target": target, "read_only": "ro" in mode}
        out[v["target"]] = v
    return out


def test_collector_reports_the_host_read_only(resolved):
    collector = resolved["services"]["collector"]
    env = collector["environment"]
    mounts = _volumes(collector)
    for var, host in (("COLLECTOR_PROC_PATH", "/proc"), ("COLLECTOR_SYS_PATH", "/sys"), ("COLLECTOR_ROOT_PATH", "/")):
        mount = mounts[env[var]]
        assert mount["source"] == host and mount["read_only"], f"{var}: {mount}"
    assert env["COLLECTOR_SINK"] == "postgres" and env["COLLECTOR_INTERVAL"] == "10"


def test_stack_settings(resolved):
    services = resolved["services"]
    proxy_env = services["proxy"]["environment"]
    assert proxy_env["PGPULSE_AUTH"] == "on" and proxy_env["PORT"] == "8085"
    assert proxy_env["MONGO_URI"].startswith("mongodb://") and "@mongo:27017" in proxy_env["MONGO_URI"]
    for name in ("migrate", "proxy", "collector", "scheduler"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://") and "@db:5432/" in env["DATABASE_URL"]
        assert ":" not in env["DATABASE_URL"].split("//", 1)[1].split("@", 1)[0], "password in the URL"
        assert env["LOKI_URL"] == "http://loki:3100" and env["PGPULSE_ENGINE"] == "timescale"
        assert services[name]["labels"]["io.pgpulse.logs"] == "direct"
    # The application and Grafana log in as their own roles; migrations as the owner.
    assert services["migrate"]["environment"]["DATABASE_URL"].startswith("postgresql://postgres@")
    assert services["proxy"]["environment"]["PGPASSWORD"] == secrets()["DB_PASSWORD"]
    assert services["migrate"]["environment"]["PGPASSWORD"] == secrets()["POSTGRES_PASSWORD"]
    for name, service in services.items():
        if name != "backup-tools":
            assert "io.pgpulse.logs" in service["labels"], f"{name}: Promtail would not see it"


def test_alloy_and_tools_are_behind_profiles():
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    assert raw["services"]["alloy"]["profiles"] == ["alloy"]
    assert raw["services"]["backup-tools"]["profiles"] == ["tools"]
    for name in ("promtail", "db", "proxy", "collector", "scheduler", "migrate", "grafana", "loki", "mongo"):
        assert "profiles" not in raw["services"][name]


def test_grafana_gets_what_its_provisioning_reads(resolved):
    grafana = resolved["services"]["grafana"]
    env = grafana["environment"]
    # Grafana fills $VAR / ${VAR} from its environment in data source and provider
    # files (alert rule queries are left alone).
    for sub in ("datasources", "dashboards"):
        for path in (ROOT / "grafana" / "provisioning" / sub).glob("*.yml"):
            code = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
            for name in re.findall(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", code):
                assert name in env, f"{path.name} reads ${name}, which grafana's environment lacks"
    mounts = _volumes(grafana)
    assert mounts["/etc/grafana/provisioning"]["read_only"]
    assert mounts["/etc/grafana/dashboards"]["source"].endswith("grafana/dashboards")


# -- the image and its commands ---------------------------------------------------------

EXPECTED_COMMANDS = {"migrate": migrate.run, "proxy": proxy_command.run, "collector": collect.run,
                     "scheduler": scheduler_command.run}


def dockerfile_instructions() -> list[tuple[str, str]]:
    # As Docker does: comment lines go first (also inside a continued RUN), then
    # continuation lines are joined.
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.strip().startswith("#"))
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("service", sorted(EXPECTED_COMMANDS))
def test_service_commands_are_pgpulse_verbs(resolved, service):
    command = resolved["services"][service]["command"]
    assert command[0] == "pgpulse"
    assert command == ["pgpulse", {"collector": "collect"}.get(service, service)]
    args = build_parser().parse_args(command[1:])
    assert args.func is EXPECTED_COMMANDS[service]


def test_dockerfile_is_small_non_root_and_runs_pgpulse():
    instructions = dockerfile_instructions()
    froms = [rest for word, rest in instructions if word == "FROM"]
    # the console's npm libraries, the wheel's build, the runtime
    assert len(froms) == 3 and froms[0].startswith("node:") and froms[0].endswith(" AS console"), froms
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "pip install --no-cache-dir" in runs and "rm -rf /var/lib/apt/lists/*" in runs
    assert "postgresql-client-${PG_MAJOR}" in runs and args["PG_MAJOR"] == "16"
    user = [rest for word, rest in instructions if word == "USER"]
    assert user and user[-1] not in ("root", "0")
    cmd = [rest for word, rest in instructions if word == "CMD"][-1]
    import json

    command = json.loads(cmd)
    assert command == ["pgpulse", "proxy"]
    assert build_parser().parse_args(command[1:]).func is proxy_command.run


def test_dockerfile_installs_the_wheel_not_the_sources():
    # Editable installs hid that an installed package could not find its migrations;
    # the image runs what a wheel holds (tests/test_wheel.py runs that wheel).
    instructions = dockerfile_instructions()
    stages, current = [], None
    for word, rest in instructions:
        if word == "FROM":
            current = []
            stages.append(current)
        elif current is not None:
            current.append((word, rest))
    console, build, runtime = stages
    # The console's chart library: the lock file's production dependencies, from npm.
    assert [rest for word, rest in console if word == "RUN"] == [
        "npm ci --omit=dev --no-audit --no-fund --loglevel=error"]
    assert ("COPY", "--from=console /console/node_modules ./proxy/console/node_modules") in build
    runs = " ".join(rest for word, rest in build if word == "RUN")
    assert "pip wheel --no-cache-dir --no-deps" in runs
    assert re.search(r"pip install --no-cache-dir \S+\.whl", runs), runs
    assert not re.search(r"(^|\s)(-e|--editable)(\s|$)", runs), "editable install"
    assert "pip uninstall --yes pgserver" in runs  # the stack never embeds PostgreSQL
    copies = [rest for word, rest in runtime if word == "COPY"]
    assert copies == ["--from=build /opt/pgpulse /opt/pgpulse"], "the runtime stage holds the venv only"


def test_dockerignore_keeps_secrets_and_data_out():
    lines = [line for line in (ROOT / ".dockerignore").read_text().split("\n")
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "allow-list: only what the image needs"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "pgpulse", "collector", "etl", "proxy"}
    copied = " ".join(rest for word, rest in dockerfile_instructions() if word == "COPY" and "--from" not in rest)
    for name in allowed:
        assert name in copied


# -- database init script --------------------------------------------------------------


def test_initdb_script_makes_login_roles_in_the_groups(pg_server, db_url):
    with psycopg.connect(db_url) as conn:
        tools = backups.find_tools(backups.server_major(conn))
    app, reader = (f"pgpulse_t_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("app", "graf"))
    env = {
        "PATH": f"{tools.bin_dir}:{os.environ['PATH']}",
        "PGHOST": pg_server.host, "PGPORT": str(pg_server.port),
        "POSTGRES_USER": pg_server.user, "POSTGRES_DB": psycopg.conninfo.conninfo_to_dict(db_url)["dbname"],
        "DB_USER": app, "DB_PASSWORD": "it's \"quoted\"", "GRAFANA_DB_USER": reader,
        "GRAFANA_DB_PASSWORD": "g",
    }
    script = ROOT / "deploy" / "initdb" / "10-pgpulse-roles.sh"
    try:
        for _ in range(2):  # idempotent: a second run changes nothing and does not fail
            proc = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
        with psycopg.connect(db_url, autocommit=True) as conn:
            rows = {r[0]: r[1:] for r in conn.execute(
                "SELECT rolname, rolcanlogin, rolsuper, pg_has_role(rolname, 'pgpulse_writer', 'MEMBER'), "
                "pg_has_role(rolname, 'pgpulse_reader', 'MEMBER'), rolconfig "
                "FROM pg_roles WHERE rolname IN (%s, %s)", (app, reader)).fetchall()}
        assert rows[app][:4] == (True, False, True, False)
        assert rows[reader][:4] == (True, False, False, True)
        assert set(rows[reader][4]) == {"default_transaction_read_only=on", "statement_timeout=30s"}
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            for role in (app, reader):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_initdb_script_refuses_missing_variables():
    proc = subprocess.run(["sh", str(ROOT / "deploy" / "initdb" / "10-pgpulse-roles.sh")],
                          env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "DB_USER is not set" in proc.stderr


def test_initdb_group_roles_match_the_migration():
    script = (ROOT / "deploy" / "initdb" / "10-pgpulse-roles.sh").read_text()
    migration = (ROOT / "pgpulse" / "migrations" / "versions" / "0001_initial.py").read_text()
    for needle in ("IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ",
                   "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;"):
        assert needle in script and needle in migration
    for role in ("pgpulse_reader", "pgpulse_writer"):
        assert f"CREATE ROLE {role} NOLOGIN;" in script


# -- Loki, Promtail, Alloy, Grafana provisioning ------------------------------------------


def test_configuration_files_parse():
    for path in [*(ROOT / "grafana" / "provisioning").rglob("*.yml"), ROOT / "loki" / "loki-config.yml",
                 ROOT / "promtail" / "promtail-config.yml"]:
        doc = yaml.safe_load(path.read_text())
        assert isinstance(doc, dict), path
    for path in (ROOT / "grafana" / "provisioning").rglob("*.yml"):
        assert yaml.safe_load(path.read_text())["apiVersion"] == 1, path
    import json

    for path in (ROOT / "grafana" / "dashboards").glob("*.json"):
        assert json.loads(path.read_text())["uid"].startswith("pgpulse-")
    alloy = (ROOT / "alloy" / "config.alloy").read_text()
    code = re.sub(r'"(?:\\.|[^"\\])*"', '""', re.sub(r"//[^\n]*", "", alloy))
    assert code.count("{") == code.count("}") and code.count("[") == code.count("]")


def test_loki_keeps_logs_for_the_retention_period():
    config = yaml.safe_load((ROOT / "loki" / "loki-config.yml").read_text())
    assert config["compactor"]["retention_enabled"] is True
    assert config["limits_config"]["retention_period"] == "${LOKI_RETENTION_PERIOD:-744h}"
    assert config["schema_config"]["configs"][0]["schema"] == "v13"


def test_datasources_read_through_the_reader_login():
    sources = {s["uid"]: s for s in yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "datasources" / "pgpulse.yml").read_text())["datasources"]}
    pg = sources["pgpulse-postgres"]
    assert pg["user"] == "${GRAFANA_DB_USER}" and pg["secureJsonData"]["password"] == "${GRAFANA_DB_PASSWORD}"
    assert pg["url"] == "db:5432" and pg["jsonData"]["database"] == "${POSTGRES_DB}"
    assert sources["pgpulse-loki"]["url"] == "http://loki:3100"


def _alloy_strings(block: str, attribute: str) -> list[str]:
    text = (ROOT / "alloy" / "config.alloy").read_text()
    raw = re.findall(rf'{attribute}\s*=\s*"((?:\\.|[^"\\])*)"', text)
    return [bytes(s, "utf-8").decode("unicode_escape") for s in raw]


def test_alloy_does_what_promtail_does():
    promtail = yaml.safe_load((ROOT / "promtail" / "promtail-config.yml").read_text())
    job = promtail["scrape_configs"][0]
    alloy = (ROOT / "alloy" / "config.alloy").read_text()
    assert job["docker_sd_configs"][0]["filters"][0]["values"] == ["io.pgpulse.logs"]
    assert 'values = ["io.pgpulse.logs"]' in alloy
    promtail_targets = {r["target_label"] for r in job["relabel_configs"]}
    alloy_targets = set(re.findall(r'target_label\s*=\s*"([^"]+)"', alloy))
    assert promtail_targets == alloy_targets == {"service", "container", "stream", "delivery"}
    stages = job["pipeline_stages"]
    promtail_regexes = [s["regex"]["expression"] for s in stages if "regex" in s]
    assert _alloy_strings("stage.regex", "expression")[:2] == promtail_regexes
    template = next(s["template"]["template"] for s in stages if "template" in s)
    assert _alloy_strings("stage.template", "template") == [template]
    match = next(s["match"] for s in stages if "match" in s)
    assert match["selector"] == '{delivery="direct"}' and 'selector = "{delivery=\\"direct\\"}"' in alloy
    assert match["stages"][0]["drop"]["source"] == "json_service" and 'source              = "json_service"' in alloy
    assert next(s["labeldrop"] for s in stages if "labeldrop" in s) == ["delivery"]
    assert 'values = ["delivery"]' in alloy


# -- Makefile and the stack's backup/restore scripts ------------------------------------


def make_targets() -> dict[str, str]:
    text = (ROOT / "Makefile").read_text()
    return dict(re.findall(r"^([a-z-]+):.*?## (.+)$", text, re.M))


def test_makefile_targets_have_help():
    targets = make_targets()
    for name in ("up", "down", "ps", "logs", "migrate", "backup", "restore", "run", "test", "bench",
                 "clean", "venv", "pglite", "help"):
        assert name in targets, f"make {name} is missing or has no ## help"
    text = (ROOT / "Makefile").read_text()
    assert re.search(r"^migrate: .*\n\t\$\(COMPOSE\) run --rm migrate$", text, re.M)
    assert "$(BIN)/pgpulse up" in text and "$(BIN)/pytest" in text


def test_make_up_without_env_explains_what_to_do(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    proc = subprocess.run(["make", "up", "COMPOSE=false"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert "copy .env.example to .env" in proc.stderr and "POSTGRES_PASSWORD" in proc.stderr


@pytest.fixture
def fake_compose(tmp_path):
    """A stand-in for Docker Compose: records each call; exits 1 for a call whose
    arguments contain $FAIL_ON."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "deploy", project / "deploy")
    (project / ".env").write_text("POSTGRES_PASSWORD=x\n")
    log = tmp_path / "calls.log"
    script = tmp_path / "compose.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s" "$*" | tr "\\n" " " >> {shlex.quote(str(log))}; echo >> {shlex.quote(str(log))}\n'
        'if [ -n "$FAIL_ON" ]; then case "$*" in *"$FAIL_ON"*) echo "failed: $*" >&2; exit 1;; esac; fi\n'
    )
    script.chmod(0o755)

    def run(name: str, *args: str, fail_on: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
        proc = subprocess.run(
            ["bash", str(project / "deploy" / name), *args], capture_output=True, text=True, timeout=60,
            env={"PATH": os.environ["PATH"], "COMPOSE": str(script), "FAIL_ON": fail_on},
        )
        calls = log.read_text().splitlines() if log.exists() else []
        return proc, calls

    return project, run


def _index(calls: list[str], needle: str) -> int:
    return next(i for i, c in enumerate(calls) if needle in c)


def test_stack_backup_dumps_then_archives_volumes(fake_compose):
    project, run = fake_compose
    proc, calls = run("stack-backup.sh", "backups/b1")
    assert proc.returncode == 0, proc.stderr
    assert (project / "backups" / "b1").is_dir()
    dump = _index(calls, "migrate pgpulse backup --output /backup")
    assert "--user" in calls[dump] and f"{project / 'backups' / 'b1'}:/backup" in calls[dump]
    assert _index(calls, "up -d --wait db") < dump < _index(calls, "stop grafana loki")
    archive = _index(calls, "--profile tools run --rm --no-deps")
    assert "backup-tools" in calls[archive] and "tar -czf" in calls[archive]
    assert _index(calls, "stop grafana loki") < archive < _index(calls, "start loki grafana")


def test_stack_backup_restarts_grafana_and_loki_when_archiving_fails(fake_compose):
    _, run = fake_compose
    proc, calls = run("stack-backup.sh", "backups/b2", fail_on="backup-tools")
    assert proc.returncode != 0
    assert _index(calls, "start loki grafana") > _index(calls, "backup-tools")


def test_stack_restore_stops_writers_then_restores_then_starts(fake_compose):
    project, run = fake_compose
    (project / "backups" / "20260101T000000Z").mkdir(parents=True)
    (project / "backups" / "20260101T000000Z" / "manifest.json").write_text("{}")
    proc, calls = run("stack-restore.sh", "--force")  # the newest backup
    assert proc.returncode == 0, proc.stderr
    stop = _index(calls, "stop proxy collector scheduler grafana loki promtail")
    db = _index(calls, "migrate pgpulse restore /backup --force")
    volumes = _index(calls, "backup-tools")
    assert stop < db < volumes < len(calls) - 1
    assert calls[-1] == "up -d"
    assert "20260101T000000Z:/backup:ro" in calls[db]


def test_stack_restore_failure_leaves_volumes_and_starts_the_stack(fake_compose):
    project, run = fake_compose
    (project / "backups" / "x").mkdir(parents=True)
    (project / "backups" / "x" / "manifest.json").write_text("{}")
    proc, calls = run("stack-restore.sh", "backups/x", fail_on="pgpulse restore")
    assert proc.returncode != 0
    assert not any("backup-tools" in c for c in calls), "volumes untouched when the database restore fails"
    assert calls[-1] == "up -d"
    assert "--force" not in calls[_index(calls, "pgpulse restore")]


def test_stack_restore_without_a_backup_says_so(fake_compose):
    _, run = fake_compose
    proc, calls = run("stack-restore.sh")
    assert proc.returncode == 1 and "No backup to restore" in proc.stderr
    assert calls == []
