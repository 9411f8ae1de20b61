"""Embeddings on the embeddings topic: the refresh worker publishes, score workers mirror.

:class:`EmbeddingPublisher` follows the refresh worker's own embedding store (it is in the same
process, so it reads the store the refresh loop writes) and, every ``--topic-poll-s``, sends what
the commits since its last publication wrote: one **delta** (``read_changes``: the changed rows
at their current values, with the store's current version), and every
``--embeddings-snapshot-every`` seqs also a **snapshot** of every row at that same commit. When
the change log cannot say what changed (a full rebuild, or more than its kept commits behind)
and at the first publication of a process, it sends a snapshot alone. Numbering and the reader's
rule: :mod:`workers.runtime.transport.embedding_log`.

Keys, for a compacting broker: deltas go to ``delta/<seq mod 4·N>`` (N the snapshot period) and
snapshots alternate between ``snapshot/0`` and ``snapshot/1``. A delta's key is reused only
4·N seqs later, when at least one newer snapshot has been sent (the publisher never lets 2·N pass
without one), so compaction never drops a delta that a reader starting from the newest snapshot
needs; and a snapshot being sent never overwrites the newest complete one. The slot of the last
snapshot is kept in ``state_path``, so a restarted publisher does not overwrite it either.

:class:`EmbeddingMirror` reads the topic from its beginning (the newest snapshot, then the deltas
after it) into the score worker's own :class:`RocksDBEmbeddingStore`, through the store's normal
write path (``put_groups``, one commit per fetch that reached the end of the topic), where
:class:`workers.score.gnn.EmbeddingFollower` reads it as it reads a refresh worker's store.
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from graph_store.embeddings import TYPE_CODE, EmbeddingStore, RocksDBEmbeddingStore
from graph_store.embeddings.codec import encode_rows
from graph_store.errors import GraphStoreError
from stream.kafka.blob_topic import BlobPublishError, BlobSink, RecordTail
from stream.kafka.blobs import Blob, BlobAssembler, BlobError
from workers.runtime import metrics as m
from workers.runtime.health import Check
from workers.runtime.transport.embedding_log import BlobMeta, EmbeddingLog
from workers.runtime.transport.parts import call_lifecycle

log = logging.getLogger(__name__)

_SNAPSHOT_READ_TRIES = 3


@dataclass(frozen=True)
class _Plan:
    """What one publication sends: ``(kind, version, rows bytes)`` in order, and the store seq they reach."""

    blobs: list[tuple[str, str, bytes]]
    store_seq: int


def _load_slot(path: Path) -> int | None:
    try:
        slot = json.loads(path.read_text()).get("snapshot_slot")
    except (OSError, ValueError, AttributeError):
        return None
    return slot if slot in (0, 1) else None


class EmbeddingPublisher:
    """The refresh worker's embedding store → the embeddings topic (see the module docstring)."""

    name = "embeddings_topic"

    def __init__(self, store: EmbeddingStore, sink: BlobSink, state_path: Path, *, topic: str,
                 snapshot_every: int = 60, poll_s: float = 1.0, worker: str = "refresh",
                 chain: str | None = None) -> None:
        if snapshot_every < 1:
            raise ValueError(f"snapshot_every must be >= 1, got {snapshot_every}")
        self.store, self.sink, self.state_path, self.topic = store, sink, state_path, topic
        self.snapshot_every, self.poll_s, self.worker = snapshot_every, poll_s, worker
        self.delta_slots = 4 * snapshot_every
        self.chain = chain or uuid.uuid4().hex[:12]
        self.seq = 0  # last seq sent (or burnt by a failed send) in this chain
        self.snapshot_seq = 0  # seq of the last snapshot sent
        self.store_seq: int | None = None  # the store's commit count the last publication reached
        self.snapshot_slot = _load_slot(state_path)
        self.published_version: str | None = None
        self.last_error: str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gnnrec-{worker}-publish")

    async def start(self) -> None:
        await call_lifecycle(self.sink, "start")

    async def step(self) -> float:
        await self.publish_once()
        return self.poll_s

    async def stop(self) -> None:
        try:  # what the refresh loop committed last, before the process goes
            await asyncio.wait_for(self.publish_once(), timeout=10)
        except (asyncio.TimeoutError, GraphStoreError) as exc:
            log.warning("last embedding version not published at stop: %r", exc)
        finally:
            self._executor.shutdown(wait=True)
            await call_lifecycle(self.sink, "stop")

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def check(self) -> Check:
        if self.last_error is not None:
            return False, f"publishing embeddings to topic {self.topic} failed: {self.last_error}"
        if self.published_version is None:
            return True, f"nothing published to topic {self.topic} yet (no embeddings written)"
        return True, f"published embeddings {self.published_version} to topic {self.topic} (chain {self.chain}, " \
                     f"seq {self.seq})"

    async def publish_once(self) -> list[str]:
        """Send what the store committed since the last publication; returns the kinds sent."""
        plan = await asyncio.get_running_loop().run_in_executor(self._executor, self._plan)
        if plan is None:
            return []
        seq = self.seq + 1
        slot = 0 if self.snapshot_slot is None else 1 - self.snapshot_slot
        try:
            for kind, version, data in plan.blobs:
                key = f"delta/{seq % self.delta_slots}" if kind == "delta" else f"snapshot/{slot}"
                meta = BlobMeta(kind, self.chain, seq, version).to_meta()
                await self.sink.publish(key, f"{self.chain}.{seq}", data, meta)
        except BlobPublishError as exc:
            # The seq is spent (part of it may be on the topic): the next publication is a
            # snapshot with a fresh seq, which every reader applies whatever it got of this one.
            self.seq, self.store_seq = seq, None
            self.last_error = str(exc)
            m.TOPIC_ERRORS.labels(self.worker, "embeddings", "publish").inc()
            log.warning("%s", exc)
            return []
        self.seq, self.store_seq, self.last_error = seq, plan.store_seq, None
        kinds = [kind for kind, _, _ in plan.blobs]
        if "snapshot" in kinds:
            self.snapshot_seq, self.snapshot_slot = seq, slot
            self._save_slot()
        self.published_version = plan.blobs[-1][1]
        m.TOPIC_BLOBS.labels(self.worker, "embeddings", "published").inc(len(kinds))
        return kinds

    def _save_slot(self) -> None:
        tmp = self.state_path.with_name(f".{self.state_path.name}.tmp")
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"snapshot_slot": self.snapshot_slot}))
        tmp.replace(self.state_path)

    # ---- in the publisher's thread: reads of the store the refresh loop writes -----------------
    def _plan(self) -> _Plan | None:
        head = self.store.seq()
        if head == 0 or head == self.store_seq:
            return None
        since_snapshot = self.seq + 1 - self.snapshot_seq
        changes = None
        if self.store_seq is not None and since_snapshot < 2 * self.snapshot_every:
            changes = self.store.read_changes(self.store_seq)
        if changes is None:
            snapshot = self._snapshot(None)
            return None if snapshot is None else _Plan([("snapshot", snapshot[1], snapshot[2])], snapshot[0])
        blobs = [("delta", changes.version, encode_rows(changes.rows))]
        if since_snapshot >= self.snapshot_every:
            snapshot = self._snapshot(changes.seq)  # skipped (and tried next time) if a commit lands meanwhile
            if snapshot is not None:
                blobs.append(("snapshot", snapshot[1], snapshot[2]))
        return _Plan(blobs, changes.seq)

    def _snapshot(self, at_seq: int | None) -> tuple[int, str, bytes] | None:
        """``(store seq, version, every row encoded)`` read at one commit (``at_seq`` if given), or
        None if the writer kept committing during every try."""
        for _ in range(_SNAPSHOT_READ_TRIES):
            before = self.store.seq()
            if at_seq is not None and before != at_seq:
                return None
            groups, version = {}, None
            for node_type in TYPE_CODE:
                if self.store.dim(node_type) is None:
                    continue
                v, ids, matrix = self.store.read_all(node_type)
                version = version or v
                groups[node_type] = (ids, matrix)
            if self.store.seq() == before and version is not None:
                return before, version, encode_rows(groups)
        return None


class EmbeddingMirror:
    """The embeddings topic → this worker's own embedding store at ``path`` (see the module docstring)."""

    name = "embeddings_topic"

    def __init__(self, tail: RecordTail, path: Path, *, topic: str, poll_s: float = 1.0,
                 worker: str = "score", fetch_timeout_s: float = 0.2) -> None:
        self.tail, self.path, self.topic = tail, path, topic
        self.poll_s, self.worker, self.fetch_timeout_s = poll_s, worker, fetch_timeout_s
        self.assembler = BlobAssembler()
        self.log = EmbeddingLog()
        self.store: EmbeddingStore | None = None
        self.applied_version: str | None = None
        self.caught_up_once = False
        self.last_error: str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gnnrec-{worker}-mirror")

    async def start(self) -> None:
        # Created before the worker's follower looks for it: it opens the store as a secondary.
        self.store = RocksDBEmbeddingStore(self.path)
        await call_lifecycle(self.tail, "start")

    async def stop(self) -> None:
        self._executor.shutdown(wait=True)
        await call_lifecycle(self.tail, "stop")

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self.store is not None:
            self.store.close()
            self.store = None

    def check(self) -> Check:
        if self.last_error is not None:
            return False, self.last_error
        if not self.caught_up_once:
            return False, f"reading topic {self.topic} from its beginning (the newest snapshot, then the changes after it)"
        if self.applied_version is None:
            return True, f"read topic {self.topic}: no embeddings published yet (the refresh worker publishes them)"
        return True, f"embeddings {self.applied_version} from topic {self.topic} in {self.path}"

    async def step(self) -> float:
        """One fetch; when it reached the end of the topic, one commit of what it staged."""
        records = await self.tail.fetch(self.fetch_timeout_s)
        for record in records:
            for out in self.assembler.on_record(record.offset, record.key, record.value):
                self._on_blob(out)
        if self.tail.caught_up or not records:
            await self._apply()
        if self.tail.caught_up:
            self.caught_up_once = True
            m.TOPIC_CAUGHT_UP.labels(self.worker, "embeddings").set(1)
        return self.poll_s if self.tail.caught_up else 0.0

    def _on_blob(self, out: Blob | BlobError) -> None:
        if isinstance(out, BlobError):
            m.TOPIC_ERRORS.labels(self.worker, "embeddings", out.reason).inc()
            log.warning("topic %s: %s", self.topic, out.detail)
            return
        try:
            meta = BlobMeta.parse(out.meta)
        except ValueError as exc:
            m.TOPIC_ERRORS.labels(self.worker, "embeddings", "malformed").inc()
            log.warning("topic %s offset %d: %s", self.topic, out.offset, exc)
            return
        outcome = self.log.on_blob(meta, out.data)
        if outcome == "gap":
            m.TOPIC_ERRORS.labels(self.worker, "embeddings", "gap").inc()
            log.warning("topic %s: %s seq %d of chain %s does not follow %s; waiting for the next snapshot",
                        self.topic, meta.kind, meta.seq, meta.chain, self.log.position)

    async def _apply(self) -> None:
        superseded, self.log.superseded = self.log.superseded, 0
        if superseded:
            m.TOPIC_BLOBS.labels(self.worker, "embeddings", "skipped").inc(superseded)
        try:
            update = self.log.take()
        except ValueError as exc:
            m.TOPIC_ERRORS.labels(self.worker, "embeddings", "malformed").inc()
            log.warning("topic %s: rows do not decode (%s); waiting for the next snapshot", self.topic, exc)
            return
        if update is None or not update.groups:
            return
        assert self.store is not None
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, self.store.put_groups, update.groups, update.version)
        except GraphStoreError as exc:
            self.last_error = (f"embeddings {update.version} from topic {self.topic} cannot be written to {self.path} "
                               f"({exc}); stop the worker, move {self.path} aside and start it again: it rebuilds "
                               "the store from the topic")
            m.TOPIC_ERRORS.labels(self.worker, "embeddings", "apply").inc()
            log.error("%s", self.last_error)
            return
        self.applied_version, self.last_error = update.version, None
        m.TOPIC_BLOBS.labels(self.worker, "embeddings", "applied").inc(update.blobs)
