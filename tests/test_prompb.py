"""The committed protobuf classes (pgpulse/protocols/prompb/remote_pb2.py) match their
.proto and the remote-write 1.0 specification's wire format."""

from __future__ import annotations

import re
from pathlib import Path

from pgpulse.protocols import prompb

PROTO = Path(prompb.__file__).with_name("remote.proto")

# message -> {field: number}, as the specification (and Prometheus's prompb) numbers them.
SPEC = {
    "WriteRequest": {"timeseries": 1, "metadata": 3},
    "TimeSeries": {"labels": 1, "samples": 2, "exemplars": 3, "histograms": 4},
    "Label": {"name": 1, "value": 2},
    "Sample": {"value": 1, "timestamp": 2},
    "Exemplar": {"labels": 1, "value": 2, "timestamp": 3},
    "MetricMetadata": {"type": 1, "metric_family_name": 2, "help": 4, "unit": 5},
    "ReadRequest": {"queries": 1, "accepted_response_types": 2},
    "ReadResponse": {"results": 1},
    "Query": {"start_timestamp_ms": 1, "end_timestamp_ms": 2, "matchers": 3, "hints": 4},
    "QueryResult": {"timeseries": 1},
    "LabelMatcher": {"type": 1, "name": 2, "value": 3},
}


def proto_fields() -> dict[str, dict[str, int]]:
    """Top-level messages of remote.proto and their fields (a reading good for this file)."""
    out: dict[str, dict[str, int]] = {}
    depth, current = 0, None
    for line in PROTO.read_text().splitlines():
        line = line.split("//")[0].strip()
        m = re.match(r"(message|enum|oneof) (\w+) \{", line)
        if m:
            depth += 1
            if depth == 1:
                current = m.group(2)
                out[current] = {}
            continue
        if line == "}":
            depth -= 1
            continue
        f = re.match(r"(?:repeated )?[\w.]+ (\w+) = (\d+);", line)
        if f and current and (depth == 1 or (depth == 2 and not line[0].isupper())):
            out[current][f.group(1)] = int(f.group(2))
    return out


def test_generated_classes_match_the_proto():
    declared = proto_fields()
    for name, fields in declared.items():
        descriptor = getattr(prompb, name).DESCRIPTOR
        generated = {f.name: f.number for f in descriptor.fields}
        assert generated == fields, f"{name}: run `make prompb` (remote_pb2.py is out of date)"
    assert set(declared) == {name for name in dir(prompb) if name[0].isupper()}


def test_field_numbers_are_the_specifications():
    for name, fields in SPEC.items():
        descriptor = getattr(prompb, name).DESCRIPTOR
        assert descriptor.full_name == f"prometheus.{name}"
        assert {f.name: f.number for f in descriptor.fields} == fields


def test_a_write_request_round_trips_on_the_wire():
    req = prompb.WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="up")
    ts.samples.add(value=1.0, timestamp=1_700_000_000_000)
    data = req.SerializeToString()
    # field 1 (timeseries), length-delimited; inside, field 1 (labels) then field 2 (samples)
    assert data[0] == 0x0A and data[2] == 0x0A
    again = prompb.WriteRequest.FromString(data)
    assert again.timeseries[0].samples[0].timestamp == 1_700_000_000_000
