"""pgpulse.protocols.influx: line protocol decoded into the store's Batch (no database)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgpulse.protocols import influx
from pgpulse.store.batch import PG_EPOCH_US
from pgpulse.store.series import SeriesLimits, label_set_problem, metric_name_problem

NOW_US = time.time_ns() // 1000 - PG_EPOCH_US
NOW_NS = (NOW_US + PG_EPOCH_US) * 1000
RULES = influx.Rules(SeriesLimits(max_labels=5, max_label_value_len=20),
                     NOW_US - 86_400_000_000, NOW_US + 600_000_000, 1000)


def decode(body: bytes | str, precision: str = "ns", rules: influx.Rules = RULES) -> influx.Decoded:
    return influx.decode(body.encode() if isinstance(body, str) else body, precision, NOW_US, rules)


def stored(decoded: influx.Decoded) -> list[tuple[str, dict, int, float]]:
    keys = decoded.batch.keys
    return sorted(((keys[k].name, keys[k].labels, t, v) for t, k, v in decoded.batch.rows),
                  key=lambda r: (r[0], sorted(r[1].items()), r[2], r[3]))


def test_fields_become_metrics_named_measurement_field_and_tags_labels():
    d = decode(f"cpu,host=a,cpu=cpu0 usage_user=1.5,procs=3i,big=18446744073709551615u,"
               f"up=true,down=F {NOW_NS}")
    t = NOW_US
    assert stored(d) == sorted([
        ("cpu_usage_user", {"host": "a", "cpu": "cpu0"}, t, 1.5),
        ("cpu_procs", {"host": "a", "cpu": "cpu0"}, t, 3.0),
        ("cpu_big", {"host": "a", "cpu": "cpu0"}, t, 18446744073709551615.0),
        ("cpu_up", {"host": "a", "cpu": "cpu0"}, t, 1.0),
        ("cpu_down", {"host": "a", "cpu": "cpu0"}, t, 0.0),
    ])
    assert (d.points, d.accepted, d.refused, d.errors) == (1, 1, 0, [])
    assert all(key.type is None for key in d.batch.keys)  # untyped: any series type is fine


def test_names_are_sanitised_as_telegraf_does_and_keep_the_store_rules():
    assert influx.metric_name("disk.io", "read-bytes") == "disk_io_read_bytes"
    assert influx.metric_name("9p", "x") == "_9p_x"
    assert influx.metric_name("net", "rx:ok") == "net_rx:ok"
    assert influx.metric_name("temp", "°C") == "temp__C"
    # Telegraf's Prometheus input (metric_version = 2) emits measurement "prometheus"
    # with the scraped names as field keys: they come back as they were.
    assert influx.metric_name("prometheus", "go_goroutines") == "go_goroutines"
    assert influx.label_name("host-name") == "host_name"
    assert influx.label_name("1st") == "_1st"
    for name in ("disk_io_read_bytes", "_9p_x", "temp__C"):
        assert metric_name_problem(name) is None
    assert label_set_problem({"host_name": "x", "_1st": "y"}, 10) is None
    d = decode("disk.io,host-name=a read-bytes=5i\nprometheus,job=n go_goroutines=7")
    assert [(n, lab) for n, lab, _, _ in stored(d)] == [
        ("disk_io_read_bytes", {"host_name": "a"}), ("go_goroutines", {"job": "n"})]


@pytest.mark.parametrize(("precision", "stamp", "expected_us"), [
    ("ns", NOW_NS + 999, NOW_US),  # nanoseconds truncate to the microsecond
    ("n", NOW_NS, NOW_US),
    ("us", NOW_US + PG_EPOCH_US, NOW_US),
    ("u", NOW_US + PG_EPOCH_US, NOW_US),
    ("ms", (NOW_US + PG_EPOCH_US) // 1000, (NOW_US + PG_EPOCH_US) // 1000 * 1000 - PG_EPOCH_US),
    ("s", (NOW_US + PG_EPOCH_US) // 10**6, (NOW_US + PG_EPOCH_US) // 10**6 * 10**6 - PG_EPOCH_US),
    ("m", (NOW_US + PG_EPOCH_US) // (60 * 10**6),
     (NOW_US + PG_EPOCH_US) // (60 * 10**6) * 60 * 10**6 - PG_EPOCH_US),
    ("h", (NOW_US + PG_EPOCH_US) // (3600 * 10**6),
     (NOW_US + PG_EPOCH_US) // (3600 * 10**6) * 3600 * 10**6 - PG_EPOCH_US),
])
def test_every_precision(precision, stamp, expected_us):
    d = decode(f"m v=1 {stamp}", precision)
    assert d.errors == []
    assert [t for _, _, t, _ in stored(d)] == [expected_us]


def test_a_line_without_timestamp_takes_the_time_of_the_request():
    assert [t for _, _, t, _ in stored(decode("m v=1"))] == [NOW_US]


def test_unknown_precision_is_a_programming_error():
    with pytest.raises(ValueError):
        decode("m v=1", "fortnight")


def test_each_bad_line_is_refused_by_number_and_the_others_kept():
    body = "\n".join([
        "cpu,host=a v=1",                      # 1 good
        "# a comment",                         # 2 skipped
        "",                                    # 3 skipped
        'cpu,host=a state="up",v=2',           # 4 string field: the whole line
        "cpu,host=a v=",                       # 5 does not parse
        "cpu,host=a\\ v=1",                    # 6 bad escape: no fields left
        "cpu,__name__=x v=1",                  # 7 reserved label name
        "cpu,a.b=1,a_b=2 v=1",                 # 8 two tags, one label
        "cpu,host=" + "x" * 21 + " v=1",       # 9 label value too long (20 here)
        "cpu v=1 1",                           # 10 1970 in nanoseconds: outside the window
        f"cpu v=1 {NOW_NS // 10**9}",          # 11 seconds sent as nanoseconds
        "cpu v=1 99999999999999999999",        # 12 beyond int64
        "cpu,a=1,b=2,c=3,d=4,e=5,f=6 v=1",     # 13 more tags than labels allowed (5)
        "cpu," + "x" * 300 + "=1 v=1",         # 14 label name too long
        "m" * 300 + " v=1",                    # 15 metric name too long
        "cpu v=nan",                           # 16 not a number
        "cpu,host=b v=3\r",                    # 17 good (CRLF)
    ]).encode() + b"\n\xff\xfe v=1"            # 18 not UTF-8
    d = decode(body)
    assert [e.line for e in d.errors] == [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18]
    assert (d.points, d.accepted, d.refused) == (16, 2, 14)
    assert [(n, lab, v) for n, lab, _, v in stored(d)] == [
        ("cpu_v", {"host": "a"}, 1.0), ("cpu_v", {"host": "b"}, 3.0)]
    by_line = {e.line: e.message for e in d.errors}
    assert "'state'" in by_line[4] and "string" in by_line[4]
    assert "unable to parse" in by_line[5] and "cpu,host=a v=" in by_line[5]
    assert "reserved" in by_line[7]
    assert "'a.b'" in by_line[8] and "both become label 'a_b'" in by_line[8]
    assert "longer than 20" in by_line[9]
    assert "1970-01-01" in by_line[10] and "precision" in by_line[10]
    assert "1970-01-01" in by_line[11]
    assert "timestamp" in by_line[12]
    assert "at most 5" in by_line[13]
    assert "UTF-8" in by_line[18]


def test_the_same_series_and_time_twice_keeps_both_rows_for_the_store_to_resolve():
    # Influx overwrites a point written again; the store's duplicate rule (the later
    # row wins) does the same, so both rows go to it.
    d = decode(f"m v=1 {NOW_NS}\nm v=2 {NOW_NS}")
    assert [v for _, _, v in d.batch.rows] == [1.0, 2.0]
    assert len(d.batch.keys) == 1


def test_more_samples_than_allowed_raise():
    rules = influx.Rules(RULES.series, RULES.oldest_us, RULES.newest_us, 3)
    assert decode("m a=1,b=2,c=3", rules=rules).accepted == 1
    with pytest.raises(influx.TooManySamples):
        decode("m a=1,b=2\nm c=3,d=4", rules=rules)


def test_only_the_first_hundred_refusals_are_listed_but_all_counted():
    d = decode("\n".join(['m s="x"'] * 250))
    assert (d.refused, len(d.errors), d.errors[-1].line) == (250, 100, 100)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_any_body_decodes_without_raising(body):
    d = decode(body)
    assert d.accepted + d.refused == d.points
    assert len(d.errors) == min(d.refused, influx.MAX_REPORTED)


_token = st.text(st.characters(codec="utf-8", exclude_characters="\n\r\x00"), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(measurement=_token, tags=st.dictionaries(_token, _token, max_size=3),
       fields=st.dictionaries(_token, st.floats(allow_nan=False, allow_infinity=False)
                              | st.integers(-(2**63) + 1, 2**63 - 1) | st.booleans(),
                              min_size=1, max_size=3))
def test_what_is_accepted_keeps_the_store_rules(measurement, tags, fields):
    def esc(s: str, chars: str) -> str:
        for c in "\\" + chars:
            s = s.replace(c, "\\" + c)
        return s

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return f"{v}i" if isinstance(v, int) else repr(v)

    line = esc(measurement, ", ")
    line += "".join(f",{esc(k, ',= ')}={esc(v, ',= ')}" for k, v in sorted(tags.items()))
    line += " " + ",".join(f"{esc(k, ',= ')}={value(v)}" for k, v in fields.items())
    d = decode(line)
    for key in d.batch.keys:  # whatever was taken, the store would take too
        assert metric_name_problem(key.name) is None
        assert label_set_problem(key.labels, RULES.series.max_label_value_len) is None
        assert len(key.labels) <= RULES.series.max_labels
    assert d.accepted + d.refused == d.points
