"""RocksDB-only behaviour: persistence, crash recovery, locking, corruption, settings, read-only."""
from __future__ import annotations

import glob
import json
import math
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import rocksdict

from graph_store import (
    ReadOnlyStoreError,
    RocksDBGraphStore,
    RocksDBOptions,
    SettingsMismatchError,
    StoreCorruptedError,
    StoreLockedError,
    StoreNotFoundError,
    StoreSettings,
    filter_replays,
    next_offsets,
)
from graph_store import codec
from tests.graph_store.conftest import Follow, Interaction, Record
from tests.graph_store.oracle import assert_graph_equal, build_oracle, read_store

REPO = Path(__file__).resolve().parents[3]
SETTINGS = StoreSettings(half_life_ms=60_000.0, session_history=4)


def _stream(n: int, seed: int = 7) -> list[Record]:
    """Records of two partitions (keyed by user, as in Kafka), in the order a consumer polls them."""
    rng = random.Random(seed)
    offsets = [0, 0]
    records = []
    for k in range(n):
        user = f"u{rng.randrange(12)}"
        if rng.random() < 0.15:
            event = Follow(user, f"u{rng.randrange(12)}", 1_000 * k + rng.randrange(5_000), rng.choice(["follow", "unfollow"]))
        else:
            event = Interaction(user, f"i{rng.randrange(30)}", f"{user}-s{k // 40}", 1_000 * k, rng.choice(["click", "cart"]))
        partition = int(user[1:]) % 2
        records.append(Record("events", partition, offsets[partition], event))
        offsets[partition] += 1
    return records


def _apply_in_batches(store, records: list[Record], size: int) -> None:
    for lo in range(0, len(records), size):
        batch = records[lo : lo + size]
        store.apply_many([r.value for r in batch], next_offsets(batch))


def test_everything_survives_close_and_reopen(tmp_path):
    records = _stream(300)
    with RocksDBGraphStore(tmp_path / "g", SETTINGS) as store:
        _apply_in_batches(store, records, 64)
        now = store.watermark_ms()
        before = read_store(store, now)
        dirty, offsets = store.dirty_nodes(), store.committed_offsets()
    with RocksDBGraphStore(tmp_path / "g") as store:  # settings=None: the stored ones
        assert store.settings == SETTINGS
        assert store.committed_offsets() == offsets == next_offsets(records)
        assert store.watermark_ms() == now and store.dirty_nodes() == dirty
        assert_graph_equal(read_store(store, now), before)


def test_one_big_batch_writes_the_same_bytes_as_event_by_event(tmp_path):
    """A batch commit (numpy-encoded rows) is byte-identical to one commit per event
    (row-by-row encoding): same keys, same values, same float bits."""
    rng = random.Random(3)
    events = []
    for k in range(2_000):
        user = f"u{rng.randrange(40)}"
        if rng.random() < 0.1:
            events.append(Follow(user, f"u{rng.randrange(40)}", 500 * k + rng.randrange(3_000), rng.choice(["follow", "unfollow"])))
        else:
            events.append(Interaction(user, f"i{rng.randrange(150)}", f"{user}-s{k // 60}", 500 * k + rng.randrange(2_000),
                                      rng.choice(["click", "cart"]), rng.choice([None, 0.5])))
    with RocksDBGraphStore(tmp_path / "batch", SETTINGS) as store:
        store.apply_many(events, {("events", 0): len(events)})
        counts = store.counts()
        assert min(counts.items, *counts.edges.values()) >= codec.BULK_MIN_ROWS  # the numpy path ran
    with RocksDBGraphStore(tmp_path / "each", SETTINGS) as store:
        for k, event in enumerate(events):
            store.apply_one(event, {("events", 0): k + 1})
    dumps = []
    for name in ("batch", "each"):
        raw = rocksdict.Rdict(str(tmp_path / name), RocksDBOptions().to_options())
        dumps.append(dict(raw.items()))
        raw.close()
    assert dumps[0] == dumps[1]


def test_write_counters_count_each_key_of_a_commit(tmp_path):
    """``keys_written`` / ``write_seconds`` (read by the ingest bench) cover exactly the commits:
    one commit on a fresh store writes each of its keys once (no deletes: nothing to unfollow),
    so it counts the keys it added plus those of opening's it changed (the counters)."""
    def dump():
        raw = rocksdict.Rdict(str(tmp_path / "g"), RocksDBOptions().to_options())
        try:
            return dict(raw.items())
        finally:
            raw.close()

    RocksDBGraphStore(tmp_path / "g", SETTINGS).close()
    at_open = dump()
    records = _stream(400)
    with RocksDBGraphStore(tmp_path / "g", SETTINGS) as store:
        assert (store.keys_written, store.write_seconds) == (0, 0.0)
        store.apply_many([r.value for r in records], next_offsets(records))
        written, seconds = store.keys_written, store.write_seconds
    after = dump()
    changed = [k for k, v in after.items() if at_open.get(k) != v]
    assert written == len(changed) > len(records)
    assert seconds > 0


CRASHING_WRITER = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    from graph_store import RocksDBGraphStore, StoreSettings, next_offsets
    from tests.graph_store.conftest import Follow, Interaction, Record
    from tests.graph_store.rocksdb.test_store import SETTINGS, _stream
    records = _stream(int(sys.argv[3]))
    store = RocksDBGraphStore(sys.argv[2], SETTINGS)
    for lo in range(0, int(sys.argv[4]), 50):
        batch = records[lo : lo + 50]
        store.apply_many([r.value for r in batch], next_offsets(batch))
    os._exit(1)  # crash: no close, no flush
    """
)


def test_crash_mid_stream_then_resume_from_stored_offsets_has_no_loss_and_no_double_count(tmp_path):
    n, applied_before_crash = 600, 300
    path = tmp_path / "g"
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(REPO), str(path), str(n), str(applied_before_crash)],
        capture_output=True, text=True, timeout=120,
    )
    assert crashed.returncode == 1, crashed.stderr
    records = _stream(n)
    with RocksDBGraphStore(path, SETTINGS) as store:
        committed = store.committed_offsets()
        assert committed == next_offsets(records[:applied_before_crash])
        # The consumer is redelivered everything from offset 0 (worst case) and skips replays.
        resumed = filter_replays(records, committed)
        assert len(resumed) == n - applied_before_crash
        _apply_in_batches(store, resumed, 70)
        events = [r.value for r in records]
        now = max(e.ts for e in events)
        assert store.counts().interactions == sum(hasattr(e, "item_id") for e in events)
        assert_graph_equal(read_store(store, now), build_oracle(events, SETTINGS, now))


def test_a_second_writer_on_the_same_dir_is_told_to_use_its_own(tmp_path):
    with RocksDBGraphStore(tmp_path / "g", SETTINGS):
        with pytest.raises(StoreLockedError, match="own data dir"):
            RocksDBGraphStore(tmp_path / "g", SETTINGS)
        other = subprocess.run(
            [sys.executable, "-c",
             f"import sys; sys.path.insert(0, {str(REPO)!r}); from graph_store import RocksDBGraphStore; "
             f"RocksDBGraphStore({str(tmp_path / 'g')!r})"],
            capture_output=True, text=True, timeout=120,
        )
        assert other.returncode != 0
        assert "StoreLockedError" in other.stderr and "own data dir" in other.stderr


def test_reopening_with_another_half_life_is_refused(tmp_path):
    RocksDBGraphStore(tmp_path / "g", StoreSettings(half_life_ms=1_000)).close()
    with pytest.raises(SettingsMismatchError, match=r"half_life_ms=1000\.0"):
        RocksDBGraphStore(tmp_path / "g", StoreSettings(half_life_ms=2_000))
    with pytest.raises(SettingsMismatchError):
        RocksDBGraphStore(tmp_path / "g", StoreSettings(half_life_ms=math.inf))
    # Settings that only shape future increments may change, and are persisted.
    RocksDBGraphStore(tmp_path / "g", StoreSettings(half_life_ms=1_000, session_history=2)).close()
    with RocksDBGraphStore(tmp_path / "g") as store:
        assert store.settings == StoreSettings(half_life_ms=1_000, session_history=2)


def _write_some(path: Path) -> None:
    with RocksDBGraphStore(path, SETTINGS) as store:
        _apply_in_batches(store, _stream(200), 100)


def test_corrupted_current_file_names_the_fix(tmp_path):
    _write_some(tmp_path / "g")
    (tmp_path / "g" / "CURRENT").write_text("garbage\n")
    with pytest.raises(StoreCorruptedError, match="rebuild from the earliest offsets"):
        RocksDBGraphStore(tmp_path / "g", SETTINGS)


def test_corrupted_table_file_is_reported_as_corruption(tmp_path):
    _write_some(tmp_path / "g")
    raw = rocksdict.Rdict(str(tmp_path / "g"), RocksDBOptions().to_options())
    raw.flush()
    raw.close()
    (sst,) = glob.glob(str(tmp_path / "g" / "*.sst"))
    data = bytearray(Path(sst).read_bytes())
    for i in range(64, len(data) - 64):
        data[i] ^= 0x5A
    Path(sst).write_bytes(bytes(data))
    with pytest.raises(StoreCorruptedError, match="corruption"):
        with RocksDBGraphStore(tmp_path / "g", SETTINGS) as store:
            read_store(store, 0)


def test_undecodable_value_is_reported_as_corruption(tmp_path):
    _write_some(tmp_path / "g")
    raw = rocksdict.Rdict(str(tmp_path / "g"), RocksDBOptions().to_options())
    raw[codec.session_key("u0-s0")] = b"\x00\x01"
    raw.close()
    with RocksDBGraphStore(tmp_path / "g", SETTINGS) as store:
        with pytest.raises(StoreCorruptedError, match="does not decode"):
            store.session_items("u0-s0")


def test_a_foreign_rocksdb_is_not_taken_for_a_graph_store(tmp_path):
    raw = rocksdict.Rdict(str(tmp_path / "other"), RocksDBOptions().to_options())
    raw[b"some"] = b"thing"
    raw.close()
    with pytest.raises(StoreCorruptedError, match="not a gnnrec graph store"):
        RocksDBGraphStore(tmp_path / "other", SETTINGS)


def test_read_only_inspection(tmp_path):
    records = _stream(150)
    with RocksDBGraphStore(tmp_path / "g", SETTINGS) as store:
        _apply_in_batches(store, records, 40)
        now = store.watermark_ms()
        expected = read_store(store, now)
    with RocksDBGraphStore.open_read_only(tmp_path / "g") as reader:
        assert reader.settings == SETTINGS
        assert reader.committed_offsets() == next_offsets(records)
        assert_graph_equal(read_store(reader, now), expected)
        with pytest.raises(ReadOnlyStoreError):
            reader.apply_one(Interaction("u", "i", "s", 0))
        with pytest.raises(ReadOnlyStoreError):
            reader.clear_dirty(reader.dirty_nodes())
    with pytest.raises(StoreNotFoundError):
        RocksDBGraphStore.open_read_only(tmp_path / "missing")


def test_options_are_validated_and_applied(tmp_path):
    with pytest.raises(ValueError, match="compression"):
        RocksDBOptions(compression="brotli")
    with pytest.raises(ValueError, match="write_buffer_size"):
        RocksDBOptions(write_buffer_size=0)
    options = RocksDBOptions(compression="zstd", write_buffer_size=1 << 20, sync_writes=True, cache_size=3)
    with RocksDBGraphStore(tmp_path / "g", SETTINGS, options) as store:
        _apply_in_batches(store, _stream(200), 30)  # tiny caches: cleared many times, still exact
        events = [r.value for r in _stream(200)]
        now = store.watermark_ms()
        assert_graph_equal(read_store(store, now), build_oracle(events, SETTINGS, now))
    assert json.loads((tmp_path / "g" / "rocksdict-config.json").read_text())["raw_mode"] is True
    assert os.path.exists(tmp_path / "g" / "LOCK")
