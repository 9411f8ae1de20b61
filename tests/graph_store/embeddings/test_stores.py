"""Embedding store contract over both backends, codecs, atomic versions and crashes mid-write."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from graph_store.embeddings import (
    EmbeddingDimError,
    InvalidEmbeddingsError,
    MemoryEmbeddingStore,
    RocksDBEmbeddingStore,
    decode_u32,
    decode_vectors,
    encode_u32,
    encode_vector,
    vector_key,
)
from graph_store.errors import ReadOnlyStoreError, StoreClosedError, StoreCorruptedError, StoreLockedError

REPO = Path(__file__).resolve().parents[3]


class _Crash(RuntimeError):
    pass


def _faulty(cls, after: int):
    """A backend whose commit dies after ``after`` rows were handed to it (a crash mid-write)."""

    def _row_items(self, ids, vectors):
        for k, item in enumerate(zip(ids, vectors)):
            if k == after:
                raise _Crash(f"simulated crash after {after} rows")
            yield item

    return type(f"Faulty{cls.__name__}", (cls,), {"_row_items": _row_items})


@pytest.fixture(params=["memory", "rocksdb"])
def make_store(request, tmp_path):
    """``make_store(cls=None)``: a fresh store of the backend (``cls`` may be a faulty subclass)."""
    opened = []

    def make(wrap=None):
        if request.param == "memory":
            store = (wrap(MemoryEmbeddingStore) if wrap else MemoryEmbeddingStore)()
        else:
            cls = wrap(RocksDBEmbeddingStore) if wrap else RocksDBEmbeddingStore
            store = cls(tmp_path / "emb")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def _table(n: int, d: int = 4, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"n{i}" for i in range(n)], rng.standard_normal((n, d)).astype(np.float32)


# ---- codecs ----------------------------------------------------------------------------
def test_byte_layout() -> None:
    assert vector_key("user", "u1") == b"Euu1" and vector_key("item", "é") == b"Ei\xc3\xa9"
    assert encode_vector(np.array([1.0, -2.0], dtype=np.float32)) == b"\x00\x00\x80\x3f\x00\x00\x00\xc0"
    assert encode_u32(64) == b"\x00\x00\x00\x40" and decode_u32(b"\x00\x00\x01\x00") == 256


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(0, 5), st.integers(1, 6)),
              elements=st.floats(allow_nan=False, allow_infinity=False, width=32)))
def test_vector_codec_round_trip(matrix: np.ndarray) -> None:
    values = [encode_vector(row) for row in matrix]
    assert all(len(v) == 4 * matrix.shape[1] for v in values)
    np.testing.assert_array_equal(decode_vectors(values, matrix.shape[1]), matrix)


def test_decode_rejects_wrong_sizes() -> None:
    with pytest.raises(ValueError, match="bytes"):
        decode_vectors([b"\x00" * 7], 2)


# ---- contract -----------------------------------------------------------------------------
def test_empty_store(make_store) -> None:
    store = make_store()
    assert store.version() is None and store.dim("user") is None
    vectors, found = store.get_many("user", ["a", "b"])
    assert vectors.shape == (2, 0) and not found.any()
    ids, matrix = store.get_all("item")
    assert ids == [] and matrix.shape[0] == 0


def test_put_then_get_many_and_all(make_store) -> None:
    store = make_store()
    ids, vectors = _table(5)
    store.put_many("user", ids, vectors, "v1")
    assert store.version() == "v1" and store.dim("user") == 4
    got, found = store.get_many("user", ["n3", "missing", "n0"])
    np.testing.assert_array_equal(found, [True, False, True])
    np.testing.assert_array_equal(got[0], vectors[3])
    np.testing.assert_array_equal(got[1], np.zeros(4, dtype=np.float32))
    np.testing.assert_array_equal(got[2], vectors[0])
    all_ids, matrix = store.get_all("user")
    assert all_ids == sorted(ids)  # by id bytes
    np.testing.assert_array_equal(matrix, vectors[[ids.index(i) for i in all_ids]])
    assert store.get_all("item")[0] == []  # node types are separate tables


def test_incremental_put_updates_rows_and_version(make_store) -> None:
    store = make_store()
    ids, vectors = _table(6)
    store.put_many("item", ids, vectors, "v1")
    changed = np.full((2, 4), 7.0, dtype=np.float32)
    store.put_many("item", ["n1", "new"], changed, "v2")
    version, all_ids, matrix = store.read_all("item")
    assert version == "v2" and len(all_ids) == 7
    rows = dict(zip(all_ids, matrix))
    np.testing.assert_array_equal(rows["n1"], changed[0])
    np.testing.assert_array_equal(rows["new"], changed[1])
    np.testing.assert_array_equal(rows["n2"], vectors[2])  # untouched rows keep their values
    assert store.read_many("item", ["n2"]).version == "v2"


@pytest.mark.parametrize("bad,error", [
    (lambda ids, v: (ids, v.astype(np.float64), "v2"), InvalidEmbeddingsError),
    (lambda ids, v: (ids, np.where(np.arange(4) == 2, np.nan, v).astype(np.float32), "v2"), InvalidEmbeddingsError),
    (lambda ids, v: (ids[:2] + ids[:1] + ids[3:], v, "v2"), InvalidEmbeddingsError),
    (lambda ids, v: (ids[:3], v, "v2"), InvalidEmbeddingsError),
    (lambda ids, v: (ids, v, ""), InvalidEmbeddingsError),
    (lambda ids, v: (ids, np.zeros((len(ids), 5), dtype=np.float32), "v2"), EmbeddingDimError),
    (lambda ids, v: ("n0", v[:1], "v2"), InvalidEmbeddingsError),
])
def test_invalid_put_writes_nothing(make_store, bad, error) -> None:
    store = make_store()
    ids, vectors = _table(4)
    store.put_many("user", ids, vectors, "v1")
    with pytest.raises(error):
        store.put_many("user", *bad(ids, vectors + 1))
    assert store.version() == "v1"
    np.testing.assert_array_equal(store.get_all("user")[1], vectors)


def test_crash_mid_write_leaves_previous_version(make_store) -> None:
    store = make_store(lambda cls: _faulty(cls, after=3))
    ids, vectors = _table(3)
    store.put_many("user", ids, vectors, "v1")  # 3 rows: the fault (at row 3) is not reached
    more_ids, more = _table(8, seed=1)
    with pytest.raises(_Crash):
        store.put_many("user", more_ids, more, "v2")
    version, all_ids, matrix = store.read_all("user")
    assert version == "v1" and all_ids == ids
    np.testing.assert_array_equal(matrix, vectors)


def test_closed_store_refuses_use(make_store) -> None:
    store = make_store()
    store.close()
    with pytest.raises(StoreClosedError):
        store.version()


# ---- RocksDB: persistence, readers, processes killed mid-write ---------------------------------------
def test_rocksdb_persists_and_guards_access(tmp_path) -> None:
    ids, vectors = _table(10, d=8)
    with RocksDBEmbeddingStore(tmp_path / "emb") as store:
        store.put_many("session", ids, vectors, "model-1/refresh-1")
        with pytest.raises(StoreLockedError):
            RocksDBEmbeddingStore(tmp_path / "emb")
    with RocksDBEmbeddingStore.open_read_only(tmp_path / "emb") as reader:
        assert reader.version() == "model-1/refresh-1"
        np.testing.assert_array_equal(reader.get_many("session", ids)[0], vectors)
        with pytest.raises(ReadOnlyStoreError):
            reader.put_many("session", ids, vectors, "v2")


def test_rocksdb_refuses_a_foreign_database(tmp_path) -> None:
    import rocksdict

    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(True)
    db = rocksdict.Rdict(str(tmp_path / "other"), opts)
    db[b"Msettings"] = b"{}"
    db.close()
    with pytest.raises(StoreCorruptedError, match="not an embedding store"):
        RocksDBEmbeddingStore(tmp_path / "other")


def test_secondary_reader_sees_whole_versions_only(tmp_path) -> None:
    ids, v1 = _table(50)
    writer = RocksDBEmbeddingStore(tmp_path / "emb")
    writer.put_many("item", ids, v1, "v1")
    reader = RocksDBEmbeddingStore.open_secondary(tmp_path / "emb", tmp_path / "secondary")
    try:
        writer.put_many("item", ids[:25], v1[:25] + 1, "v2")
        before = reader.read_all("item")
        assert before[0] == "v1"
        np.testing.assert_array_equal(before[2], v1[np.argsort([i.encode() for i in ids])])
        reader.catch_up()
        version, got_ids, matrix = reader.read_all("item")
        rows = dict(zip(got_ids, matrix))
        assert version == "v2"
        assert all(np.array_equal(rows[i], v1[k] + (1 if k < 25 else 0)) for k, i in enumerate(ids))
    finally:
        reader.close()
        writer.close()


_CHILD = textwrap.dedent("""
    import os, sys
    import numpy as np
    from graph_store.embeddings import RocksDBEmbeddingStore

    path, mode = sys.argv[1], sys.argv[2]

    class Dying(RocksDBEmbeddingStore):
        armed = False

        def _row_items(self, ids, vectors):
            for k, item in enumerate(zip(ids, vectors)):
                if self.armed and mode == "mid" and k == 500:
                    os._exit(9)  # killed while the v2 commit is being built
                yield item

    store = Dying(path)
    ids = [f"n{i}" for i in range(1000)]
    store.put_many("user", ids, np.full((1000, 16), 1.0, dtype=np.float32), "v1")
    store.armed = True
    store.put_many("user", ids, np.full((1000, 16), 2.0, dtype=np.float32), "v2")
    os._exit(7)  # "after": killed right after the v2 commit, without closing the store
""")


@pytest.mark.parametrize("mode,exit_code,version,value", [("mid", 9, "v1", 1.0), ("after", 7, "v2", 2.0)])
def test_process_killed_mid_write_keeps_a_whole_version(tmp_path, mode, exit_code, version, value) -> None:
    path = tmp_path / "emb"
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), mode], cwd=REPO, capture_output=True,
                          timeout=60)
    assert proc.returncode == exit_code, proc.stderr.decode()[-2000:]
    with RocksDBEmbeddingStore.open_read_only(path) as store:
        got_version, ids, matrix = store.read_all("user")
    assert got_version == version and len(ids) == 1000
    assert np.all(matrix == value)  # every row from the same version


def test_put_groups_writes_every_type_and_the_version_in_one_commit(make_store) -> None:
    store = make_store()
    users, u = _table(3, d=4)
    items, i = _table(5, d=6, seed=1)
    store.put_groups({"user": (users, u), "item": (items, i)}, "v1")
    assert store.version() == "v1" and store.dim("user") == 4 and store.dim("item") == 6
    np.testing.assert_array_equal(store.get_all("user")[1], u)
    np.testing.assert_array_equal(store.get_all("item")[1], i)
    with pytest.raises(EmbeddingDimError):  # the item group is bad: the user group is not written either
        store.put_groups({"user": (users, u + 1), "item": (items, np.ones((5, 3), np.float32))}, "v2")
    with pytest.raises(InvalidEmbeddingsError):
        store.put_groups({}, "v2")
    assert store.version() == "v1"
    np.testing.assert_array_equal(store.get_all("user")[1], u)


def test_put_groups_crash_in_a_later_group_leaves_the_previous_version(make_store) -> None:
    store = make_store(lambda cls: _faulty(cls, after=3))
    users, u = _table(3)
    items, i = _table(3, seed=1)
    store.put_groups({"user": (users, u), "item": (items, i)}, "v1")  # 3 rows each: no fault
    more_items, more = _table(8, seed=2)
    with pytest.raises(_Crash):  # users fully staged, items die at row 3
        store.put_groups({"user": (users, u + 1), "item": (more_items, more)}, "v2")
    assert store.version() == "v1"
    np.testing.assert_array_equal(store.get_all("user")[1], u)
    assert store.get_all("item")[0] == items


# ---- change log: a follower reads only what changed ------------------------------------
class _Follower:
    """What the scorer keeps: a full read once, then only :meth:`read_changes`."""

    def __init__(self, store) -> None:
        self.store = store
        self.seq = store.seq()  # taken before the full read (see read_changes)
        self.rows = {t: dict(zip(*store.read_all(t)[1:])) for t in ("user", "item")}
        self.full_reads = 1

    def poll(self) -> None:
        changes = self.store.read_changes(self.seq)
        if changes is None:
            self._reread()
            return
        for node_type, (ids, matrix) in changes.rows.items():
            self.rows[node_type].update(zip(ids, matrix))
        self.seq = changes.seq

    def _reread(self) -> None:
        self.seq = self.store.seq()
        self.rows = {t: dict(zip(*self.store.read_all(t)[1:])) for t in ("user", "item")}
        self.full_reads += 1


def _assert_follows(follower: _Follower) -> None:
    for node_type in ("user", "item"):
        _, ids, matrix = follower.store.read_all(node_type)
        assert sorted(follower.rows[node_type]) == sorted(ids)
        for node_id, row in zip(ids, matrix):
            np.testing.assert_array_equal(follower.rows[node_type][node_id], row)


def test_follower_of_the_change_log_equals_a_full_read(make_store) -> None:
    """Oracle: after random commits (several per poll, ids rewritten across commits), a follower
    that only reads changes holds exactly what a full read returns, without rereading."""
    store = make_store()
    follower = _Follower(store)
    rng = np.random.default_rng(3)
    for step in range(40):
        groups = {}
        for node_type in rng.choice(["user", "item"], size=rng.integers(1, 3), replace=False):
            ids = sorted({f"{node_type[0]}{k}" for k in rng.integers(0, 30, size=rng.integers(0, 8))})
            groups[str(node_type)] = (ids, rng.standard_normal((len(ids), 4)).astype(np.float32))
        store.put_groups(groups, f"v{step}")
        assert store.seq() == step + 1
        if rng.random() < 0.5:
            follower.poll()
            assert follower.seq == store.seq()
            _assert_follows(follower)
    follower.poll()
    _assert_follows(follower)
    assert follower.full_reads == 1
    changes = store.read_changes(store.seq())
    assert changes is not None and changes.rows == {} and changes.version == "v39"


def test_change_log_too_old_too_large_or_foreign_means_a_full_read(make_store, monkeypatch) -> None:
    from graph_store.embeddings import memory as memory_backend
    from graph_store.embeddings import codec as embeddings_codec
    from graph_store.embeddings import rocksdb as embeddings_rocksdb

    store = make_store()
    ids, vectors = _table(10)
    store.put_many("item", ids, vectors, "v0")
    for k in range(embeddings_rocksdb.LOG_KEEP):
        store.put_many("item", ids[:1], vectors[:1] + k, f"v{k + 1}")
    assert store.read_changes(0) is None  # commit 1's log is gone: only the last LOG_KEEP are kept
    assert store.read_changes(1).rows["item"][0] == ids[:1]
    assert store.read_changes(store.seq() + 1) is None  # a seq this store never reached
    with pytest.raises(ValueError, match="since must be a seq"):
        store.read_changes(-1)
    before = store.seq()
    monkeypatch.setattr(embeddings_codec, "LOG_MAX_IDS", 5)
    monkeypatch.setattr(memory_backend, "LOG_MAX_IDS", 5)
    store.put_many("item", ids, vectors, "big")  # a rebuild-sized commit is not listed
    assert store.read_changes(before) is None
    follower = _Follower(store)
    store.put_many("user", ids[:2], vectors[:2], "small")
    follower.poll()
    _assert_follows(follower)
    assert follower.full_reads == 1


def test_crash_mid_write_leaves_the_change_log_untouched(make_store) -> None:
    store = make_store(lambda cls: _faulty(cls, after=3))
    ids, vectors = _table(2)
    store.put_many("user", ids, vectors, "v1")  # 2 rows: no fault
    follower = _Follower(store)
    more, more_v = _table(6, seed=1)
    with pytest.raises(_Crash):
        store.put_many("user", more, more_v, "v2")
    assert store.seq() == 1
    assert store.read_changes(1).rows == {}
    follower.poll()
    _assert_follows(follower)


def test_secondary_reader_follows_the_change_log(tmp_path) -> None:
    ids, v1 = _table(50)
    writer = RocksDBEmbeddingStore(tmp_path / "emb")
    writer.put_many("item", ids, v1, "v1")
    reader = RocksDBEmbeddingStore.open_secondary(tmp_path / "emb", tmp_path / "secondary")
    try:
        follower = _Follower(reader)
        writer.put_many("item", ids[:5], v1[:5] + 1, "v2")
        writer.put_groups({"user": (ids[:3], v1[:3]), "item": (ids[40:], v1[40:] - 1)}, "v3")
        follower.poll()
        assert follower.seq == 1  # nothing new until the secondary catches up
        reader.catch_up()
        changes = reader.read_changes(1)
        assert changes.version == "v3" and changes.seq == 3
        assert changes.rows["item"][0] == ids[:5] + ids[40:] and changes.rows["user"][0] == ids[:3]
        follower.poll()
        _assert_follows(follower)
        assert follower.full_reads == 1
    finally:
        reader.close()
        writer.close()


def test_change_log_codec_round_trip() -> None:
    from graph_store.embeddings.codec import decode_change_log, encode_change_log

    users, u = _table(3, d=5)
    long_id = ["s" * 300]
    logged = {"user": (["a", "ü-2", ""], u), "item": ([], np.zeros((0, 2), np.float32)),
              "session": (long_id, u[:1])}
    raw = encode_change_log({t: (ids, list(map(encode_vector, v)), v.shape[1]) for t, (ids, v) in logged.items()})
    back = decode_change_log(raw)
    assert list(back) == list(logged)
    for node_type, (ids, vectors) in logged.items():
        assert back[node_type][0] == ids
        np.testing.assert_array_equal(back[node_type][1], vectors)
    assert decode_change_log(b"") is None
    with pytest.raises(ValueError, match="promises"):
        decode_change_log(raw[:-4])
