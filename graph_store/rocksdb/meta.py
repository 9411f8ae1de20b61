"""Opening a RocksDB graph store: typed errors, and the settings/counters records of a data dir."""
from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from pathlib import Path

import rocksdict

from graph_store import codec
from graph_store.errors import (
    GraphStoreError,
    SettingsMismatchError,
    StoreCorruptedError,
    StoreLockedError,
    StoreNotFoundError,
)
from graph_store.options import RocksDBOptions
from graph_store.schema import StoreSettings

__all__ = ["Meta", "guard", "load_meta", "open_rdict", "translate"]

FIX = (
    "The graph store is derived from the Kafka topics: stop the worker, move the data dir aside "
    "and let it rebuild from the earliest offsets (or try rocksdict.Rdict.repair(path) to salvage it)."
)

Meta = tuple[StoreSettings, dict[str, int], "int | None"]  # settings, counters, watermark


def translate(exc: Exception, path: Path) -> GraphStoreError:
    """A typed error for a RocksDB exception (rocksdict raises bare ``Exception``)."""
    msg = str(exc)
    if "corruption" in msg.lower():
        return StoreCorruptedError(f"RocksDB reports corruption in {path}: {msg}. {FIX}")
    if "/LOCK" in msg or "lock hold" in msg or "While lock file" in msg:
        return StoreLockedError(
            f"graph store dir {path} is locked by another process or another open store object "
            f"({msg}). Give each worker its own data dir (a distinct store path per worker "
            "process), or close the other store first."
        )
    return GraphStoreError(f"RocksDB error on {path}: {msg}")


@contextlib.contextmanager
def guard(path: Path) -> Iterator[None]:
    """Turn RocksDB errors and undecodable bytes into typed errors naming the fix."""
    try:
        yield
    except GraphStoreError:
        raise
    except (struct.error, UnicodeDecodeError, ValueError, KeyError, IndexError) as exc:
        raise StoreCorruptedError(f"a value in {path} does not decode ({exc!r}). {FIX}") from None
    except Exception as exc:
        raise translate(exc, path) from None


def open_rdict(path: Path, options: RocksDBOptions, read_only: bool) -> rocksdict.Rdict:
    if read_only:
        if not (path / "CURRENT").exists():
            raise StoreNotFoundError(f"no graph store at {path} (no RocksDB CURRENT file)")
        access = rocksdict.AccessType.read_only(False)
    else:
        path.mkdir(parents=True, exist_ok=True)
        access = rocksdict.AccessType.read_write()
    try:
        opts = options.to_options()
        # Named explicitly: for an existing database rocksdict otherwise takes the column
        # family's options from its OPTIONS file (the memtable of whoever created it, say).
        return rocksdict.Rdict(str(path), opts, column_families={"default": opts}, access_type=access)
    except Exception as exc:
        raise translate(exc, path) from None


def load_meta(
    db: rocksdict.Rdict, path: Path, settings: StoreSettings | None, read_only: bool, write_opt
) -> Meta:
    """Check ``settings`` against the stored ones (initialising a new store) and read the counters."""
    with guard(path):
        raw = db.get(codec.META_SETTINGS)
        if raw is None:
            if next(iter(db.keys()), None) is not None:
                raise StoreCorruptedError(
                    f"{path} holds a RocksDB database that is not a gnnrec graph store "
                    "(no settings record); point the store at an empty or dedicated data dir."
                )
            settings = StoreSettings() if settings is None else settings
            counters = dict.fromkeys(codec.COUNTER_FIELDS, 0)
            if not read_only:
                batch = rocksdict.WriteBatch(raw_mode=True)
                batch.put(codec.META_SETTINGS, codec.encode_settings(settings))
                batch.put(codec.META_COUNTERS, codec.encode_counters(counters))
                db.write(batch, write_opt)
            return settings, counters, None
        version, stored = codec.decode_settings(raw)
        if version != codec.FORMAT_VERSION:
            raise SettingsMismatchError(
                f"{path} was written in store format {version}; this code reads format "
                f"{codec.FORMAT_VERSION}. Rebuild the store in a new data dir."
            )
        if settings is None:
            settings = stored
        elif settings.half_life_ms != stored.half_life_ms:
            raise SettingsMismatchError(
                f"graph store at {path} was built with StoreSettings.half_life_ms="
                f"{stored.half_life_ms!r}, but it was opened with half_life_ms="
                f"{settings.half_life_ms!r}; the stored weights would change meaning. Open it "
                f"with half_life_ms={stored.half_life_ms!r}, or use a new data dir and rebuild "
                "from Kafka."
            )
        elif settings != stored and not read_only:
            # kind_weights / session_history only shape later events: adopt and persist them.
            db.put(codec.META_SETTINGS, codec.encode_settings(settings), write_opt)
        counters = codec.decode_counters(db[codec.META_COUNTERS])
        wm = db.get(codec.META_WATERMARK)
        return settings, counters, None if wm is None else codec.I64.unpack(wm)[0]
