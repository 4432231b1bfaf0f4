"""The committed rendered schema (pgpulse/migrations/schema/<engine>.sql) is what the
migrations produce today.

The files are the SQL of every revision for one engine, exactly as `pgpulse migrate
--sql --engine <engine>` prints it, so a review of a migration shows its DDL and a
refactoring of a revision can prove it changes nothing. `make schema` rewrites them.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from pgpulse import schema

RENDERED = Path(schema.__file__).resolve().parent / "migrations" / "schema"
ENGINES = ["portable", "timescale"]


@pytest.mark.parametrize("engine", ENGINES)
def test_rendered_schema_matches_the_migrations(engine):
    path = RENDERED / f"{engine}.sql"
    assert path.is_file(), f"{path.name} is missing: run `make schema`"
    committed = path.read_text()
    rendered = schema.offline_sql(engine)
    if committed != rendered:
        diff = "".join(list(difflib.unified_diff(
            committed.splitlines(keepends=True), rendered.splitlines(keepends=True),
            f"committed {path.name}", "rendered from the migrations", n=2))[:60])
        pytest.fail(f"the migrations' {engine} schema differs from {path.name}: run `make schema` "
                    f"and commit the file with the migration\n{diff}")


@pytest.mark.parametrize("engine", ENGINES)
def test_rendered_schema_reaches_head(engine):
    # The file covers every revision: it ends by stamping the head.
    text = (RENDERED / f"{engine}.sql").read_text()
    head = schema.head_revision()
    last_stamp = [line for line in text.splitlines() if "alembic_version" in line][-1]
    assert f"'{head}'" in last_stamp.split("WHERE")[0], last_stamp


def test_render_command_prints_the_same_script(capsys, monkeypatch):
    # `make schema` runs `pgpulse migrate --sql`: that command prints offline_sql().
    from pgpulse.cli import main

    for name in ("DATABASE_URL", "PGPULSE_ENGINE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["migrate", "--sql", "--engine", "portable"]) == 0
    assert capsys.readouterr().out == schema.offline_sql("portable")
