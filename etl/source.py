"""MongoDB, the ETL's source: claims with leases, and the marks of each state.

A document moves through ``status``::

    ingested --claim--> processing --load+mark--> processed
                            |   \\--transform fails--> rejected --replay--> processing
                            \\-- lease expired (the run crashed): claimable again

A claim stamps ``pgpulse_etl: {run_id, claimed_at, lease_until, claims}`` on the
document. Documents are only marked after their PostgreSQL transaction committed,
and only while still claimed by the same run, so a crash anywhere leaves them
``processing`` until the lease expires and the next run takes them again (the load
is an upsert: loading twice leaves one row).

The database is MONGO_DATABASE, else the one MONGO_URI names, else ``pgpulse``.
The client is made on first use, with explicit timeouts, so nothing needs MongoDB
until a run starts. Every pymongo error leaves this module as :class:`SourceError`
(:class:`SourceUnavailable` when MongoDB cannot be reached) with a message that
names the hosts, never the credentials.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import unquote

import pymongo
from bson.errors import InvalidBSON
from pymongo import errors as mongo_errors

from etl.settings import EtlSettings

log = logging.getLogger("etl.source")

INGESTED, PROCESSING, PROCESSED, REJECTED = "ingested", "processing", "processed", "rejected"
STATES = (INGESTED, PROCESSING, PROCESSED, REJECTED)
META = "pgpulse_etl"
MAX_REASON = 2000

# Decoding: dates as aware UTC datetimes, dates outside Python's range as
# DatetimeMS instead of an error that would stop the whole cursor, and UUIDs as
# Binary subtype 4 whatever the URI says (the JSON mapping tells the two apart).
# A document that still cannot be decoded (a string that is not valid UTF-8) is
# read alone and becomes an Unreadable reject: it never blocks its batch.
CLIENT_OPTIONS: dict[str, Any] = {
    "tz_aware": True,
    "datetime_conversion": "DATETIME_AUTO",
    "uuidRepresentation": "unspecified",
    "appname": "pgpulse-etl",
}


class Unreadable(dict):
    """A claimed document the driver could not decode: only its _id and why."""

    def __init__(self, key: Any, reason: str) -> None:
        super().__init__(_id=key)
        self.reason = reason


class SourceError(RuntimeError):
    """MongoDB cannot be used for this run (misconfigured, refused, or unreachable)."""


class SourceUnavailable(SourceError):
    """MongoDB did not answer: down, unreachable, or too slow."""


def hosts_of(uri: str) -> str:
    """The host list of a MongoDB URI, without credentials (for messages)."""
    rest = uri.split("://", 1)[-1]
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    return netloc.rsplit("@", 1)[-1] or "?"


def scrub(message: str, uri: str | None) -> str:
    """``message`` without the URI's password, should a driver message quote it."""
    if not uri:
        return message
    rest = uri.split("://", 1)[-1]
    userinfo, at, _ = rest.split("/", 1)[0].rpartition("@")
    if at and ":" in userinfo:
        password = userinfo.split(":", 1)[1]
        for secret in {password, unquote(password)}:
            if secret:
                message = message.replace(secret, "***")
    return message


def _first_part(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # Server selection errors append a long topology description.
    return text.split(", Timeout:", 1)[0].split(", Topology Description:", 1)[0][:500]


class Source(Protocol):
    """What a run needs from the store of reading documents (:class:`MongoSource`;
    tests wrap one to inject faults)."""

    @property
    def where(self) -> str:
        """hosts/database.collection, for messages (no credentials)."""

    def backlog(self, now: datetime) -> int: ...

    def claim(
        self, run_id: str, now: datetime, lease_until: datetime, limit: int,
        keys: Sequence[Any] | None = None,
    ) -> list[dict]: ...

    def mark_processed(self, run_id: str, keys: Sequence[Any], now: datetime) -> int: ...

    def mark_rejected(self, run_id: str, rejects: Sequence[tuple[Any, str]], now: datetime) -> int: ...

    def states(self, keys: Sequence[Any]) -> dict[Any, str]: ...

    def why_empty(self) -> str | None:
        """Why a run found nothing, when the collection is missing or empty (naming the
        database and collection); None when it holds documents."""

    def close(self) -> None: ...


class MongoSource:
    """The reading collection in MongoDB, through one pymongo client made on first use
    and shared by the threads of a process (pymongo clients are thread-safe)."""

    def __init__(self, settings: EtlSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()  # the proxy shares one source between threads

    @property
    def where(self) -> str:
        uri = self.settings.mongo_uri or ""
        return f"{hosts_of(uri)}/{self.settings.mongo_database}.{self.settings.collection}"

    def open_client(self, uri: str, **options: Any) -> Any:
        """A MongoDB client for ``uri``: the network edge of the ETL. (The test suite's
        source overrides this to return mongomock's in-memory client, since MongoDB
        cannot be installed on the machines the suite runs on.)"""
        return pymongo.MongoClient(uri, **options)

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Turn pymongo's errors into SourceError with a clear, secret-free message."""
        uri = self.settings.mongo_uri
        try:
            yield
        except mongo_errors.ConnectionFailure as exc:
            raise SourceUnavailable(
                f"MongoDB at {hosts_of(uri or '')} is unreachable: {scrub(_first_part(exc), uri)} "
                f"(server selection timeout {self.settings.server_selection_timeout_ms} ms)"
            ) from None
        except mongo_errors.OperationFailure as exc:
            detail = exc.details.get("errmsg") if isinstance(exc.details, dict) else None
            raise SourceError(
                f"MongoDB refused the operation on {self.where}: "
                f"{scrub(detail or _first_part(exc), uri)} (code {exc.code})"
            ) from None
        except (mongo_errors.ConfigurationError, mongo_errors.InvalidURI) as exc:
            raise SourceError(f"MONGO_URI cannot be used: {scrub(_first_part(exc), uri)}") from None
        except mongo_errors.PyMongoError as exc:
            raise SourceError(f"MongoDB error on {self.where}: {scrub(_first_part(exc), uri)}") from None

    def collection(self) -> Any:
        """The collection, making the client on first use (it connects lazily too)."""
        with self._lock:
            return self._collection()

    def _collection(self) -> Any:
        if self._client is None:
            uri = self.settings.mongo_uri
            if not uri:
                raise SourceError("MONGO_URI is not set: the ETL has no source")
            with self.errors():
                try:
                    self._client = self.open_client(
                        uri,
                        serverSelectionTimeoutMS=self.settings.server_selection_timeout_ms,
                        connectTimeoutMS=self.settings.connect_timeout_ms,
                        socketTimeoutMS=self.settings.socket_timeout_ms,
                        **CLIENT_OPTIONS,
                    )
                except (ValueError, TypeError) as exc:
                    # pymongo reports some malformed URIs (a bad port) as ValueError.
                    raise SourceError(f"MONGO_URI cannot be used: {scrub(_first_part(exc), uri)}") from None
        return self._client[self.settings.mongo_database][self.settings.collection]

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- claims ---------------------------------------------------------------------

    def _claimable(self, now: datetime) -> dict:
        return {
            "$or": [
                {"status": INGESTED},
                {"status": PROCESSING, f"{META}.lease_until": {"$lt": now}},
            ]
        }

    def _selection(self, now: datetime, keys: Sequence[Any] | None, run_id: str | None = None) -> dict:
        if keys is not None:
            # Replay: exactly these documents while they are rejected, and not again
            # once this run rejected them anew.
            return {"_id": {"$in": list(keys)}, "status": REJECTED, f"{META}.run_id": {"$ne": run_id}}
        claimable = self._claimable(now)
        user = self.settings.mongo_filter
        return {"$and": [user, claimable]} if user else claimable

    def backlog(self, now: datetime) -> int:
        """How many documents a run could claim now."""
        with self.errors():
            return self.collection().count_documents(self._selection(now, None))

    def claim(
        self,
        run_id: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        keys: Sequence[Any] | None = None,
    ) -> list[dict]:
        """Claim up to ``limit`` documents for ``run_id`` and return them.

        ``keys``: claim these rejected documents (a replay) instead of the backlog.
        """
        selection = self._selection(now, keys, run_id)
        with self.errors():
            col = self.collection()
            candidates = [d["_id"] for d in col.find(selection, {"_id": 1}).sort("_id", 1).limit(limit)]
            if not candidates:
                return []
            # The update repeats the selection, so a document another claimer took
            # in between is not taken twice; re-reading by run id returns exactly
            # what this run holds.
            col.update_many(
                {"$and": [{"_id": {"$in": candidates}}, selection]},
                {
                    "$set": {
                        "status": PROCESSING,
                        f"{META}.run_id": run_id,
                        f"{META}.claimed_at": now,
                        f"{META}.lease_until": lease_until,
                    },
                    "$unset": {f"{META}.reason": "", f"{META}.rejected_at": ""},
                    "$inc": {f"{META}.claims": 1},
                },
            )
            mine = {"status": PROCESSING, f"{META}.run_id": run_id}
            try:
                return list(col.find({"_id": {"$in": candidates}, **mine}).sort("_id", 1))
            except InvalidBSON:
                # One bad document spoils the whole reply: read them one at a time.
                return self._one_by_one(col, candidates, mine)

    def _one_by_one(self, col: Any, keys: Sequence[Any], mine: dict) -> list[dict]:
        documents: list[dict] = []
        for key in keys:
            try:
                document = col.find_one({"_id": key, **mine})
            except InvalidBSON as exc:
                log.warning("document %r cannot be decoded: %s", key, exc)
                document = Unreadable(key, f"the document cannot be decoded: {_first_part(exc)}")
            if document is not None:
                documents.append(document)
        return documents

    # -- marks (only after the PostgreSQL commit) ---------------------------------------

    def mark_processed(self, run_id: str, keys: Sequence[Any], now: datetime) -> int:
        if not keys:
            return 0
        with self.errors():
            result = self.collection().update_many(
                {"_id": {"$in": list(keys)}, "status": PROCESSING, f"{META}.run_id": run_id},
                {
                    "$set": {"status": PROCESSED, f"{META}.processed_at": now},
                    "$unset": {f"{META}.lease_until": ""},
                },
            )
        return result.modified_count

    def mark_rejected(self, run_id: str, rejects: Sequence[tuple[Any, str]], now: datetime) -> int:
        """Mark each (key, reason) rejected; rejects are few, one update each."""
        marked = 0
        with self.errors():
            col = self.collection()
            for key, reason in rejects:
                result = col.update_one(
                    {"_id": key, "status": PROCESSING, f"{META}.run_id": run_id},
                    {
                        "$set": {
                            "status": REJECTED,
                            f"{META}.reason": reason[:MAX_REASON],
                            f"{META}.rejected_at": now,
                        },
                        "$unset": {f"{META}.lease_until": ""},
                    },
                )
                marked += result.modified_count
        return marked

    def why_empty(self) -> str | None:
        """Why a run found nothing to read, when the collection is missing or empty
        (naming the database and collection read); None when it holds documents."""
        settings = self.settings
        where = (f"the collection {settings.collection!r} in database {settings.mongo_database!r} "
                 f"at {hosts_of(settings.mongo_uri or '')}")
        with self.errors():
            col = self.collection()
            try:
                names: list[str] | None = col.database.list_collection_names()
            except mongo_errors.OperationFailure:
                names = None  # listing collections needs a privilege the ETL's user may lack
            if col.estimated_document_count() > 0:
                return None
        if names is None:
            return f"{where} is missing or empty"
        return f"{where} is empty" if settings.collection in names else f"{where} does not exist"

    def states(self, keys: Sequence[Any]) -> dict[Any, str]:
        """The status of each of ``keys`` that exists (for replay reports)."""
        if not keys:
            return {}
        with self.errors():
            docs = self.collection().find({"_id": {"$in": list(keys)}}, {"_id": 1, "status": 1})
            return {d["_id"]: d.get("status") for d in docs}
