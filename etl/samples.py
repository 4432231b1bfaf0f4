"""ETL_SERIES: the samples of loaded readings, written through the store.

The ETL writes samples like every other producer, through ``pgpulse.store``: the
store's rules of a series (names, labels) and its limits (PROXY_MAX_SERIES,
PROXY_MAX_SERIES_PER_METRIC, PROXY_MAX_LABELS, PROXY_MAX_LABEL_VALUE_LENGTH) hold
for the ETL as for ingest.

:func:`admit`, before a batch's readings are written, checks the samples of each
document and resolves their series (creating the missing ones under the limits). A
document whose samples the store refuses (InvalidSample, CardinalityExceeded,
TypeConflict) becomes a reject of its own, with the store's message as reason, and
its reading is not loaded: the rest of the batch goes on, and the document can be
replayed once the cause (a limit, a label) is fixed. :func:`write`, after the
upsert, COPYs the samples of the readings this transaction *inserted*: a reading
loaded again never doubles its samples.
"""

from __future__ import annotations

import dataclasses

import orjson
import psycopg

from etl.transform import Batch, Reject, Sample
from pgpulse.store import samples as store_samples
from pgpulse.store import series
from pgpulse.store.batch import Batch as SampleBatch
from pgpulse.store.batch import SeriesKey, datetime_us
from pgpulse.store.errors import StoreError
from pgpulse.store.tenants import DEFAULT_TENANT


@dataclasses.dataclass
class Admitted:
    """Samples ready to write: series resolved, rows per document."""

    batch: SampleBatch  # every admitted document's series (rows filled by write)
    ids: list[int]  # series id of each key of ``batch``
    rows: dict[str, list[tuple[int, int, float]]]  # mongo_id -> (µs, key index, value)


def _document_keys(batch: SampleBatch, samples: list[Sample], limits: series.SeriesLimits
                   ) -> list[tuple[int, int, float]]:
    """Rows of one document's samples; raises before adding any series when one is bad."""
    labelled = [(s, orjson.loads(s.labels)) for s in samples]
    for s, labels in labelled:
        series.check_key(SeriesKey(s.metric, labels, None), limits)
    return [(datetime_us(s.time), batch.series(s.metric, labels), s.value) for s, labels in labelled]


def admit(conn: psycopg.Connection, batch: Batch, limits: series.SeriesLimits) -> Admitted | None:
    """Check and resolve the series of ``batch``'s samples, in the caller's transaction.

    Documents refused by the store move from ``batch.rows`` to ``batch.rejects``.
    """
    if not batch.samples:
        return None
    by_doc: dict[str, list[Sample]] = {}
    for s in batch.samples:
        by_doc.setdefault(s.mongo_id, []).append(s)
    refused: dict[str, str] = {}
    keys = SampleBatch()
    rows: dict[str, list[tuple[int, int, float]]] = {}
    for mongo_id, doc_samples in by_doc.items():
        try:
            rows[mongo_id] = _document_keys(keys, doc_samples, limits)
        except StoreError as exc:
            refused[mongo_id] = exc.message
    ids = [0] * len(keys.keys)
    try:
        ids, _ = series.resolve(conn, keys, limits, tenant=DEFAULT_TENANT)
    except StoreError:
        # Some document would pass a limit: resolve document by document, in batch
        # order, so that every document that fits still loads. resolve() creates
        # nothing when it refuses, so the refused ones leave no trace.
        for mongo_id, doc_rows in rows.items():
            indices = sorted({k for _, k, _ in doc_rows})
            one = SampleBatch(keys=[keys.keys[k] for k in indices])
            try:
                doc_ids, _ = series.resolve(conn, one, limits, tenant=DEFAULT_TENANT)
            except StoreError as exc:
                refused[mongo_id] = exc.message
                continue
            for k, sid in zip(indices, doc_ids, strict=True):
                ids[k] = sid
    if refused:
        _refuse(batch, refused)
        rows = {m: r for m, r in rows.items() if m not in refused}
    return Admitted(keys, ids, rows)


def _refuse(batch: Batch, refused: dict[str, str]) -> None:
    kept = []
    for row in batch.rows:
        reason = refused.get(row.mongo_id)
        if reason is None:
            kept.append(row)
        else:
            batch.rejects.append(Reject(row.mongo_id, row.key, f"ETL_SERIES: {reason}", row.payload,
                                        row.source_id))
    batch.rows = kept
    batch.samples = [s for s in batch.samples if s.mongo_id not in refused]


def write(conn: psycopg.Connection, admitted: Admitted | None, inserted: set[str]) -> int:
    """COPY the samples of the ``inserted`` readings; returns how many."""
    if admitted is None:
        return 0
    out = SampleBatch(keys=admitted.batch.keys)
    for mongo_id, doc_rows in admitted.rows.items():
        if mongo_id in inserted:
            out.rows.extend(doc_rows)
    return store_samples.write(conn, out, admitted.ids)
