"""The native store writes what the Python RocksDB store writes, byte for byte, and its wire
decoder accepts only records the reference decoder accepts, with the same values.

The contract and oracle suites run on it too (``native`` in ``STORE_KINDS``).
"""
from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph_store import GraphStoreError, RocksDBGraphStore, StoreSettings
from graph_store.rocksdb.native import NativeRocksDBGraphStore
from stream.events import (
    INTERACTION_KINDS,
    SCHEMA_VERSION,
    Follow,
    Interaction,
    Invalid,
    ValidationLimits,
    decode_interaction,
    encode,
)
from stream.simulator import Simulator, SimulatorSettings
from tests.graph_store.conftest import require_native

pytestmark = pytest.mark.usefixtures("native_built")

SETTINGS = StoreSettings(half_life_ms=3_600_000.0, session_history=5)
NOW = 1_700_000_000_000
LIMITS = ValidationLimits(max_bytes=2_048, max_future_skew_ms=60_000, max_id_len=40)


@pytest.fixture
def native_built():
    require_native()


def _dump(store: RocksDBGraphStore) -> dict[bytes, bytes]:
    return dict(store._db.items())


def _assert_same_bytes(a: RocksDBGraphStore, b: RocksDBGraphStore) -> None:
    da, db = _dump(a), _dump(b)
    differ = sorted(k for k in da.keys() | db.keys() if da.get(k) != db.get(k))
    assert not differ, f"{len(differ)} keys differ, first {differ[:5]}"


def _events(seed: int, n: int, start_ms: int) -> list:
    sim = Simulator(SimulatorSettings(seed=seed, n_users=300, n_items=500, unfollow_prob=0.3))
    out = list(sim.events(start_ms=start_ms, n=n, step_ms=37))
    rnd = random.Random(seed)
    # Explicit weights (ints too), out-of-order timestamps and ids outside ASCII.
    for k in range(0, len(out), 11):
        e = out[k]
        if isinstance(e, Interaction):
            out[k] = Interaction(e.user_id + ("é" if k % 3 == 0 else ""), e.item_id, e.session_id,
                                 e.ts - rnd.randrange(0, 4_000_000), e.kind, rnd.choice([None, 0.5, 2, 0.0]))
    return out


def _apply_in_random_batches(stores, events, seed: int) -> None:
    rnd = random.Random(seed)
    i = 0
    while i < len(events):
        n = rnd.choice([1, 2, 7, 60, 500, 2500])
        chunk = events[i:i + n]
        i += n
        stats = [s.apply_many(chunk, {("interactions", 0): i}) for s in stores]
        assert stats[0] == stats[1]


def test_native_commits_write_the_same_bytes_as_the_python_store(tmp_path):
    events = _events(3, 12_000, NOW)
    python, native = RocksDBGraphStore(tmp_path / "py", SETTINGS), NativeRocksDBGraphStore(tmp_path / "n", SETTINGS)
    _apply_in_random_batches((python, native), events, seed=1)
    _assert_same_bytes(python, native)
    assert native.counts() == python.counts() and native.counts().unfollows > 0
    assert native.dirty_nodes() == python.dirty_nodes()
    # Reopened, the native store loads its mirror from RocksDB and goes on writing the same bytes.
    python.clear_dirty({"user": {"u1", "u2"}, "item": {"i7"}})
    native.clear_dirty({"user": {"u1", "u2"}, "item": {"i7"}})
    python.close()
    native.close()
    python, native = RocksDBGraphStore(tmp_path / "py", SETTINGS), NativeRocksDBGraphStore(tmp_path / "n", SETTINGS)
    try:
        _apply_in_random_batches((python, native), _events(4, 6_000, NOW + 10**9), seed=2)
        _assert_same_bytes(python, native)
        assert native.dirty_nodes() == python.dirty_nodes()
        for sid in ("s1", "s40", "s999"):
            assert native.session_items(sid) == python.session_items(sid)
    finally:
        python.close()
        native.close()


def test_raw_staging_of_yoochoose_writes_what_apply_many_writes(shared_data, tmp_path):
    from stream.formats import read_events

    path = shared_data / "yoochoose" / "sessionrec_100k" / "yoochoose-clicks-100k_test.txt"
    events = [e for _, e in zip(range(10_000), read_events(path, "yoochoose"))]
    python, native = RocksDBGraphStore(tmp_path / "py", SETTINGS), NativeRocksDBGraphStore(tmp_path / "n", SETTINGS)
    native.configure_wire(sorted(INTERACTION_KINDS), LIMITS.max_id_len, LIMITS.max_bytes, SCHEMA_VERSION)
    try:
        for k in range(0, len(events), 1_000):
            chunk = events[k:k + 1_000]
            assert native.stage_raw([encode(e) for e in chunk], 2**62) == []
            assert native.apply_staged({("interactions", 0): k + 1_000}) == python.apply_many(
                chunk, {("interactions", 0): k + 1_000})
        _assert_same_bytes(python, native)
    finally:
        python.close()
        native.close()


# ---- the wire decoder ---------------------------------------------------------------------------
KEYS = ["v", "user_id", "item_id", "session_id", "ts", "kind", "weight"]
VALUE_TEXTS = [
    '"u1"', '"i 2"', '"é"', '"a\\u0041"', '"\\""', '"x\\n"', '"\x7f"', '"~"', '"' + "x" * 40 + '"',
    '"' + "x" * 41 + '"', '""', "12", "-0", "01", "1.0", "1e3", "1E+2", "2", "0", "null", "true",
    "false", '"click"', '"view"', '"purchase"', '"like"', str(NOW), str(NOW + 60_000), str(NOW + 60_001),
    "-5", "9223372036854775808", "0.5", "-0.0", "1e400", "1.", ".5", "-", "[]", "{}", "[1]", '{"a":1}',
]
WHITESPACE = ["", " ", "\n", "\t ", "\r\n"]


@st.composite
def flat_objects(draw) -> bytes:
    """Text-level JSON objects around the field set, valid or nearly so."""
    keys = draw(st.lists(st.sampled_from(KEYS + ["extra", "V"]), max_size=9))
    base = {"user_id": '"u1"', "item_id": '"i1"', "session_id": '"s1"', "ts": str(NOW - 5), "kind": '"click"'}
    if draw(st.booleans()):
        keys = list(base) + keys  # usually a valid record, with something changed or added
    values = [draw(st.sampled_from(VALUE_TEXTS)) if (k not in base or draw(st.booleans())) else base[k]
              for k in keys]
    ws = draw(st.sampled_from(WHITESPACE))
    body = ("," + ws).join(f'{ws}"{k}"{ws}:{ws}{v}' for k, v in zip(keys, values))
    tail = draw(st.sampled_from(["", "", " ", "x", ",", "}"]))
    return ("{" + body + ws + "}" + tail).encode()


@st.composite
def near_valid(draw) -> bytes:
    """A valid record's fields in any order with up to two values swapped for others."""
    fields = {"user_id": '"u1"', "item_id": '"i-1"', "session_id": '"s 1"', "ts": str(NOW - 5), "kind": '"cart"'}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=2, unique=True)):
        fields[key] = draw(st.sampled_from(VALUE_TEXTS))
    ws = draw(st.sampled_from(WHITESPACE))
    order = draw(st.permutations(list(fields)))
    return (ws + "{" + ",".join(f'{ws}"{k}":{ws}{fields[k]}{ws}' for k in order) + "}" + ws).encode()


ascii_ids = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e, exclude_characters='"\\'),
                    min_size=1, max_size=41)
payloads = st.one_of(
    near_valid(),
    flat_objects(),
    st.builds(lambda u, ts, w: encode(Interaction(u, "i1", "s1", ts, "view", w)),
              ascii_ids, st.integers(0, NOW + 60_000), st.one_of(st.none(), st.floats(0, 1e300))),
    st.builds(lambda u, ts, w: encode(Interaction(u, "i1", "s1", ts, "cart", w)),
              st.text(st.characters(codec="utf-8", exclude_categories=("Cc",)), min_size=1, max_size=41),
              st.integers(0, NOW + 60_000), st.one_of(st.none(), st.floats(0, 1e300))),
    st.binary(max_size=48),
)


def _kernel_store(tmp_path, kind_weights=None) -> NativeRocksDBGraphStore:
    store = NativeRocksDBGraphStore(tmp_path / f"g{random.random()}", StoreSettings(kind_weights=kind_weights)
                                    if kind_weights else StoreSettings())
    store.configure_wire(sorted(INTERACTION_KINDS), LIMITS.max_id_len, LIMITS.max_bytes, SCHEMA_VERSION)
    return store


def _bits(x: float) -> bytes:
    return struct.pack(">d", x)


@settings(max_examples=600, deadline=None)
@given(values=st.lists(payloads, min_size=1, max_size=8))
def test_the_kernel_accepts_only_what_the_reference_decoder_accepts(values, tmp_path_factory):
    store = _kernel_store(tmp_path_factory.mktemp("wire"))
    try:
        deferred = dict(store.stage_raw(values, NOW + LIMITS.max_future_skew_ms))
        staged = store._kernel.staged_events()
        assert len(staged) == len(values)
        weights = store.settings.kind_weights
        for index, (raw, got) in enumerate(zip(values, staged)):
            expected = decode_interaction(raw, now_ms=NOW, limits=LIMITS)
            if index in deferred:
                assert got is None  # an empty slot: the caller decides with the reference decoder
                continue
            assert type(expected) is Interaction, (raw, expected)
            inc = weights[expected.kind] if expected.weight is None else float(expected.weight)
            assert got[:5] == ("interaction", expected.user_id, expected.item_id, expected.session_id, expected.ts)
            assert _bits(got[5]) == _bits(inc)
        assert store.staged_count() == len(values) - len(deferred)
    finally:
        store.discard_staged()
        store.close()


@pytest.mark.parametrize("raw", [
    encode(Interaction("u1", "i1", "s1", NOW, "view")),
    encode(Interaction("u1", "i1", "s1", NOW, "purchase", 0.25)),
    b' {"user_id" : "u 1", "item_id":"i~1","session_id":"s1","ts":0,"kind":"click","v":1,"weight":null} ',
])
def test_clean_records_are_decoded_by_the_kernel(raw, tmp_path):
    store = _kernel_store(tmp_path)
    try:
        assert store.stage_raw([raw], NOW) == []
    finally:
        store.close()


def test_a_kind_without_a_store_weight_is_left_to_the_caller(tmp_path):
    store = _kernel_store(tmp_path, kind_weights={"click": 1.0})
    try:
        raws = [encode(Interaction("u", "i", "s", 1, "click")), encode(Interaction("u", "i", "s", 2, "view"))]
        assert store.stage_raw(raws, NOW) == [(1, 1)]
    finally:
        store.close()


def test_slots_the_caller_fills_keep_their_place_in_the_batch(tmp_path):
    events = [Interaction("u1", "a", "s1", NOW, "click"), Interaction("u1", "b", "s1", NOW + 1, "view", 3),
              Interaction("u2", "ü", "s1", NOW + 2, "cart"), Interaction("u1", "c", "s1", NOW + 3, "click")]
    raws = [encode(e) for e in events]
    raws.insert(2, b"not json")
    native, python = _kernel_store(tmp_path), RocksDBGraphStore(tmp_path / "py")
    try:
        deferred = native.stage_raw(raws, NOW + 10)
        assert [i for i, _ in deferred] == [1, 2, 3]  # an int weight, garbage, a non-ASCII id
        for index, position in deferred:
            value = decode_interaction(raws[index], now_ms=NOW, limits=LIMITS)
            if type(value) is not Invalid:
                native.stage_event(value, position)
        native.stage_event(Follow("u1", "u2", NOW + 4, "follow"))
        offsets = {("interactions", 0): 5}
        assert native.apply_staged(offsets) == python.apply_many(events + [Follow("u1", "u2", NOW + 4, "follow")], offsets)
        _assert_same_bytes(python, native)
        assert native.session_items("s1") == ["a", "b", "ü", "c"]
    finally:
        native.close()
        python.close()


def test_apply_many_is_refused_while_a_raw_batch_is_staged(tmp_path):
    store = _kernel_store(tmp_path)
    try:
        store.stage_raw([encode(Interaction("u", "i", "s", 1, "click"))], NOW)
        with pytest.raises(GraphStoreError, match="staged"):
            store.apply_many([Interaction("u", "j", "s", 2, "click")])
        store.discard_staged()
        store.apply_many([Interaction("u", "j", "s", 2, "click")])
        assert store.counts().interactions == 1
    finally:
        store.close()


class _FailingWrites:
    """The store's database, except that the next write raises (a full disk, say)."""

    def __init__(self, db) -> None:
        self._db, self.fail = db, True

    def write(self, batch, options) -> None:
        if self.fail:
            self.fail = False
            raise OSError("IO error: No space left on device")
        self._db.write(batch, options)

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_a_failed_write_leaves_the_mirror_as_committed(tmp_path):
    native, python = NativeRocksDBGraphStore(tmp_path / "n", SETTINGS), RocksDBGraphStore(tmp_path / "py", SETTINGS)
    first, second = _events(5, 300, NOW), _events(6, 300, NOW + 10**8)
    try:
        for store in (native, python):
            store.apply_many(first, {("interactions", 0): 300})
        real = native._db
        native._db = _FailingWrites(real)
        with pytest.raises(GraphStoreError, match="No space left"):
            native.apply_many(second, {("interactions", 0): 600})
        native._db = real
        assert native.counts() == python.counts() and native.committed_offsets() == {("interactions", 0): 300}
        # The ids the failed batch had taken are free again: retrying it gives the same store.
        for store in (native, python):
            store.apply_many(second, {("interactions", 0): 600})
        _assert_same_bytes(python, native)
    finally:
        native.close()
        python.close()


def test_either_store_opens_what_the_other_wrote(tmp_path):
    """Same format, different memtables: an ingest data dir moves between --native on and off."""
    events = _events(7, 3_000, NOW)
    with NativeRocksDBGraphStore(tmp_path / "a", SETTINGS) as native:
        native.apply_many(events[:2_000], {("interactions", 0): 2_000})
    with RocksDBGraphStore(tmp_path / "b", SETTINGS) as python:
        python.apply_many(events[:2_000], {("interactions", 0): 2_000})
    with RocksDBGraphStore(tmp_path / "a", SETTINGS) as python, NativeRocksDBGraphStore(tmp_path / "b", SETTINGS) as native:
        for store in (python, native):
            store.apply_many(events[2_000:], {("interactions", 0): 3_000})
        _assert_same_bytes(python, native)
        assert native.committed_offsets() == {("interactions", 0): 3_000}


_CRASHING_WRITER = """
import os, pickle, sys
from graph_store.rocksdb.native import NativeRocksDBGraphStore
from tests.graph_store.rocksdb.test_native import SETTINGS
path, events = sys.argv[1], pickle.load(open(sys.argv[2], "rb"))
store = NativeRocksDBGraphStore(path, SETTINGS)
for k in range(0, len(events), 200):
    store.apply_many(events[k:k + 200], {("interactions", 0): k + 200})
    if k + 200 == 2_000:
        store.flush()  # what a memtable flush persists survives; the rest is lost with the process
os._exit(9)
"""


def test_a_crash_without_wal_loses_whole_commits_and_the_replay_restores_them(tmp_path):
    """No WAL on the native store: a killed writer leaves the last flushed commit (data and
    offsets together); resuming from those offsets gives the store an uninterrupted run gives."""
    import pickle
    import subprocess
    import sys
    from pathlib import Path

    events = _events(8, 6_000, NOW)
    (tmp_path / "events.pkl").write_bytes(pickle.dumps(events))
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", _CRASHING_WRITER, str(tmp_path / "n"), str(tmp_path / "events.pkl")],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr
    with NativeRocksDBGraphStore(tmp_path / "n", SETTINGS) as native, RocksDBGraphStore(tmp_path / "py", SETTINGS) as python:
        start = native.committed_offsets()[("interactions", 0)]
        assert 2_000 <= start < len(events) and native.counts().interactions == sum(
            isinstance(e, Interaction) for e in events[:start])
        for k in range(start, len(events), 200):
            native.apply_many(events[k:k + 200], {("interactions", 0): k + 200})
        for k in range(0, len(events), 200):
            python.apply_many(events[k:k + 200], {("interactions", 0): k + 200})
        _assert_same_bytes(python, native)
