"""The ingest validator: the fast path and the plain rule table agree on any batch,
and the table's rules are the store's rules of a series."""

from __future__ import annotations

import json
import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgpulse.store import series
from pgpulse.store.batch import PG_EPOCH_S, SeriesKey
from pgpulse.store.errors import InvalidSample
from pgpulse.store.series import SeriesLimits
from proxy.validation import SAMPLE_RULES, Limits, decode_typed, validate, validate_plain

NOW_S = 1_800_000_000
NOW_US = (NOW_S - PG_EPOCH_S) * 1_000_000
LIMITS = Limits(SeriesLimits(max_labels=3, max_label_value_len=8), max_past_s=3600, max_future_s=60)

# Few distinct names, labels and times, so that random batches repeat series (the
# fast path) and collide (duplicates, type conflicts); a few bad values of each kind.
names = st.sampled_from(["cpu", "mem", "disk:io", "1bad", "", "a-b", None, 7])
label_names = st.sampled_from(["host", "dev", "zone", "__x", "9z", "a b"])
label_values = st.one_of(st.sampled_from(["a", "b", "c", "x" * 9, "nul\x00"]), st.integers(0, 2),
                         st.lists(st.just("a"), max_size=1))
labels = st.one_of(st.none(), st.just({}), st.dictionaries(label_names, label_values, max_size=4),
                   st.just([]), st.just("host=a"))
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3),
                   st.just(10**309), st.booleans(), st.just("1"), st.none())
timestamps = st.one_of(
    st.none(),
    st.integers(NOW_S - 4000, NOW_S + 100),
    st.floats(NOW_S - 4000, NOW_S + 100),
    st.sampled_from([NOW_S - 3600, NOW_S + 60, 1e11, -1e11, 1e12, float("nan"), float("inf")]),
    st.sampled_from(["2027-01-15T08:00:00Z", "2027-01-15T08:00:00.5+00:00", "yesterday", ""]),
    st.booleans(),
)
types = st.sampled_from([None, None, "gauge", "counter", "summary"])


@st.composite
def samples(draw):
    s = {"name": draw(names), "value": draw(values)}
    for field, strategy in (("labels", labels), ("timestamp", timestamps), ("type", types)):
        if draw(st.booleans()):
            s[field] = draw(strategy)
    if draw(st.integers(0, 30)) == 0:
        s["extra"] = 1
    return s


# Batches that often hold only good samples, so that acceptance is tested too.
good = st.fixed_dictionaries(
    {"name": st.sampled_from(["cpu", "mem"]), "value": st.floats(-1e6, 1e6)},
    optional={"labels": st.dictionaries(st.sampled_from(["host", "dev"]), st.sampled_from(["a", "b"]),
                                        max_size=2),
              "timestamp": st.integers(NOW_S - 100, NOW_S), "type": st.sampled_from(["gauge", None])},
)
batches = st.one_of(st.lists(st.one_of(samples(), st.just("text"), st.just([])), max_size=25),
                    st.lists(good, max_size=40))


def outcome(check, items):
    try:
        batch = check(items, LIMITS, NOW_US)
    except InvalidSample as exc:
        return "refused", exc.message, exc.details
    return "accepted", [(k.name, k.labels, k.type) for k in batch.keys], batch.index, batch.rows


@settings(max_examples=400, deadline=None)
@given(batches)
def test_fast_path_and_rule_table_agree(items):
    fast, plain = outcome(validate, items), outcome(validate_plain, items)
    assert fast == plain


def typed_outcome(body: bytes, max_samples: int = 100):
    batch = decode_typed(body, LIMITS, NOW_US, max_samples)
    if batch is None:
        return None
    return "accepted", [(k.name, k.labels, k.type) for k in batch.keys], batch.index, batch.rows


@settings(max_examples=400, deadline=None)
@given(batches)
def test_typed_path_takes_exactly_the_batches_the_rules_accept(items):
    # The body as a client would send it (NaN and Infinity as the invalid JSON tokens
    # Python writes); the reference is what the API would do with it.
    body = json.dumps({"metrics": items}).encode()
    try:
        reference = outcome(validate, orjson.loads(body)["metrics"])
    except orjson.JSONDecodeError:
        reference = ("not JSON",)
    typed = typed_outcome(body)
    if reference[0] == "accepted":
        assert typed == reference
    else:
        assert typed is None


def test_typed_path_takes_a_repetitive_batch_and_declines_too_many():
    items = [{"name": "cpu", "labels": {"host": h, "dev": "x"}, "value": i, "timestamp": NOW_S - i}
             for h in ("a", "b") for i in range(100)]
    body = orjson.dumps({"metrics": items, "other": 1})
    assert typed_outcome(body, 200) == outcome(validate, items)
    assert typed_outcome(body, 199) is None
    # The same label set spelled differently is one series.
    respelled = b'{"metrics": [{"name": "cpu", "labels": {"dev": "x", "host": "a"}, "value": 1}]}'
    assert len(decode_typed(respelled, LIMITS, NOW_US, 9).rows) == 1


def test_both_accept_a_repetitive_batch():
    items = [{"name": "cpu", "labels": {"host": h}, "value": float(i), "timestamp": NOW_S - i}
             for h in ("a", "b") for i in range(100)]
    fast, plain = outcome(validate, items), outcome(validate_plain, items)
    assert fast == plain and fast[0] == "accepted" and len(fast[3]) == 200


def test_error_names_the_first_bad_sample_and_counts_all():
    items = [{"name": "ok", "value": 1.0}, {"name": "ok", "value": math.inf},
             {"name": "ok", "value": 1.0}, {"name": "1bad", "value": 1.0}]
    with pytest.raises(InvalidSample) as info:
        validate(items, LIMITS, NOW_US)
    assert info.value.message == "metrics[1].value: value must be a finite number"
    assert info.value.details == {"index": 1, "field": "value", "reason": "invalid_value",
                                  "invalid_count": 3, "total": 4}


def test_every_rule_has_a_reason_and_words():
    assert all(r.reason and r.says for r in SAMPLE_RULES)
    assert [r.reason for r in SAMPLE_RULES][-2:] == ["type_conflict", "duplicate"]


@pytest.mark.parametrize(
    ("key", "field", "reason"),
    [
        (SeriesKey("1bad", {}, None), "name", "invalid_name"),
        (SeriesKey("m", {"__r": "a"}, None), "labels", "invalid_labels"),
        (SeriesKey("m", {"a": "x" * 9}, None), "labels.a", "invalid_labels"),
        (SeriesKey("m", {"a": "1", "b": "2", "c": "3", "d": "4"}, None), "labels", "too_many_labels"),
        (SeriesKey("m", {}, "summary"), "type", "invalid"),
    ],
)
def test_store_refuses_a_series_that_breaks_a_rule(key, field, reason):
    with pytest.raises(InvalidSample) as info:
        series.check_key(key, LIMITS.series)
    assert info.value.details == {"field": field, "reason": reason}
    # The validator says the same of a sample of that series.
    sample = {"name": key.name, "labels": key.labels, "value": 1.0}
    if key.type:
        sample["type"] = key.type
    with pytest.raises(InvalidSample) as checked:
        validate([sample], LIMITS, NOW_US)
    assert checked.value.details["field"] == field and checked.value.details["reason"] == reason
