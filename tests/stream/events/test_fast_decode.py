"""The batch decoder of the ingest hot path returns exactly what ``decode_interaction`` does."""
from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from graph_store import StoreSettings
from stream.events.badinput import malformed_samples
from stream.events import Follow, Interaction, Invalid, ValidationLimits, decode_interaction, encode
from stream.kafka.topics import TopicSettings
from stream.events.fast_decode import decode_interactions
from workers.runtime.decode import IngestCore, store_trusts_decoder
from stream.kafka.batch_consumer import RawRecord

NOW = 1_700_000_000_000
LIMITS = ValidationLimits(max_bytes=2_048, max_future_skew_ms=60_000, max_id_len=40)

ids = st.text(st.characters(codec="utf-8"), min_size=0, max_size=45)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                         st.floats(allow_nan=False), ids)
fields = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just(1), json_scalars),
        "user_id": st.one_of(ids, json_scalars),
        "item_id": st.one_of(ids, json_scalars),
        "session_id": st.one_of(ids, json_scalars),
        "ts": st.one_of(st.integers(-5, NOW + 120_000), json_scalars),
        "kind": st.one_of(st.sampled_from(["view", "click", "cart", "purchase", "like"]), json_scalars),
        "weight": st.one_of(st.floats(-1, 1e300), st.integers(-3, 3), json_scalars),
    },
)
valid_events = st.builds(
    Interaction,
    user_id=st.text(st.characters(codec="utf-8", exclude_categories=("Cc",)), min_size=1, max_size=40),
    item_id=st.sampled_from(["i1", "i2", "é€𝄞", "i" * 40]),
    session_id=st.sampled_from(["s1", "s 2"]),
    ts=st.integers(0, NOW + 60_000),
    kind=st.sampled_from(["view", "click", "cart", "purchase"]),
    weight=st.one_of(st.none(), st.floats(0, 1e300)),
)
payloads = st.one_of(
    valid_events.map(encode),
    fields.map(orjson.dumps),
    st.binary(max_size=64),
    st.sampled_from([b"", b"[]", b"null", b"1", b'{"user_id": "u"}{', b'{"a": 1},{"b": 2}', b"\xff{}"]),
)


def _same(actual, expected) -> None:
    assert type(actual) is type(expected)
    assert actual == expected
    if isinstance(expected, Interaction):
        assert type(actual.weight) is type(expected.weight)  # 1.0 and 1 compare equal


@settings(max_examples=300, deadline=None)
@given(values=st.lists(payloads, max_size=12))
def test_batch_decode_equals_one_by_one(values):
    got = decode_interactions(values, now_ms=NOW, limits=LIMITS)
    assert len(got) == len(values)
    for raw, value in zip(values, got):
        _same(value, decode_interaction(raw, now_ms=NOW, limits=LIMITS))


def test_every_malformed_sample_keeps_its_reason_and_detail():
    samples = malformed_samples(NOW, limits=LIMITS)
    good = encode(Interaction("u1", "i1", "s1", NOW, "click", 2.5))
    values = [good] + [raw for _, raw in samples] + [good]
    got = decode_interactions(values, now_ms=NOW, limits=LIMITS)
    assert got[0] == got[-1] == Interaction("u1", "i1", "s1", NOW, "click", 2.5)
    for (reason, raw), value in zip(samples, got[1:-1]):
        assert isinstance(value, Invalid) and value.reason == reason
        _same(value, decode_interaction(raw, now_ms=NOW, limits=LIMITS))


def test_prepare_keeps_consumption_order_across_topics_and_dead_letters():
    inter = [Interaction("u1", f"i{k}", "s1", NOW - 10 + k, "click") for k in range(4)]
    follow = Follow("u1", "u2", NOW, "follow")
    bad = dict(malformed_samples(NOW))["unknown_kind"]
    records = [
        RawRecord("interactions", 0, 0, b"k", encode(inter[0]), NOW),
        RawRecord("follows", 1, 0, b"k", encode(follow), NOW),
        RawRecord("interactions", 0, 1, b"k", bad, NOW),
        RawRecord("interactions", 0, 2, b"k", None, NOW),
        *(RawRecord("interactions", 0, 2 + k, b"k", encode(e), NOW) for k, e in enumerate(inter[1:], 1)),
    ]
    batch = IngestCore(TopicSettings(), ValidationLimits(), "t").prepare(records, {}, NOW)
    assert batch.events == [inter[0], follow, *inter[1:]]
    assert [(d.offset, d.reason) for d in batch.dead] == [(1, "unknown_kind"), (2, "malformed_json")]
    assert batch.offsets == {("interactions", 0): 6, ("follows", 1): 1}
    assert batch.consumed == {"interactions": 6, "follows": 1}


def test_the_store_trusts_the_decoder_only_when_their_rules_agree():
    assert store_trusts_decoder(StoreSettings(), ValidationLimits(), NOW)
    assert not store_trusts_decoder(StoreSettings(), ValidationLimits(max_id_len=300), NOW)
    assert not store_trusts_decoder(StoreSettings(kind_weights={"click": 1.0}), ValidationLimits(), NOW)
    assert not store_trusts_decoder(StoreSettings(), ValidationLimits(max_future_skew_ms=2**63), NOW)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(payloads, st.none()), max_size=12), start=st.integers(0, 14),
       split=st.integers(0, 12))
def test_prepare_partitions_equals_prepare_over_the_same_records(values, start, split):
    """The hot path (per-partition lists in offset order) decides exactly as the flat path."""
    follow = encode(Follow("u1", "u2", NOW, "follow"))
    inter = [RawRecord("interactions", 0, k, b"k", v, NOW) for k, v in enumerate(values)]
    other = [RawRecord("interactions", 3, k, None, v, NOW) for k, v in enumerate(values[:split])]
    follows = [RawRecord("follows", 1, k, b"k", follow, NOW) for k in range(3)]
    committed = {("interactions", 0): start, ("follows", 1): 1}
    core = IngestCore(TopicSettings(), LIMITS, "t")
    parts = {("interactions", 0): inter, ("follows", 1): follows, ("interactions", 3): other}
    fast = core.prepare_partitions(parts, committed, NOW)
    flat = core.prepare(inter + follows + other, committed, NOW)
    assert fast == flat
    assert fast.skipped == min(start, len(values)) + 1


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(payloads, st.none()), max_size=12), start=st.integers(0, 14),
       split=st.integers(0, 12))
def test_staging_in_the_native_store_decides_and_stores_as_the_listed_events(values, start, split,
                                                                               tmp_path_factory):
    """Staged in the native store, a fetch gives the same dead letters, offsets and counts as the
    listed events, and committing it writes what ``apply_many`` of those events writes."""
    from graph_store import RocksDBGraphStore
    from graph_store.rocksdb.native import NativeRocksDBGraphStore
    from stream.events import INTERACTION_KINDS, SCHEMA_VERSION
    from tests.graph_store.conftest import require_native

    require_native()
    follows = [RawRecord("follows", 1, k, b"k", encode(Follow("u1", f"u{k}", NOW + k, "follow")), NOW)
               for k in range(3)]
    parts = {("interactions", 0): [RawRecord("interactions", 0, k, b"k", v, NOW) for k, v in enumerate(values)],
             ("follows", 1): follows,
             ("interactions", 3): [RawRecord("interactions", 3, k, None, v, NOW) for k, v in enumerate(values[:split])]}
    committed = {("interactions", 0): start, ("follows", 1): 1}
    core = IngestCore(TopicSettings(), LIMITS, "t")
    tmp = tmp_path_factory.mktemp("stage")
    native, python = NativeRocksDBGraphStore(tmp / "n"), RocksDBGraphStore(tmp / "p")
    try:
        native.configure_wire(sorted(INTERACTION_KINDS), LIMITS.max_id_len, LIMITS.max_bytes, SCHEMA_VERSION)
        listed = core.prepare_partitions(parts, committed, NOW)
        staged = core.prepare_partitions(parts, committed, NOW, native)
        assert staged.events == [] and staged.staged == len(listed.events)
        assert (staged.dead, staged.offsets, staged.skipped, staged.consumed) == (
            listed.dead, listed.offsets, listed.skipped, listed.consumed)
        assert native.apply_staged(staged.offsets) == python.apply_many(listed.events, listed.offsets)
        assert dict(native._db.items()) == dict(python._db.items())
    finally:
        native.close()
        python.close()
