"""Python classes of Prometheus's remote-write and remote-read protobuf messages.

``remote.proto`` holds the messages of the remote-write 1.0 specification and of
remote read (package ``prometheus``, the same names and field numbers as
Prometheus's ``prompb``), without the Go-only gogoproto options. ``remote_pb2.py`` is
generated from it and committed: regenerate it with ``make prompb`` after changing
the .proto (``tests/test_prompb.py`` fails when the two differ).
"""

from pgpulse.protocols.prompb.remote_pb2 import (  # noqa: F401 - the public names
    BucketSpan,
    Chunk,
    ChunkedReadResponse,
    ChunkedSeries,
    Exemplar,
    Histogram,
    Label,
    LabelMatcher,
    Labels,
    MetricMetadata,
    Query,
    QueryResult,
    ReadHints,
    ReadRequest,
    ReadResponse,
    Sample,
    TimeSeries,
    WriteRequest,
)
