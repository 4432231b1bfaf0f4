"""Settings: validated once at start, one-line errors naming the variable, all documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pgpulse import config
from pgpulse.config import SettingsError
from pgpulse.settings import CoreSettings, load_core

ROOT = Path(__file__).resolve().parent.parent


def test_defaults():
    s = load_core({})
    assert s.database_url is None
    assert s.engine == "auto"
    assert (s.raw_retention_days, s.retention_5m_days, s.retention_1h_days) == (14, 90, 365)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PGPULSE_ENGINE": "mysql"}, "PGPULSE_ENGINE='mysql': expected one of auto, timescale, portable"),
        ({"PGPULSE_RAW_RETENTION_DAYS": "two"}, "PGPULSE_RAW_RETENTION_DAYS='two': expected an integer"),
        ({"PGPULSE_RAW_RETENTION_DAYS": "0"}, "PGPULSE_RAW_RETENTION_DAYS='0': must be >= 1"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL: expected a URL starting with postgresql://"),
        ({"LOKI_URL": "loki:3100"}, "LOKI_URL: expected a URL starting with http://"),
        ({"PGPULSE_5M_RETENTION_DAYS": "7"}, "PGPULSE_5M_RETENTION_DAYS must be >= PGPULSE_RAW_RETENTION_DAYS"),
        ({"PGPULSE_LATE_WINDOW_SECONDS": str(15 * 86400)}, "PGPULSE_LATE_WINDOW_SECONDS must be shorter"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError) as info:
        load_core(env)
    assert message in str(info.value)


def test_bad_url_error_does_not_echo_the_secret():
    with pytest.raises(SettingsError) as info:
        load_core({"DATABASE_URL": "mysql://u:hunter2@h/db"})
    assert "hunter2" not in str(info.value)


def test_secret_from_file(tmp_path):
    secret = tmp_path / "db_url"
    secret.write_text("postgresql://app:s3cret@db:5432/pgpulse\n")
    assert load_core({"DATABASE_URL_FILE": str(secret)}).database_url.endswith("@db:5432/pgpulse")


def test_secret_file_and_value_together_are_refused(tmp_path):
    secret = tmp_path / "db_url"
    secret.write_text("postgresql://a@b/c")
    with pytest.raises(SettingsError, match="DATABASE_URL and DATABASE_URL_FILE are both set"):
        load_core({"DATABASE_URL_FILE": str(secret), "DATABASE_URL": "postgresql://a@b/c"})


def test_missing_secret_file(tmp_path):
    with pytest.raises(SettingsError, match="DATABASE_URL_FILE=.*cannot read it"):
        load_core({"DATABASE_URL_FILE": str(tmp_path / "nope")})


def test_env_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("PGPULSE_ENGINE=portable\nLOG_LEVEL=debug\n")
    monkeypatch.setenv("LOG_LEVEL", "error")
    environ = config.read_environment(env_file)
    s = load_core(environ)
    assert (s.engine, s.log_level) == ("portable", "error")


def test_cli_stops_with_one_line_naming_the_variable(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pgpulse", "status"],
        env={"PATH": "/usr/bin:/bin", "PGPULSE_RAW_RETENTION_DAYS": "-3"},
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "pgpulse: configuration error: PGPULSE_RAW_RETENTION_DAYS='-3': must be >= 1"
    ]


def settings_classes() -> list[type]:
    """Every settings class of every part."""
    from collector.settings import CollectorSettings
    from etl.settings import EtlSettings
    from proxy.settings import ProxySettings

    return [CoreSettings, CollectorSettings, ProxySettings, EtlSettings]


def test_every_setting_is_in_env_example():
    text = (ROOT / ".env.example").read_text()
    declared = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    missing = [row["env"] for cls in settings_classes() for row in config.describe(cls)
               if row["env"] not in declared]
    assert missing == []


def test_every_setting_is_documented():
    from pgpulse.commands.config import markdown

    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = [row["env"] for cls in settings_classes() for row in config.describe(cls)
               if f"`{row['env']}`" not in text]
    assert missing == []
    assert text == markdown(), "docs/configuration.md is stale: run `make docs`"


def test_every_setting_has_help_and_accepts():
    for cls in settings_classes():
        for row in config.describe(cls):
            assert row["help"].strip() and row["accepts"].strip(), row["env"]


def test_a_retired_variable_stops_start_up_and_names_its_replacement():
    with pytest.raises(SettingsError, match="PGPULSE_COMPRESS_AFTER_DAYS.*PGPULSE_COMPRESS_AFTER_HOURS"):
        load_core({"PGPULSE_COMPRESS_AFTER_DAYS": "3"})
