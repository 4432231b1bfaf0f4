"""Connections to PostgreSQL (psycopg 3) and safe ways to show where they go."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row

APPLICATION_NAME = "pgpulse"


def connect(url: str, *, autocommit: bool = False, dict_rows: bool = False, **kwargs) -> psycopg.Connection:
    """A new connection to ``url`` (connect timeout 10 s unless the URL says otherwise)."""
    kwargs.setdefault("connect_timeout", 10)
    kwargs.setdefault("application_name", APPLICATION_NAME)
    if dict_rows:
        kwargs["row_factory"] = dict_row
    return psycopg.connect(url, autocommit=autocommit, **kwargs)


def sqlalchemy_url(url: str) -> str:
    """The same URL for SQLAlchemy with the psycopg 3 driver."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("not a database URL")
    return "postgresql+psycopg://" + rest


def redact(url: str) -> str:
    """``url`` without its password, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=netloc[0].split(":", 1)[0] + ":***@" + netloc[1]))


def with_database(url: str, dbname: str) -> str:
    """``url`` pointing at another database of the same server."""
    return urlunsplit(urlsplit(url)._replace(path="/" + dbname))
