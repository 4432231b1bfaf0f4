"""Settings of the MongoDB -> PostgreSQL ETL (declared like every part's settings).

They are loaded when the ETL is used, not when the proxy starts: a missing or bad
MONGO_URI makes the ETL endpoints answer 503 with the reason, while the rest of
the proxy keeps serving. Defaults and one-line meanings are in .env.example;
docs/etl.md explains each one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from bson import json_util
from bson.errors import InvalidId
from pymongo import uri_parser
from pymongo.errors import ConfigurationError, InvalidURI

from pgpulse import config
from pgpulse.config import SettingsError, setting
from pgpulse.store.series import label_name_problem, metric_name_problem

# The ETL owns these fields of every document; a user filter may not touch them.
OWNED_FIELDS = ("status", "pgpulse_etl")
SOURCE_LABEL = "source"
DEFAULT_DATABASE = "pgpulse"  # when neither MONGO_DATABASE nor MONGO_URI names one


class FieldList(tuple):
    """A tuple that prints as the comma-separated text it was parsed from (for
    .env.example and docs/configuration.md)."""

    def __str__(self) -> str:
        return ",".join(str(item) for item in self)


class PairList(tuple):
    """(path, name) pairs that print as ``path=name,...``."""

    def __str__(self) -> str:
        return ",".join(f"{path}={name}" for path, name in self)


class LabelList(PairList):
    """(path, label) pairs that print as ``label=path,...`` (how they are written)."""

    def __str__(self) -> str:
        return ",".join(f"{label}={path}" for path, label in self)


def _check_path(name: str, raw: str, path: str) -> str:
    parts = path.split(".")
    if not path or any(not p or p.startswith("$") for p in parts):
        raise SettingsError(f"{name}={raw!r}: {path!r} is not a field path (name or a.b.c)")
    return path


def as_field_list(name: str, raw: str) -> FieldList:
    """``a,b.c`` -> ('a', 'b.c'): document field paths, in order of preference."""
    paths = [p.strip() for p in raw.split(",") if p.strip()]
    return FieldList(_check_path(name, raw, p) for p in paths)


def as_series_map(name: str, raw: str) -> PairList:
    """``temperature,env.pressure=pressure_hpa`` -> ((path, metric name), ...)."""
    pairs: list[tuple[str, str]] = []
    for item in filter(None, (p.strip() for p in raw.split(","))):
        path, sep, metric = item.partition("=")
        path = _check_path(name, raw, path.strip())
        metric = metric.strip() if sep else "reading_" + path.replace(".", "_")
        if metric_name_problem(metric):
            raise SettingsError(
                f"{name}={raw!r}: {metric!r} is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*, "
                "1 to 200 characters)"
            )
        pairs.append((path, metric))
    metrics = [m for _, m in pairs]
    if len(set(metrics)) != len(metrics):
        raise SettingsError(f"{name}={raw!r}: two fields map to the same metric name")
    return PairList(pairs)


def as_label_map(name: str, raw: str) -> LabelList:
    """``site,unit=meta.unit`` -> ((path, label name), ...); default name: path with _."""
    pairs: list[tuple[str, str]] = []
    for item in filter(None, (p.strip() for p in raw.split(","))):
        label, sep, path = item.partition("=")
        path = path.strip() if sep else label.strip()
        label = label.strip() if sep else path.replace(".", "_")
        _check_path(name, raw, path)
        if label_name_problem(label) or label == SOURCE_LABEL:
            raise SettingsError(
                f"{name}={raw!r}: {label!r} cannot be a label name (letters, digits, _; "
                f"{SOURCE_LABEL!r} is reserved for the source identity)"
            )
        pairs.append((path, label))
    return LabelList(pairs)


def _mentions_owned_field(value: Any) -> bool:
    if isinstance(value, dict):
        return any(
            key.split(".", 1)[0] in OWNED_FIELDS or _mentions_owned_field(v) for key, v in value.items()
        )
    if isinstance(value, list):
        return any(_mentions_owned_field(v) for v in value)
    return False


def as_filter(name: str, raw: str) -> str:
    """A JSON object (MongoDB Extended JSON: {"$date": ...}, {"$oid": ...} work),
    checked here and kept as its text (settings are immutable; see ``mongo_filter``)."""
    if not raw.strip():
        return ""
    try:
        value = json_util.loads(raw)
    except (ValueError, TypeError, InvalidId) as exc:
        raise SettingsError(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{name}: expected a JSON object, e.g. {{\"site\": \"north\"}}")
    if _mentions_owned_field(value):
        raise SettingsError(
            f"{name}: the filter may not use {' or '.join(OWNED_FIELDS)}: the ETL sets and "
            "selects those itself"
        )
    return raw.strip()


@dataclasses.dataclass(frozen=True)
class EtlSettings:
    mongo_uri: str | None = setting(
        "MONGO_URI",
        None,
        "MongoDB connection string of the reading documents (mongodb:// or mongodb+srv://). "
        "Empty: the ETL is off. Also read from MONGO_URI_FILE.",
        parse=config.as_url("mongodb", "mongodb+srv"),
        accepts="mongodb:// or mongodb+srv:// URL, or empty",
        secret=True,
    )
    database: str | None = setting(
        "MONGO_DATABASE",
        None,
        "MongoDB database holding the readings. Empty: the database MONGO_URI names "
        f"(mongodb://host/plant), else {DEFAULT_DATABASE}.",
        parse=config.as_optional_str,
        accepts="a database name, or empty",
    )
    collection: str = setting(
        "MONGO_COLLECTION",
        "readings",
        "MongoDB collection holding the readings.",
        parse=config.as_str,
        accepts="a collection name",
    )
    server_selection_timeout_ms: int = setting(
        "MONGO_SERVER_SELECTION_TIMEOUT_MS",
        5000,
        "How long an ETL run waits for a usable MongoDB server before it fails.",
        parse=config.as_int(1),
        accepts="integer >= 1",
    )
    connect_timeout_ms: int = setting(
        "MONGO_CONNECT_TIMEOUT_MS",
        5000,
        "Timeout of one connection attempt to MongoDB.",
        parse=config.as_int(1),
        accepts="integer >= 1",
    )
    socket_timeout_ms: int = setting(
        "MONGO_SOCKET_TIMEOUT_MS",
        30000,
        "Longest wait for one MongoDB reply (claims and marks of one batch).",
        parse=config.as_int(1),
        accepts="integer >= 1",
    )
    batch_size: int = setting(
        "ETL_BATCH_SIZE",
        1000,
        "Documents claimed, transformed and loaded per batch (one PostgreSQL transaction).",
        parse=config.as_int(1, 100_000),
        accepts="integer 1..100000",
    )
    query_filter: str = setting(
        "ETL_FILTER",
        "",
        "Extra MongoDB filter (JSON object, Extended JSON allowed) on top of "
        'status "ingested", e.g. {"site": "north"}. It may not use status or pgpulse_etl.',
        parse=as_filter,
        accepts="a JSON object or empty",
    )
    lease_s: float = setting(
        "ETL_LEASE_SECONDS",
        300.0,
        "How long a claim holds a document: a run that crashed leaves claims that the "
        "next run takes again once this has passed. Longer than one batch takes.",
        parse=config.as_float(0, exclusive=True),
        accepts="number > 0",
    )
    interval_minutes: int = setting(
        "ETL_INTERVAL_MINUTES",
        5,
        "Minutes between scheduled runs in `pgpulse up` (only when MONGO_URI is set); "
        "0 turns the schedule off.",
        parse=config.as_int(0),
        accepts="integer >= 0",
    )
    max_batches: int = setting(
        "ETL_MAX_BATCHES",
        20,
        "Most batches one run started by the API or the schedule takes (the rest waits "
        "for the next run); 0: until the backlog is empty. `pgpulse etl run` always "
        "goes until the backlog is empty.",
        parse=config.as_int(0),
        accepts="integer >= 0",
    )
    time_fields: tuple = setting(
        "ETL_TIME_FIELDS",
        FieldList(("time", "timestamp", "ts", "reading_time", "recorded_at", "created_at")),
        "Document fields (dotted paths allowed) that hold the reading's time, tried in "
        "order; none set: the creation time of an ObjectId _id.",
        parse=as_field_list,
        accepts="comma-separated field paths",
    )
    source_fields: tuple = setting(
        "ETL_SOURCE_FIELDS",
        FieldList(("source_id", "device_id", "sensor_id", "device", "sensor", "source")),
        "Document fields (dotted paths allowed) that identify the reading's source, tried "
        "in order; none set: no source.",
        parse=as_field_list,
        accepts="comma-separated field paths",
    )
    series: tuple = setting(
        "ETL_SERIES",
        PairList(),
        "Numeric reading fields that also become metric series in samples, as "
        "field[=metric_name] (default name: reading_<field>), e.g. "
        "temperature,env.pressure=pressure_hpa. Empty: off.",
        parse=as_series_map,
        accepts="comma-separated field[=metric] items, or empty",
    )
    series_labels: tuple = setting(
        "ETL_SERIES_LABELS",
        LabelList(),
        "Document fields that become labels of those series, as [label=]field "
        "(the source identity is always the label 'source'), e.g. site,unit=meta.unit.",
        parse=as_label_map,
        accepts="comma-separated [label=]field items, or empty",
    )

    def check(self) -> None:
        # Mongo names: fail at start, not at the first run.
        if self.database is not None and any(c in self.database for c in '/\\. "$'):
            raise SettingsError(f"MONGO_DATABASE={self.database!r}: not a valid database name")
        if not self.collection or self.collection.startswith(("system.", "$")) or "\x00" in self.collection:
            raise SettingsError(f"MONGO_COLLECTION={self.collection!r}: not a valid collection name")

    @property
    def mongo_filter(self) -> dict:
        """ETL_FILTER as a MongoDB filter (a new dict each time)."""
        return json_util.loads(self.query_filter) if self.query_filter else {}

    @property
    def configured(self) -> bool:
        return bool(self.mongo_uri)

    @property
    def mongo_database(self) -> str:
        """The database read: MONGO_DATABASE, else the one MONGO_URI names, else pgpulse."""
        return self.database or uri_database(self.mongo_uri) or DEFAULT_DATABASE


def uri_database(uri: str | None) -> str | None:
    """The database a MongoDB URI names (``mongodb://host/plant`` -> ``plant``), if any.

    Parsed by pymongo. An SRV URI is parsed in its plain form: its database is in the
    path like any other, and the plain form needs no DNS lookup. A URI pymongo cannot
    parse names nothing here; the run says what is wrong with it when it connects.
    """
    if not uri:
        return None
    plain = "mongodb://" + uri.split("://", 1)[1] if uri.startswith("mongodb+srv://") else uri
    try:
        return uri_parser.parse_uri(plain, validate=False)["database"] or None
    except (InvalidURI, ConfigurationError, ValueError):
        return None


def load_etl(environ: Mapping[str, Any] | None = None, **overrides: Any) -> EtlSettings:
    """ETL settings from ``environ`` (default: the environment and .env).

    Values in ``environ`` may be text (parsed like environment variables) or already
    typed (taken as they are), the way ``create_app(config)`` passes them.
    """
    if environ is None:
        return config.load(EtlSettings, None, **overrides)
    return config.load_mapping(EtlSettings, environ, **overrides)

