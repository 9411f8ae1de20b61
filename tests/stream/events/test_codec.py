"""Wire codecs of stream.events: round trips, validation rules, and decoders that never raise."""
from __future__ import annotations

import json

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream import SCHEMA_DIR
from stream.events import (
    DEFAULT_LIMITS, FOLLOW_OPS, INTERACTION_KINDS, REASONS, RECOMMENDATION_KINDS, DeadLetter,
    EventValidationError, Follow, Interaction, Invalid, Recommendation, ScoredItem, ValidationLimits,
    decode_dead_letter, decode_follow, decode_interaction, decode_recommendation, encode,
)

NOW = 1_750_000_000_000
MAX_TS = NOW + DEFAULT_LIMITS.max_future_skew_ms

# Ids: any text without control (Cc) or surrogate (Cs) code points; JSON cannot carry lone
# surrogates and the decoders refuse control characters.
ids = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=DEFAULT_LIMITS.max_id_len)
timestamps = st.integers(0, MAX_TS)
finite = st.floats(allow_nan=False, allow_infinity=False)
interactions = st.builds(Interaction, ids, ids, ids, timestamps, st.sampled_from(sorted(INTERACTION_KINDS)),
                         st.none() | st.floats(0, 1e300, allow_nan=False, allow_infinity=False))
follows = st.builds(Follow, ids, ids, timestamps, st.sampled_from(sorted(FOLLOW_OPS)))
recommendations = st.builds(
    Recommendation, ids, st.none() | ids, st.sampled_from(sorted(RECOMMENDATION_KINDS)),
    st.lists(st.builds(ScoredItem, ids, finite), max_size=20).map(tuple), ids,
    st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.none() | ids)
dead_letters = st.builds(DeadLetter, ids, st.text(), ids, st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1),
                         st.none() | st.binary(), st.binary(max_size=4096), ids, timestamps)

SCHEMAS = {cls: jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / f"{name}.v1.json").read_text()))
           for cls, name in [(Interaction, "interaction"), (Follow, "follow"),
                             (Recommendation, "recommendation"), (DeadLetter, "dead-letter")]}


def _assert_schema_valid(record: object, raw: bytes) -> None:
    errors = [e.message for e in SCHEMAS[type(record)].iter_errors(orjson.loads(raw))]
    assert errors == [], f"{type(record).__name__} encoding violates its JSON Schema: {errors}"


@settings(max_examples=150, deadline=None)
@given(interactions)
def test_interaction_round_trip_and_schema(x: Interaction) -> None:
    raw = encode(x)
    assert decode_interaction(raw, now_ms=NOW) == x
    _assert_schema_valid(x, raw)


@settings(max_examples=100, deadline=None)
@given(follows)
def test_follow_round_trip_and_schema(x: Follow) -> None:
    raw = encode(x)
    assert decode_follow(raw, now_ms=NOW) == x
    _assert_schema_valid(x, raw)


@settings(max_examples=100, deadline=None)
@given(recommendations)
def test_recommendation_round_trip_and_schema(x: Recommendation) -> None:
    raw = encode(x)
    assert decode_recommendation(raw) == x
    _assert_schema_valid(x, raw)


@settings(max_examples=100, deadline=None)
@given(dead_letters)
def test_dead_letter_round_trip_keeps_bytes_exactly(x: DeadLetter) -> None:
    raw = encode(x)
    back = decode_dead_letter(raw)
    assert back == x and back.value == x.value and back.key == x.key
    _assert_schema_valid(x, raw)


def test_wire_form_is_versioned_and_omits_absent_optionals() -> None:
    raw = encode(Interaction("u1", "i1", "s1", 5, "view"))
    assert orjson.loads(raw) == {"v": 1, "user_id": "u1", "item_id": "i1", "session_id": "s1",
                                 "ts": 5, "kind": "view"}
    dl = orjson.loads(encode(DeadLetter("bad_id", "d", "interactions", 2, 7, None, b"\xff\x00", "w1", 9)))
    assert dl["key_b64"] is None and dl["value_b64"] == "/wA=" and dl["v"] == 1


def test_missing_version_means_v1_and_unknown_fields_are_ignored() -> None:
    raw = b'{"user_id":"u","item_id":"i","session_id":"s","ts":3,"kind":"cart","extra":{"a":[1]}}'
    assert decode_interaction(raw, now_ms=NOW) == Interaction("u", "i", "s", 3, "cart")


def test_integer_numbers_become_floats() -> None:
    got = decode_interaction(b'{"user_id":"u","item_id":"i","session_id":"s","ts":3,"kind":"view","weight":2}',
                             now_ms=NOW)
    assert got == Interaction("u", "i", "s", 3, "view", 2.0) and type(got.weight) is float
    rec = decode_recommendation(b'{"user_id":"u","session_id":null,"kind":"social","items":[{"item_id":"a","score":-3}],'
                                b'"model_version":"m","event_ts":1,"emitted_ts":2}')
    assert rec.items == (ScoredItem("a", -3.0),) and type(rec.items[0].score) is float


def test_timestamp_bounds_are_inclusive() -> None:
    at_limit = encode(Interaction("u", "i", "s", MAX_TS, "view"))
    assert isinstance(decode_interaction(at_limit, now_ms=NOW), Interaction)
    assert decode_interaction(at_limit, now_ms=NOW - 1).reason == "future_timestamp"
    assert isinstance(decode_follow(encode(Follow("a", "b", 0, "unfollow")), now_ms=0), Follow)


def test_limits_are_configurable() -> None:
    raw = encode(Interaction("user-long", "i", "s", 1, "view"))
    assert decode_interaction(raw, now_ms=NOW, limits=ValidationLimits(max_id_len=4)).reason == "bad_id"
    assert decode_interaction(raw, now_ms=NOW, limits=ValidationLimits(max_bytes=len(raw) - 1)).reason == "oversized"
    assert isinstance(decode_interaction(raw, now_ms=NOW, limits=ValidationLimits(max_bytes=len(raw))), Interaction)
    with pytest.raises(ValueError, match="max_bytes"):
        ValidationLimits(max_bytes=0)


@pytest.mark.parametrize("raw, reason, field", [
    (b'{"user_id":"u","session_id":"s","kind":"trending","items":[],"model_version":"m","event_ts":1,"emitted_ts":2}',
     "unknown_kind", "kind"),
    (b'{"user_id":"u","session_id":"s","kind":"social","items":{},"model_version":"m","event_ts":1,"emitted_ts":2}',
     "wrong_type", "items"),
    (b'{"user_id":"u","session_id":"s","kind":"social","items":[{"item_id":"a"}],"model_version":"m",'
     b'"event_ts":1,"emitted_ts":2}', "missing_field", "items[0].score"),
    (b'{"user_id":"u","session_id":"s","kind":"social","items":[{"item_id":"a","score":"1"}],'
     b'"model_version":"m","event_ts":1,"emitted_ts":2}', "wrong_type", "items[0].score"),
    (b'{"user_id":"u","session_id":7,"kind":"social","items":[],"model_version":"m","event_ts":1,"emitted_ts":2}',
     "wrong_type", "session_id"),
    (b'{"user_id":"u","kind":"social","items":[],"model_version":"m","event_ts":1,"emitted_ts":2}',
     "missing_field", "session_id"),
])
def test_recommendation_rejections_name_the_field(raw: bytes, reason: str, field: str) -> None:
    got = decode_recommendation(raw)
    assert isinstance(got, Invalid) and got.reason == reason and field in got.detail


@pytest.mark.parametrize("change, reason", [
    ({"value_b64": "not base64!"}, "bad_base64"),
    ({"value_b64": "QUJD\n"}, "bad_base64"),
    ({"key_b64": "QQ"}, "bad_base64"),          # missing padding
    ({"key_b64": 5}, "wrong_type"),
    ({"partition": -1}, "out_of_range"),
    ({"offset": 1.5}, "wrong_type"),
    ({"detail": None}, "wrong_type"),
    ({"reason": ""}, "bad_id"),
])
def test_dead_letter_rejections(change: dict, reason: str) -> None:
    good = orjson.loads(encode(DeadLetter("bad_id", "d", "interactions", 0, 0, b"k", b"v", "w", 1)))
    got = decode_dead_letter(orjson.dumps({**good, **change}))
    assert isinstance(got, Invalid) and got.reason == reason, got


@pytest.mark.parametrize("record, reason", [
    (Interaction("u", "i", "s", 1, "like"), "unknown_kind"),
    (Interaction("u", "i", "s", -5, "view"), "negative_timestamp"),
    (Interaction("u", "i", "s", 1, "view", float("inf")), "bad_weight"),   # orjson would write null
    (Interaction("u", "", "s", 1, "view"), "bad_id"),
    (Follow("a", "b", 1.0, "follow"), "wrong_type"),
    (Recommendation("u", None, "next_item", (ScoredItem("a", float("nan")),), "m", 1, 2), "bad_score"),
    (DeadLetter("r", "d", "t", 0, -1, None, b"", "w", 1), "out_of_range"),
])
def test_encode_refuses_what_decoders_would_reject(record: object, reason: str) -> None:
    with pytest.raises(EventValidationError) as info:
        encode(record)
    assert info.value.invalid.reason == reason


def test_encode_rejects_foreign_objects() -> None:
    with pytest.raises(TypeError, match="Interaction, Follow"):
        encode({"user_id": "u"})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | finite | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _to_json(value: object) -> bytes:
    # stdlib json: unlike orjson it writes integers beyond 64 bits and lone surrogates.
    return json.dumps(value).encode()


field_names = st.sampled_from(["v", "user_id", "item_id", "session_id", "ts", "kind", "weight",
                               "src_user", "dst_user", "op", "items", "score"])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | st.dictionaries(field_names, json_values).map(_to_json)
       | st.lists(json_values, max_size=3).map(_to_json))
def test_decoders_return_a_value_for_any_input(raw: bytes) -> None:
    for got in (decode_interaction(raw, now_ms=NOW), decode_follow(raw, now_ms=NOW),
                decode_recommendation(raw), decode_dead_letter(raw)):
        assert isinstance(got, (Interaction, Follow, Recommendation, DeadLetter, Invalid))
        if isinstance(got, Invalid):
            assert got.reason in REASONS and got.detail


def test_tombstone_and_non_bytes_are_invalid_not_errors() -> None:
    assert decode_interaction(None, now_ms=NOW).reason == "malformed_json"  # type: ignore[arg-type]
    assert decode_follow(12, now_ms=NOW).reason == "malformed_json"         # type: ignore[arg-type]


def test_records_keep_their_old_import_path() -> None:
    # the records moved to stream.events.records; stream.events re-exports the very same classes
    import stream.events
    import stream.events.records
    for name in stream.events.__all__:
        if hasattr(stream.events.records, name):
            assert getattr(stream.events, name) is getattr(stream.events.records, name)
    assert stream.events.Interaction("u", "i", "s", 0, "view") == stream.events.records.Interaction("u", "i", "s", 0, "view")


def test_encode_recommendation_items_is_the_same_bytes_as_encode():
    from stream.events import Recommendation, ScoredItem, encode, encode_recommendation_items
    items = [("a", 1.5), ("b", -0.25)]
    from stream.events import EventSource, decode_recommendation
    for emb in (None, "m/r1/w5"):
        for src in (None, ("interactions", 2, 41)):
            source = None if src is None else EventSource(*src)
            rec = Recommendation("u", "s", "next_item", tuple(ScoredItem(i, s) for i, s in items), "m", 1, 2, emb,
                                 source)
            raw = encode_recommendation_items(user_id="u", session_id="s", kind="next_item", items=items,
                                              model_version="m", event_ts=1, emitted_ts=2,
                                              embedding_version=emb, source=src)
            assert raw == encode(rec) and decode_recommendation(raw) == rec
