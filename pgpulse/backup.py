"""Backups of a pgpulse database, and restoring them.

A backup is a directory holding two files:

* ``pgpulse.dump``: a PostgreSQL custom-format archive written by ``pg_dump``;
* ``manifest.json``: what the archive holds (every table of the ``public`` schema
  with its row count and a checksum of its rows), where it came from (server
  version, extensions and their versions, engine mode, schema revision) and the
  SHA-256 of the archive.

The counts and checksums are computed in the same snapshot that ``pg_dump`` reads
(an exported snapshot of a repeatable-read transaction held open for the dump), so
they describe exactly what the archive holds even while the collector keeps
writing. A restore checks the archive against the manifest first, and every table
against its count and checksum afterwards.

``pg_dump``/``pg_restore`` must match the server's major version (a newer one also
works); they are looked up in ``/usr/lib/postgresql/<N>/bin``, the binaries bundled
with the ``pgserver`` wheel (the embedded server) and ``PATH``.

TimescaleDB: the extension is created by the restore itself at the version recorded
in the manifest (an error names both versions when this server lacks it), and the
archive is restored between ``timescaledb_pre_restore()`` and
``timescaledb_post_restore()``, as TimescaleDB requires.

A restore changes nothing until every check that can be made beforehand has passed:
the manifest, the archive (its SHA-256 and a full read by ``pg_restore``), client
tools of the right major version, the extensions and versions the manifest names,
the rights to replace the database, free disk space (when the server's data
directory is visible from here) and that no pgpulse process is connected to the
target (its caches would no longer match the restored database). ``force`` only
decides whether a database that is not empty may be replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgpulse import __version__, tiers
from pgpulse.db import connect, redact

MANIFEST = "manifest.json"
DUMP = "pgpulse.dump"
FORMAT = 1
CHECKSUM_METHOD = "sum64-md5-row-text"
# Extensions every database has; never created or checked by a restore.
BUILTIN_EXTENSIONS = {"plpgsql"}
# NOLOGIN group roles the schema grants to (same idempotent block as migration 0001).
GROUP_ROLES = ("pgpulse_reader", "pgpulse_writer")
# Backup and restore's own sessions: not counted among the pgpulse processes a
# restore waits for (every other pgpulse session's name starts with "pgpulse").
APPLICATION_NAME = "pgpulse-backup"

Progress = Callable[[str], None]


class BackupError(RuntimeError):
    """A backup or restore cannot go on; the message says why and what to do."""


def _quiet(message: str) -> None:
    pass


# -- PostgreSQL client binaries -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PgTools:
    """pg_dump and pg_restore of one PostgreSQL major version."""

    bin_dir: Path
    major: int

    @property
    def pg_dump(self) -> str:
        return str(self.bin_dir / "pg_dump")

    @property
    def pg_restore(self) -> str:
        return str(self.bin_dir / "pg_restore")


def _bundled_bin_dir() -> Path | None:
    try:
        from pgserver import _commands  # the embedded server's own binaries
    except ImportError:
        return None
    return Path(_commands.POSTGRES_BIN_PATH)


def candidate_bin_dirs(extra: Iterable[Path] = ()) -> list[Path]:
    """Directories that may hold pg_dump and pg_restore, most specific first."""
    dirs = [Path(d) for d in extra]
    dirs += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    bundled = _bundled_bin_dir()
    if bundled is not None:
        dirs.append(bundled)
    on_path = shutil.which("pg_dump")
    if on_path:
        dirs.append(Path(on_path).resolve().parent)
    seen: set[Path] = set()
    out = []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def tool_major(bin_dir: Path) -> int | None:
    """The major version of ``bin_dir``'s pg_dump (None when it is not usable)."""
    pg_dump, pg_restore = bin_dir / "pg_dump", bin_dir / "pg_restore"
    if not (os.access(pg_dump, os.X_OK) and os.access(pg_restore, os.X_OK)):
        return None
    try:
        out = subprocess.run([str(pg_dump), "--version"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(match.group(1)) if match else None


def find_tools(server_major: int, extra: Iterable[Path] = ()) -> PgTools:
    """Client binaries for a server of ``server_major``: the same major, or the
    nearest newer one (pg_dump reads older servers; an older one refuses)."""
    found: list[PgTools] = []
    for d in candidate_bin_dirs(extra):
        major = tool_major(d)
        if major is not None:
            found.append(PgTools(d, major))
    exact = [t for t in found if t.major == server_major]
    if exact:
        return exact[0]
    newer = sorted((t for t in found if t.major > server_major), key=lambda t: t.major)
    if newer:
        return newer[0]
    seen = ", ".join(f"{t.major} in {t.bin_dir}" for t in found) or "none"
    raise BackupError(
        f"no pg_dump/pg_restore for PostgreSQL {server_major} (found: {seen}); install "
        f"postgresql-client-{server_major} or name a directory with --pg-bin"
    )


# -- talking to the database ------------------------------------------------------------


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A conninfo string without the password, and the environment carrying it, so
    the password never shows on a command line (``ps``)."""
    params = conninfo_to_dict(url)
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**{k: str(v) for k, v in params.items()}), env


def server_major(conn: psycopg.Connection) -> int:
    return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


def _pin_text_output(conn: psycopg.Connection) -> None:
    # Row text feeds the checksums: make it the same in every session and server.
    for statement in (
        "SET TimeZone = 'UTC'",
        "SET DateStyle = 'ISO, YMD'",
        "SET IntervalStyle = 'postgres'",
        "SET extra_float_digits = 1",
        "SET bytea_output = 'hex'",
    ):
        conn.execute(statement)


def user_tables(conn: psycopg.Connection) -> list[str]:
    """Tables of the ``public`` schema that hold rows, partitioned parents counted
    once (not each partition), extension-owned tables left out."""
    rows = conn.execute(
        """
        SELECT c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                            AND d.deptype = 'e')
        ORDER BY c.relname
        """
    ).fetchall()
    return [r[0] for r in rows]


def table_stat(conn: psycopg.Connection, table: str) -> dict[str, object]:
    """Row count and checksum of one table.

    The checksum adds up the first 64 bits of the MD5 of every row's text: it does
    not depend on row order and needs no sort and no memory beyond one number,
    whatever the table's size (an ordered string_agg would not fit past 1 GB).
    """
    query = sql.SQL(
        "SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint::numeric), 0)::text "
        "FROM {} AS t"
    ).format(sql.Identifier("public", table))
    rows, total = conn.execute(query).fetchone()
    return {"rows": rows, "checksum": hashlib.md5(total.encode()).hexdigest()}


def table_stats(conn: psycopg.Connection, progress: Progress = _quiet) -> dict[str, dict[str, object]]:
    _pin_text_output(conn)
    tables = user_tables(conn)
    stats = {}
    for i, table in enumerate(tables, 1):
        stats[table] = table_stat(conn, table)
        progress(f"[{i}/{len(tables)}] {table}: {stats[table]['rows']} rows")
    return stats


def extensions(conn: psycopg.Connection) -> dict[str, str]:
    rows = conn.execute("SELECT extname, extversion FROM pg_extension ORDER BY extname").fetchall()
    return {name: version for name, version in rows if name not in BUILTIN_EXTENSIONS}


def _meta(conn: psycopg.Connection) -> tuple[str | None, str | None]:
    """(engine mode, schema revision) when the database is migrated."""
    engine = revision = None
    if conn.execute("SELECT to_regclass('public.pgpulse_meta')").fetchone()[0]:
        row = conn.execute("SELECT value FROM pgpulse_meta WHERE key = 'engine'").fetchone()
        engine = row[0] if row else None
    if conn.execute("SELECT to_regclass('public.alembic_version')").fetchone()[0]:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = row[0] if row else None
    return engine, revision


def foreign_relations(conn: psycopg.Connection, limit: int = 5) -> list[str]:
    """Relations a restore would collide with (extension-owned ones do not count)."""
    rows = conn.execute(
        """
        SELECT n.nspname || '.' || c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                            AND d.deptype = 'e')
        ORDER BY 1 LIMIT %s
        """,
        (limit,),
    ).fetchall()
    return [r[0] for r in rows]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _run_tool(args: list[str], env: dict[str, str], progress: Progress,
              on_line: Callable[[str], str | None]) -> None:
    """Run a client tool; its verbose stderr becomes progress lines."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    errors: list[str] = []
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.rstrip("\n")
        shown = on_line(line)
        if shown is not None:
            progress(shown)
        elif "error" in line.lower() or "fatal" in line.lower():
            errors.append(line)
    if proc.wait() != 0:
        detail = "\n".join(errors[-10:]) or "(no error output)"
        raise BackupError(f"{Path(args[0]).name} failed (exit {proc.returncode}):\n{detail}")


# -- backup -------------------------------------------------------------------------


def default_backup_dir(root: Path = Path("backups"), now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return root / stamp


@dataclasses.dataclass
class Manifest:
    data: dict

    @property
    def tables(self) -> dict[str, dict[str, object]]:
        return self.data["tables"]

    @property
    def extensions(self) -> dict[str, str]:
        return self.data["extensions"]

    @property
    def total_rows(self) -> int:
        return sum(int(t["rows"]) for t in self.tables.values())


def backup(url: str, out_dir: Path, *, pg_bin: Iterable[Path] = (), progress: Progress = _quiet) -> Manifest:
    """Dump the database at ``url`` into ``out_dir`` (created; must not hold a backup)."""
    out_dir = Path(out_dir)
    if (out_dir / MANIFEST).exists() or (out_dir / DUMP).exists():
        raise BackupError(f"{out_dir} already holds a backup: choose another directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    conninfo, env = _libpq(url)
    # The snapshot stays exported while this transaction is open: pg_dump and the
    # counts below read the very same data.
    with connect(url, application_name=APPLICATION_NAME) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        major = server_major(conn)
        tools = find_tools(major, pg_bin)
        version = conn.execute("SHOW server_version").fetchone()[0]
        exts = extensions(conn)
        engine, revision = _meta(conn)
        dbname = conn.info.dbname
        database_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        progress(f"backing up {redact(url)} (PostgreSQL {version}, pg_dump {tools.major} from {tools.bin_dir})")
        partial = out_dir / (DUMP + ".partial")
        count = 0

        def on_dump_line(line: str) -> str | None:
            nonlocal count
            m = re.search(r'dumping contents of table "?([^"]+)"?', line)
            if m:
                count += 1
                return f"dump [{count}] {m.group(1)}"
            return None

        _run_tool(
            [tools.pg_dump, "--format=custom", "--no-password", "--verbose",
             f"--snapshot={snapshot}", f"--file={partial}", f"--dbname={conninfo}"],
            env, progress, on_dump_line,
        )
        progress("counting rows and checksums")
        stats = table_stats(conn, progress)
        conn.rollback()
    dump = out_dir / DUMP
    partial.replace(dump)
    manifest = Manifest({
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pgpulse_version": __version__,
        "database": dbname,
        "database_bytes": database_bytes,
        "server_version": version,
        "server_major": major,
        "pg_dump_major": tools.major,
        "engine": engine,
        "schema_revision": revision,
        "extensions": exts,
        "dump": {"file": DUMP, "bytes": dump.stat().st_size, "sha256": _sha256(dump)},
        "checksum_method": CHECKSUM_METHOD,
        "tables": stats,
    })
    tmp = out_dir / (MANIFEST + ".partial")
    tmp.write_text(json.dumps(manifest.data, indent=2, sort_keys=True) + "\n")
    tmp.replace(out_dir / MANIFEST)
    return manifest


# -- restore ------------------------------------------------------------------------


def load_manifest(backup_dir: Path) -> Manifest:
    """The manifest of ``backup_dir``, checked for shape; BackupError names what is wrong."""
    path = Path(backup_dir) / MANIFEST
    if not Path(backup_dir).is_dir():
        raise BackupError(f"{backup_dir} is not a directory")
    if not path.is_file():
        raise BackupError(f"{path} is missing: not a pgpulse backup, or an unfinished one")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupError(f"{path} is not valid JSON ({exc}): the backup is damaged") from None
    if not isinstance(data, dict):
        raise BackupError(f"{path} is damaged: expected a JSON object")
    if data.get("format") != FORMAT:
        raise BackupError(f"{path}: unknown backup format {data.get('format')!r} (this pgpulse reads {FORMAT})")
    problems = []
    dump = data.get("dump")
    if not (isinstance(dump, dict) and isinstance(dump.get("file"), str) and isinstance(dump.get("sha256"), str)):
        problems.append("dump (file, sha256)")
    tables = data.get("tables")
    if not (isinstance(tables, dict) and all(
        isinstance(t, dict) and isinstance(t.get("rows"), int) and isinstance(t.get("checksum"), str)
        for t in tables.values()
    )):
        problems.append("tables (rows, checksum per table)")
    if not (isinstance(data.get("extensions"), dict)
            and all(isinstance(v, str) for v in data["extensions"].values())):
        problems.append("extensions")
    if data.get("checksum_method") != CHECKSUM_METHOD:
        problems.append("checksum_method")
    size = data.get("database_bytes")  # absent in backups of older versions
    if size is not None and not (isinstance(size, int) and size >= 0):
        problems.append("database_bytes")
    if problems:
        raise BackupError(f"{path} is damaged: missing or invalid {', '.join(problems)}")
    if Path(dump["file"]).name != dump["file"]:
        raise BackupError(f"{path} is damaged: the dump file name must be a plain file name")
    return Manifest(data)


def verify_archive(backup_dir: Path, manifest: Manifest) -> Path:
    dump = Path(backup_dir) / manifest.data["dump"]["file"]
    if not dump.is_file():
        raise BackupError(f"{dump} is missing: the backup is incomplete")
    if _sha256(dump) != manifest.data["dump"]["sha256"]:
        raise BackupError(f"{dump} does not match its SHA-256 in the manifest: the archive is damaged")
    return dump


def _with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def recreate_database(url: str, progress: Progress = _quiet) -> None:
    """Drop the database of ``url`` and make it again, empty, with the same owner.

    Other sessions are disconnected (PostgreSQL >= 13); needs the right to drop it
    and CREATEDB (the owner in the stack, the superuser of the embedded server)."""
    with connect(url, autocommit=True, application_name=APPLICATION_NAME) as conn:
        dbname = conn.info.dbname
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
    admin_url = _with_database(url, "postgres")
    progress(f"dropping and re-creating database {dbname}")
    try:
        with connect(admin_url, autocommit=True, application_name=APPLICATION_NAME) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(dbname), sql.Identifier(owner)))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise BackupError(
            f"cannot replace database {dbname}: {str(exc).strip()} (connect as its owner with "
            "CREATEDB, or restore into an empty database)"
        ) from None


# -- checks made before a restore touches anything ------------------------------------


def pgpulse_sessions(conn: psycopg.Connection) -> list[str]:
    """Other pgpulse processes connected to this database, one description each."""
    rows = conn.execute(
        """
        SELECT application_name, coalesce(host(client_addr), 'a local socket'), client_port,
               pid, to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
        FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid()
          AND application_name LIKE 'pgpulse%%' AND application_name <> %s
        ORDER BY application_name, pid
        """,
        (APPLICATION_NAME,),
    ).fetchall()
    return [f"{name} from {addr}{f' port {port}' if port and port > 0 else ''} "
            f"(server pid {pid}, connected since {since} UTC)"
            for name, addr, port, pid, since in rows]


def check_no_pgpulse_sessions(conn: psycopg.Connection) -> None:
    """Refuse while pgpulse runs against the target: a running proxy or collector keeps
    a cache of series ids that the restored database does not have, so its next writes
    would land under the wrong series."""
    sessions = pgpulse_sessions(conn)
    if sessions:
        raise BackupError(
            "pgpulse is still connected to the target database:\n  " + "\n  ".join(sessions)
            + "\nStop those processes (`pgpulse up`, `pgpulse proxy`, the collector, the "
            "scheduler) and run the restore again; nothing was changed"
        )


def check_extensions(conn: psycopg.Connection, wanted: dict[str, str], replace: bool) -> None:
    """Every extension of the manifest can be had at its recorded version: installed at
    that version already (a target that is kept), or offered by this server."""
    installed = {} if replace else extensions(conn)
    preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
    for name, version in sorted(wanted.items()):
        if name in installed:
            if installed[name] != version:
                raise BackupError(
                    f"the backup was made with {name} {version}, but this database has {name} "
                    f"{installed[name]}: restore into a new database (--force re-creates it) on a "
                    f"server that offers {name} {version}; nothing was changed"
                )
            continue
        offered = [r[0] for r in conn.execute(
            "SELECT version FROM pg_available_extension_versions WHERE name = %s ORDER BY version",
            (name,),
        ).fetchall()]
        if version not in offered:
            raise BackupError(
                f"the backup was made with {name} {version}; this server offers "
                f"{', '.join(offered) or 'no version of it'}. Restore on a server with {name} "
                f"{version} (then ALTER EXTENSION {name} UPDATE to move on); nothing was changed"
            )
        libraries = [lib.strip().strip('"') for lib in preload.split(",")]
        if name == "timescaledb" and not any(lib.startswith("timescaledb") for lib in libraries):
            raise BackupError(
                "the backup needs timescaledb, which this server does not preload: add it to "
                "shared_preload_libraries and restart the server; nothing was changed"
            )


def check_rights(conn: psycopg.Connection, url: str, replace: bool) -> None:
    """The rights the restore will need, checked while nothing has been dropped yet."""
    superuser, createdb, createrole, owner = conn.execute(
        """
        SELECT r.rolsuper, r.rolcreatedb, r.rolcreaterole,
               pg_has_role(current_user, d.datdba, 'MEMBER')
        FROM pg_roles r, pg_database d
        WHERE r.rolname = current_user AND d.datname = current_database()
        """
    ).fetchone()
    dbname = conn.info.dbname
    if replace:
        if not (superuser or (owner and createdb)):
            raise BackupError(
                f"cannot replace database {dbname}: that takes its owner with CREATEDB (or a "
                "superuser); connect as one, or restore into an empty database. Nothing was changed"
            )
        try:
            with connect(_with_database(url, "postgres"), autocommit=True,
                         application_name=APPLICATION_NAME):
                pass
        except psycopg.OperationalError as exc:
            raise BackupError(
                f"cannot replace database {dbname}: the database 'postgres' of the same server, "
                f"from where it is dropped and made again, cannot be reached "
                f"({str(exc).strip().splitlines()[0]}); nothing was changed"
            ) from None
    missing = [r for r in GROUP_ROLES if conn.execute(
        "SELECT 1 FROM pg_roles WHERE rolname = %s", (r,)).fetchone() is None]
    if missing and not (superuser or createrole):
        raise BackupError(
            f"the roles {', '.join(missing)} do not exist and this user may not create them: "
            "create them (NOLOGIN) or connect with CREATEROLE; nothing was changed"
        )


def free_disk_bytes(conn: psycopg.Connection) -> int | None:
    """Free space where the server keeps its data, when that is knowable from here:
    the server runs on this machine and tells its data directory (needs a superuser or
    pg_read_all_settings). None otherwise."""
    host = conn.info.host
    local = host.startswith("/") or host in ("localhost", "127.0.0.1", "::1")
    if not local:
        return None
    try:
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]
    except psycopg.errors.InsufficientPrivilege:
        return None
    if not (data_dir and Path(data_dir).is_dir()):
        return None
    try:
        return shutil.disk_usage(data_dir).free
    except OSError:
        return None


def check_disk_space(conn: psycopg.Connection, manifest: Manifest, replace: bool,
                     progress: Progress) -> None:
    # What the database took when it was backed up (older manifests: the archive's size,
    # a lower bound, as the archive is compressed).
    needed = int(manifest.data.get("database_bytes") or manifest.data["dump"].get("bytes") or 0)
    free = free_disk_bytes(conn)
    if free is None:
        progress("free disk space: not visible from here (the server is not local, or its "
                 "data directory is not readable); not checked")
        return
    freed = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] if replace else 0
    if free + freed < needed:
        raise BackupError(
            f"not enough free disk space for the restore: it needs about {needed / 1e6:.1f} MB, "
            f"the server's disk has {free / 1e6:.1f} MB free"
            f"{f' (+{freed / 1e6:.1f} MB freed by dropping the target)' if freed else ''}; "
            "free some space; nothing was changed"
        )


def read_whole_archive(tools: PgTools, dump: Path, env: dict[str, str]) -> None:
    """Read every byte of the archive as a restore would, writing nowhere: a damaged
    data block fails here, before the target is touched, not half-way through."""
    proc = subprocess.run([tools.pg_restore, f"--file={os.devnull}", str(dump)],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise BackupError(f"pg_restore cannot read all of {dump} ({proc.stderr.strip()}): "
                          "the archive is damaged; nothing was changed")


# -- restoring ---------------------------------------------------------------------------


def _prepare_extensions(conn: psycopg.Connection, wanted: dict[str, str]) -> None:
    """Create the backup's extensions at their recorded versions (or check them)."""
    installed = extensions(conn)
    for name, version in sorted(wanted.items()):
        if name in installed:
            if installed[name] != version:
                raise BackupError(
                    f"the backup was made with {name} {version}, but this database has {name} "
                    f"{installed[name]}: restore into a new database (--force re-creates it) on a "
                    f"server that offers {name} {version}"
                )
            continue
        offered = [r[0] for r in conn.execute(
            "SELECT version FROM pg_available_extension_versions WHERE name = %s ORDER BY version",
            (name,),
        ).fetchall()]
        if version not in offered:
            raise BackupError(
                f"the backup was made with {name} {version}; this server offers "
                f"{', '.join(offered) or 'no version of it'}. Restore on a server with {name} "
                f"{version} (then ALTER EXTENSION {name} UPDATE to move on)"
            )
        conn.execute(sql.SQL("CREATE EXTENSION {} VERSION {}").format(
            sql.Identifier(name), sql.Literal(version)))


def _create_group_roles(conn: psycopg.Connection, timescale: bool) -> None:
    # Roles live in the cluster, not the dump; the archive's GRANTs need them. The
    # owner of the continuous aggregates has LOGIN (no password), as revision 0007
    # makes it: TimescaleDB runs policy jobs as their aggregate's owner.
    roles = [(r, "NOLOGIN") for r in GROUP_ROLES] + ([(tiers.TIERS_ROLE, "LOGIN")] if timescale else [])
    for role, login in roles:
        conn.execute(sql.SQL(
            "DO $$ BEGIN "
            "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {name}) THEN "
            "CREATE ROLE {role} {login}; END IF; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; "
            "END $$").format(name=sql.Literal(role), role=sql.Identifier(role), login=sql.SQL(login)))


def _own_tiers(conn: psycopg.Connection) -> None:
    """Hand the continuous aggregates back to ``pgpulse_tiers`` (``pg_restore
    --no-owner`` gave them to the user restoring), which the writer group may SET
    ROLE to for ``pgpulse tiers refresh`` (revision 0007)."""
    role = sql.Identifier(tiers.TIERS_ROLE)
    superuser, member = conn.execute(
        "SELECT rolsuper, pg_has_role(current_user, %s, 'MEMBER') FROM pg_roles WHERE rolname = current_user",
        (tiers.TIERS_ROLE,)).fetchone()
    if not (superuser or member):
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(role))
    for cagg in tiers.CAGGS:
        conn.execute(sql.SQL("ALTER MATERIALIZED VIEW {} OWNER TO {}").format(sql.Identifier(cagg), role))
    inherit = " WITH INHERIT FALSE, SET TRUE" if conn.info.server_version >= 160000 else ""
    conn.execute(sql.SQL("GRANT {} TO pgpulse_writer" + inherit).format(role))


_EXTENSION_ENTRY = re.compile(r"^\s*\d+;\s+\d+\s+\d+\s+(EXTENSION|COMMENT - EXTENSION)\s")


def _restore_list(tools: PgTools, dump: Path, env: dict[str, str]) -> tuple[str, int]:
    """The archive's table of contents without its extensions (the restore makes
    them itself, at the recorded versions), and how many tables carry data."""
    listing = subprocess.run([tools.pg_restore, "--list", str(dump)], capture_output=True,
                             text=True, env=env, check=False)
    if listing.returncode != 0:
        raise BackupError(f"pg_restore cannot read {dump}: {listing.stderr.strip()}; "
                          "nothing was changed")
    kept = [line for line in listing.stdout.splitlines() if not _EXTENSION_ENTRY.match(line)]
    data_entries = sum(1 for line in kept if " TABLE DATA " in line and not line.lstrip().startswith(";"))
    return "\n".join(kept) + "\n", data_entries


def compare(expected: dict[str, dict[str, object]], actual: dict[str, dict[str, object]]) -> list[str]:
    """What differs between two sets of table stats (empty when they match)."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        if want is None:
            problems.append(f"{table}: not in the backup")
        elif got is None:
            problems.append(f"{table}: missing after the restore")
        elif want["rows"] != got["rows"]:
            problems.append(f"{table}: {got['rows']} rows, the backup has {want['rows']}")
        elif want["checksum"] != got["checksum"]:
            problems.append(f"{table}: same row count, different contents (checksum)")
    return problems


def restore(url: str, backup_dir: Path, *, force: bool = False, pg_bin: Iterable[Path] = (),
            progress: Progress = _quiet) -> Manifest:
    """Restore ``backup_dir`` into the database at ``url`` and verify every table.

    The target must be empty (no relations besides an extension's own) unless
    ``force``, which drops and re-creates it first. Every check that can fail is made
    before anything is dropped or written (see the module's docstring)."""
    backup_dir = Path(backup_dir)
    manifest = load_manifest(backup_dir)
    progress("checking the archive against the manifest")
    dump = verify_archive(backup_dir, manifest)
    with connect(url, autocommit=True, application_name=APPLICATION_NAME) as conn:
        dbname = conn.info.dbname
        major = server_major(conn)
        existing = foreign_relations(conn)
        if existing and not force:
            raise BackupError(
                f"the target database is not empty (it has {', '.join(existing)}"
                f"{', ...' if len(existing) >= 5 else ''}): restoring would mix two databases. "
                "Use --force to drop and re-create it (its current contents are lost)"
            )
        replace = bool(existing)
        check_no_pgpulse_sessions(conn)
        tools = find_tools(max(major, int(manifest.data.get("pg_dump_major") or major)), pg_bin)
        check_extensions(conn, manifest.extensions, replace)
        check_rights(conn, url, replace)
        check_disk_space(conn, manifest, replace, progress)
    conninfo, env = _libpq(url)
    listing, total = _restore_list(tools, dump, env)
    progress("reading the whole archive")
    read_whole_archive(tools, dump, env)
    with connect(url, autocommit=True, application_name=APPLICATION_NAME) as conn:
        # Again, right before the first change: one may have started during the read.
        check_no_pgpulse_sessions(conn)
    try:
        _load(url, dump, manifest, tools, conninfo, env, listing, total, replace, progress)
    except (BackupError, psycopg.Error) as exc:
        raise BackupError(
            f"{str(exc).strip()}\nThe restore stopped part way: database {dbname} is now "
            "incomplete (or missing) and must not be used. Fix the cause above, then run "
            f"`pgpulse restore --force {backup_dir}` to replace it with the backup again"
        ) from None
    with connect(url, autocommit=True, application_name=APPLICATION_NAME) as conn:
        progress("analyzing")
        conn.execute("ANALYZE")
        progress("verifying row counts and checksums")
        actual = table_stats(conn, progress)
    problems = compare(manifest.tables, actual)
    if problems:
        raise BackupError(
            "the restored database does not match the backup:\n  " + "\n  ".join(problems)
            + f"\nDo not use database {dbname} as it is; restore a sound backup with --force")
    return manifest


def _load(url: str, dump: Path, manifest: Manifest, tools: PgTools, conninfo: str,
          env: dict[str, str], listing: str, total: int, replace: bool, progress: Progress) -> None:
    """The part of a restore that changes the target: past its first step, a failure
    leaves the target incomplete."""
    if replace:
        recreate_database(url, progress)
    timescale = "timescaledb" in manifest.extensions
    with connect(url, autocommit=True, application_name=APPLICATION_NAME) as conn:
        _prepare_extensions(conn, manifest.extensions)
        _create_group_roles(conn, timescale)
        if timescale:
            conn.execute("SELECT timescaledb_pre_restore()")
    done = 0

    def on_restore_line(line: str) -> str | None:
        nonlocal done
        m = re.search(r'processing data for table "?([^"]+)"?', line)
        if m:
            done += 1
            return f"restore [{done}/{total}] {m.group(1)}"
        return None

    progress(f"restoring {manifest.total_rows} rows in {len(manifest.tables)} tables "
             f"into {redact(url)} (pg_restore {tools.major})")
    with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as f:
        f.write(listing)
        list_path = f.name
    try:
        _run_tool(
            [tools.pg_restore, "--no-owner", "--exit-on-error", "--no-password", "--verbose",
             f"--use-list={list_path}", f"--dbname={conninfo}", str(dump)],
            env, progress, on_restore_line,
        )
    finally:
        os.unlink(list_path)
        if timescale:
            with connect(url, autocommit=True, application_name=APPLICATION_NAME) as conn:
                conn.execute("SELECT timescaledb_post_restore()")
    if timescale:
        with connect(url, autocommit=True, application_name=APPLICATION_NAME) as conn:
            if conn.execute("SELECT to_regclass('samples_5m') IS NOT NULL").fetchone()[0]:
                _own_tiers(conn)


def latest_backup(root: Path = Path("backups")) -> Path | None:
    """The newest directory under ``root`` that holds a manifest."""
    found = sorted(p.parent for p in Path(root).glob(f"*/{MANIFEST}"))
    return found[-1] if found else None


def describe(manifest: Manifest) -> Iterator[str]:
    """Lines summing up a manifest for people."""
    d = manifest.data
    yield (f"{len(manifest.tables)} tables, {manifest.total_rows} rows, archive "
           f"{d['dump'].get('bytes', 0) / 1e6:.1f} MB, PostgreSQL {d.get('server_version')}, "
           f"engine {d.get('engine')}, schema {d.get('schema_revision')}")
    if manifest.extensions:
        yield "extensions: " + ", ".join(f"{k} {v}" for k, v in sorted(manifest.extensions.items()))
