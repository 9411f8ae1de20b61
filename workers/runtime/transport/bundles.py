"""Model bundles on the models topic: the train worker publishes, refresh and score mirror.

:class:`BundlePublisher` follows the train worker's own model directory: whenever its ``LATEST``
names a version not sent yet, the bundle file's bytes go to the models topic as one blob
(:mod:`stream.kafka.blobs`: chunked above ``--topic-chunk-bytes``, checksummed) whose id is the
model version. Blobs alternate between the slots ``bundle/0`` and ``bundle/1``, so a compacted
topic keeps the newest bundle and the one before it: a worker that bootstraps while the refresh
worker still serves embeddings of the previous model finds that model too. The last version sent
and its slot are kept in ``state_path``, so a restart neither sends the same bundle again nor
overwrites the slot of the newest.

:class:`BundleMirror` reads the topic from its beginning into the worker's own model directory
with :func:`models.live.bundle.install_bundle` (the file, then ``LATEST``, each renamed into
place), where the refresh core and the score worker's follower read it as they read a shared
directory. While catching up it keeps only the newest ``keep`` bundles it reassembled and
installs them once it reached the end of the topic, oldest first, so ``LATEST`` ends at the newest.
"""
from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from models.live.bundle import BundleError, bundle_path, install_bundle, latest_version
from stream.kafka.blob_topic import BlobPublishError, BlobSink, RecordTail
from stream.kafka.blobs import Blob, BlobAssembler, BlobError
from workers.runtime import metrics as m
from workers.runtime.health import Check
from workers.runtime.transport.parts import call_lifecycle

log = logging.getLogger(__name__)

SLOTS = 2


class BundlePublisher:
    """The train worker's model directory → the models topic (see the module docstring)."""

    name = "models_topic"

    def __init__(self, model_dir: Path, sink: BlobSink, state_path: Path, *, topic: str, poll_s: float = 1.0,
                 worker: str = "train") -> None:
        self.model_dir, self.sink, self.state_path, self.topic = model_dir, sink, state_path, topic
        self.poll_s, self.worker = poll_s, worker
        self.published, self.slot = self._load_state()
        self.last_error: str | None = None

    def _load_state(self) -> tuple[str | None, int | None]:
        try:
            state = json.loads(self.state_path.read_text())
            version, slot = state.get("version"), state.get("slot")
        except (OSError, ValueError, AttributeError):
            return None, None
        return (version if isinstance(version, str) else None), (slot if slot in range(SLOTS) else None)

    async def start(self) -> None:
        await call_lifecycle(self.sink, "start")

    async def step(self) -> float:
        await self.publish_once()
        return self.poll_s

    async def stop(self) -> None:
        try:  # a bundle the training run published while the worker was asked to stop
            await asyncio.wait_for(self.publish_once(), timeout=30)
        except asyncio.TimeoutError:
            log.warning("the last bundle was not published to %s before stopping", self.topic)
        finally:
            await call_lifecycle(self.sink, "stop")

    def close(self) -> None:
        return None

    def check(self) -> Check:
        if self.last_error is not None:
            return False, f"publishing bundles to topic {self.topic} failed: {self.last_error}"
        if self.published is None:
            return True, f"no bundle in {self.model_dir} to publish to topic {self.topic} yet"
        return True, f"published bundle {self.published} to topic {self.topic}"

    async def publish_once(self) -> str | None:
        """Send the bundle ``LATEST`` names if it was not sent yet; returns its version."""
        version = latest_version(self.model_dir)
        if version is None or version == self.published:
            return None
        data = await asyncio.to_thread(bundle_path(self.model_dir, version).read_bytes)
        slot = 0 if self.slot is None else (self.slot + 1) % SLOTS
        try:
            await self.sink.publish(f"bundle/{slot}", version, data, {"version": version})
        except BlobPublishError as exc:
            self.last_error = str(exc)
            m.TOPIC_ERRORS.labels(self.worker, "models", "publish").inc()
            log.warning("%s", exc)
            return None
        self.published, self.slot, self.last_error = version, slot, None
        tmp = self.state_path.with_name(f".{self.state_path.name}.tmp")
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"version": version, "slot": slot}))
        tmp.replace(self.state_path)
        m.TOPIC_BLOBS.labels(self.worker, "models", "published").inc()
        log.info("published bundle %s (%d bytes) to topic %s", version, len(data), self.topic)
        return version


class BundleMirror:
    """The models topic → this worker's own model directory (see the module docstring)."""

    name = "models_topic"

    def __init__(self, tail: RecordTail, model_dir: Path, *, topic: str, poll_s: float = 1.0, worker: str = "score",
                 keep: int = SLOTS, fetch_timeout_s: float = 0.2) -> None:
        self.tail, self.model_dir, self.topic = tail, model_dir, topic
        self.poll_s, self.worker, self.keep, self.fetch_timeout_s = poll_s, worker, keep, fetch_timeout_s
        self.assembler = BlobAssembler()
        self.pending: list[Blob] = []
        self.installed: str | None = None
        self.caught_up_once = False

    async def start(self) -> None:
        await call_lifecycle(self.tail, "start")

    async def stop(self) -> None:
        await call_lifecycle(self.tail, "stop")

    def close(self) -> None:
        return None

    def check(self) -> Check:
        if not self.caught_up_once:
            return False, f"reading topic {self.topic} from its beginning for the newest bundles"
        if self.installed is None:
            return True, f"read topic {self.topic}: no bundle published yet (the train worker publishes them)"
        return True, f"bundle {self.installed} from topic {self.topic} in {self.model_dir}"

    async def step(self) -> float:
        """One fetch; once it reached the end of the topic, install what it completed."""
        records = await self.tail.fetch(self.fetch_timeout_s)
        for record in records:
            for out in self.assembler.on_record(record.offset, record.key, record.value):
                self._on_blob(out)
        if self.pending and (self.tail.caught_up or not records):
            await asyncio.to_thread(self._install, self.pending)
            self.pending = []
        if self.tail.caught_up:
            self.caught_up_once = True
            m.TOPIC_CAUGHT_UP.labels(self.worker, "models").set(1)
        return self.poll_s if self.tail.caught_up else 0.0

    def _on_blob(self, out: Blob | BlobError) -> None:
        if isinstance(out, BlobError):
            m.TOPIC_ERRORS.labels(self.worker, "models", out.reason).inc()
            log.warning("topic %s: %s", self.topic, out.detail)
            return
        if out.meta.get("version") != out.id:
            m.TOPIC_ERRORS.labels(self.worker, "models", "malformed").inc()
            log.warning("topic %s offset %d: blob %r is not a bundle (meta %r)", self.topic, out.offset, out.id, out.meta)
            return
        self.pending = [b for b in self.pending if b.id != out.id] + [out]
        if len(self.pending) > self.keep:
            m.TOPIC_BLOBS.labels(self.worker, "models", "skipped").inc(len(self.pending) - self.keep)
            self.pending = self.pending[-self.keep:]

    def _install(self, blobs: list[Blob]) -> None:
        for blob in blobs:
            try:
                install_bundle(blob.id, blob.data, self.model_dir)
            except BundleError as exc:
                m.TOPIC_ERRORS.labels(self.worker, "models", "malformed").inc()
                log.warning("topic %s offset %d: %s", self.topic, blob.offset, exc)
                continue
            self.installed = blob.id
            m.TOPIC_BLOBS.labels(self.worker, "models", "applied").inc()
            log.info("installed bundle %s from topic %s into %s", blob.id, self.topic, self.model_dir)
