"""Rejects: sending chosen ones through the ETL again (they are listed by
``pgpulse.store.etl_runs.list_rejects``).

A reject is *open* until its document loads: then ``replayed_at`` is set (by the
replay, or by any run that loads the document after the producer fixed it and set
it back to ``ingested``). A document has at most one open reject; a replay that
rejects it again updates that reject's reason and run.

A replay is a run (trigger ``replay``) that claims exactly the chosen documents
while MongoDB still has them ``rejected``: same claim, transform, load and marks
as any run, under the same lock. Fix the cause first: the document in MongoDB, or
the settings (e.g. ETL_TIME_FIELDS), then replay.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson
from bson import json_util
from bson.codec_options import DatetimeConversion
from bson.json_util import JSONOptions

from etl import runs
from etl.settings import EtlSettings
from etl.source import Source
from pgpulse.db import connect
from pgpulse.store.etl_runs import list_rejects
from pgpulse.store.series import SeriesLimits

MAX_REPLAY = 10_000  # rejects per replay call; call again for more
_JSON_OPTIONS = JSONOptions(tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO)


class ReplayError(ValueError):
    """The replay request names nothing that can be replayed."""


def mongo_key(document: dict) -> Any:
    """The MongoDB _id of a stored reject document (Extended JSON -> BSON value): the
    same value, of the same BSON type, as the document's (``"7"`` stays text, ``7``
    a number), so a replay claims exactly the rejected document."""
    return json_util.loads(orjson.dumps(document["_id"]).decode(), json_options=_JSON_OPTIONS)


@dataclasses.dataclass
class ReplayResult:
    run: runs.RunResult
    outcomes: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run.as_dict(), "rejects": self.outcomes}


def replay(
    url: str,
    settings: EtlSettings,
    source: Source,
    *,
    ids: Sequence[int] | None = None,
    all_open: bool = False,
    limits: SeriesLimits | None = None,
) -> ReplayResult:
    """Send the open rejects ``ids`` (or all open ones, up to MAX_REPLAY) through again.

    Each reject's outcome: ``loaded``, ``rejected`` (again, with the new reason),
    ``not rejected in MongoDB`` (its document has another status there: nothing was
    done), ``missing`` (no such document in MongoDB), or ``unknown``/``closed`` for
    ids that are not open rejects.
    """
    if not all_open and not ids:
        raise ReplayError("name the rejects to replay (ids), or ask for all open ones")
    with connect(url, autocommit=True) as conn:
        chosen = list_rejects(conn, ids=None if all_open else ids, limit=MAX_REPLAY)
        closed = {} if all_open else {
            r["id"]: r
            for r in list_rejects(conn, open_only=False, ids=ids, limit=MAX_REPLAY, with_document=False)
        }
    outcomes: dict[int, dict[str, Any]] = {}
    if not all_open:
        for reject_id in ids or ():
            if reject_id not in {r["id"] for r in chosen}:
                state = "closed" if reject_id in closed else "unknown"
                outcomes[reject_id] = {"id": reject_id, "mongo_id": closed.get(reject_id, {}).get("mongo_id"),
                                       "outcome": state}
    keyed: list[tuple[dict[str, Any], Any]] = []
    for reject in chosen:
        if not isinstance(reject["document"], dict) or "_id" not in reject["document"]:
            outcomes[reject["id"]] = {"id": reject["id"], "mongo_id": reject["mongo_id"],
                                      "outcome": "missing", "detail": "the stored document has no _id"}
            continue
        keyed.append((reject, mongo_key(reject["document"])))
    if not keyed:
        raise ReplayError("none of the named rejects is open" if not all_open else "there are no open rejects")

    result = runs.run(url, settings, source, trigger="replay", max_batches=0,
                      keys=[key for _, key in keyed], limits=limits)
    with connect(url, autocommit=True) as conn:
        after = {r["id"]: r for r in list_rejects(
            conn, open_only=False, ids=[r["id"] for r, _ in keyed], limit=MAX_REPLAY, with_document=False
        )}
    pending = [(r, key) for r, key in keyed if after.get(r["id"], {}).get("replayed_at") is None
               and after.get(r["id"], {}).get("run_id") != result.run_id]
    states = source.states([key for _, key in pending]) if pending else {}
    for reject, key in keyed:
        now = after.get(reject["id"], {})
        entry: dict[str, Any] = {"id": reject["id"], "mongo_id": reject["mongo_id"]}
        if now.get("replayed_at") is not None:
            entry["outcome"] = "loaded"
        elif now.get("run_id") == result.run_id:
            entry["outcome"] = "rejected"
            entry["reason"] = now.get("reason")
        else:
            status = states.get(key)
            entry["outcome"] = "missing" if status is None else "not rejected in MongoDB"
            if status is not None:
                entry["status"] = status
        outcomes[reject["id"]] = entry
    ordered = [outcomes[i] for i in (ids or [])] if not all_open else list(outcomes.values())
    return ReplayResult(result, ordered)
