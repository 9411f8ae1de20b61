"""The embeddings topic's replay rule, pure: blobs in offset order → what to write locally.

The refresh worker's publisher (:mod:`workers.runtime.transport.embeddings`) numbers what it
sends: a *chain* (a fresh id each time the publisher starts) and a *seq* (1, 2, … within the
chain), and sends for each seq a **delta** (the rows the refresh worker's commits since the
previous seq wrote) or a **snapshot** (every row its store holds after that commit), or both.
A chain always begins with a snapshot. A reader is at a position ``(chain, seq)``:

* a snapshot of another chain, or of a later seq, replaces whatever was staged: the reader
  restarts from it (this is how a new reader bootstraps, and how it recovers from a gap);
* a delta of the reader's chain and the next seq is staged on top;
* anything the reader already covers (same chain, seq not after its own) is a duplicate;
* any other delta is a **gap** (a delta lost, or a new chain whose snapshot did not arrive):
  nothing is staged until the next snapshot, which the publisher sends at least every
  ``--embeddings-snapshot-every`` seqs.

:meth:`EmbeddingLog.take` merges what was staged into one update (each row once, at its newest
value), to be written as one commit: a reader bootstrapping from a snapshot and its deltas writes
them together. Payloads stay encoded until then, so a reader replaying a long topic holds at most
one snapshot and the deltas after it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from graph_store.embeddings import merge_changes
from graph_store.embeddings.codec import decode_rows

KINDS = ("delta", "snapshot")


@dataclass(frozen=True)
class Position:
    chain: str
    seq: int


@dataclass(frozen=True)
class BlobMeta:
    """What the publisher says about one blob of the embeddings topic."""

    kind: str
    chain: str
    seq: int
    version: str

    @classmethod
    def parse(cls, meta: dict[str, Any]) -> "BlobMeta":
        """ValueError if ``meta`` is not the publisher's."""
        kind, chain, seq, version = meta.get("kind"), meta.get("chain"), meta.get("seq"), meta.get("version")
        if kind not in KINDS or not isinstance(chain, str) or not chain or not isinstance(version, str) or not version:
            raise ValueError(f"not an embeddings blob: meta {meta!r}")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError(f"embeddings blob seq must be an int >= 1, got {seq!r}")
        return cls(kind, chain, seq, version)

    def to_meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "chain": self.chain, "seq": self.seq, "version": self.version}


@dataclass(frozen=True)
class EmbeddingUpdate:
    """One commit for the local store: ``groups {node_type: (ids, vectors)}`` and ``version``;
    ``full`` when a snapshot is in it; ``blobs`` merged into it."""

    version: str
    groups: dict[str, tuple[list[str], np.ndarray]]
    full: bool
    position: Position
    blobs: int


class EmbeddingLog:
    """The reader's position and what it staged since the last :meth:`take`."""

    def __init__(self) -> None:
        self.position: Position | None = None
        self.broken = False  # a gap was met: wait for a snapshot
        self.superseded = 0  # staged blobs a later snapshot replaced before they were taken
        self._staged: list[bytes] = []
        self._full = False
        self._version: str | None = None

    def on_blob(self, meta: BlobMeta, payload: bytes) -> str:
        """Take one blob; returns ``staged``, ``duplicate``, ``waiting`` (no snapshot to build on
        yet) or ``gap``."""
        pos = self.position
        covered = pos is not None and pos.chain == meta.chain and meta.seq <= pos.seq
        if meta.kind == "snapshot":
            if covered and not self.broken:
                return "duplicate"
            self.superseded += len(self._staged)
            self._staged, self._full, self.broken = [payload], True, False
            self._advance(meta)
            return "staged"
        if covered:
            return "duplicate"
        if pos is None or self.broken:
            return "waiting"
        if pos.chain == meta.chain and meta.seq == pos.seq + 1:
            self._staged.append(payload)
            self._advance(meta)
            return "staged"
        self.broken = True
        return "gap"

    def _advance(self, meta: BlobMeta) -> None:
        self.position = Position(meta.chain, meta.seq)
        self._version = meta.version

    @property
    def staged(self) -> int:
        return len(self._staged)

    def take(self) -> EmbeddingUpdate | None:
        """The staged blobs as one update (None when nothing is staged). A payload that does not
        decode raises ValueError; the log then waits for the next snapshot."""
        if not self._staged:
            return None
        payloads, full = self._staged, self._full
        self._staged, self._full = [], False
        assert self.position is not None and self._version is not None
        try:
            groups = merge_changes(decode_rows(p) for p in payloads)
        except ValueError:
            self.broken = True
            raise
        groups = {t: (ids, vectors) for t, (ids, vectors) in groups.items() if ids}
        return EmbeddingUpdate(self._version, groups, full, self.position, len(payloads))
