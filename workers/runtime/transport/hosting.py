"""A worker loop with its transport parts beside it: what `gnnrec worker` runs under kafka transport.

:func:`with_transport` wraps a role's loop (train, refresh, score) in a :class:`TransportedLoop`
that, under ``--transport kafka``, creates the models and embeddings topics if they are missing,
then runs each part (publisher or mirror) as its own task on the worker's event loop, and adds
each part's readiness check to the loop's. The role's loop is not changed: the publishers read
the directory or store the loop writes, the mirrors write the directory or store the loop reads.

* train: ``BundlePublisher`` (``transport.bundles``), its ``--model-dir`` → the models topic;
* refresh: ``BundleMirror``, the models topic → its ``--model-dir``, and ``EmbeddingPublisher``
  (``transport.embeddings``), its embedding store → the embeddings topic;
* score, in GNN mode: ``BundleMirror``, and ``EmbeddingMirror``, the embeddings topic → its
  ``--embeddings-dir``.

On stop, the role's loop stops first (a training run or refresh in flight finishes), then each
part gets a last turn (the publishers send what was written last) and stops; the loop closes its
stores before the parts close theirs.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from graph_store.embeddings import EmbeddingStore
from stream.kafka.blob_topic import KafkaBlobSink, KafkaTopicTail
from stream.kafka.topics import ensure_topics
from workers.runtime.health import Check
from workers.runtime.runner import WorkerLoop
from workers.runtime.settings import ReplicaSettings, RefreshSettings, ScoreSettings, Transported
from workers.runtime.transport.parts import TransportPart

log = logging.getLogger(__name__)


class TransportedLoop:
    """``inner`` (a :class:`WorkerLoop`) with ``parts`` running beside it as tasks; ``prepare``
    runs first (creating the topics), a part that raises is retried after ``retry_s``."""

    def __init__(self, inner: WorkerLoop, parts: list[TransportPart], *, worker: str, retry_s: float = 1.0,
                 prepare: Callable[[], Awaitable[None]] | None = None) -> None:
        self.inner, self.parts, self.worker, self.retry_s, self.prepare = inner, parts, worker, retry_s, prepare
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        if self.prepare is not None:
            await self.prepare()
        for part in self.parts:
            await part.start()
        await self.inner.start()
        self._tasks = [asyncio.create_task(self._drive(part), name=f"gnnrec-{self.worker}-{part.name}")
                       for part in self.parts]

    async def _drive(self, part: TransportPart) -> None:
        while True:
            try:
                wait = await part.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a topic problem must not stop the worker; the part's check says why
                log.exception("%s: %s failed; retrying in %.1f s", self.worker, part.name, self.retry_s)
                wait = self.retry_s
            await asyncio.sleep(wait)

    async def run_once(self) -> int:
        return await self.inner.run_once()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await self.inner.stop()
        finally:
            for part in self.parts:
                try:
                    await part.stop()
                except Exception:  # stop the others all the same
                    log.exception("%s: stopping %s failed", self.worker, part.name)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            for part in self.parts:
                part.close()

    def readiness(self) -> Mapping[str, Check]:
        checks = dict(self.inner.readiness())
        for part in self.parts:
            checks[part.name] = part.check()
        return checks


def transport_parts(worker: str, settings: Transported, *,
                    embeddings: EmbeddingStore | None = None) -> list[TransportPart]:
    """The parts ``worker`` (train, refresh, score) runs under its settings ([] unless kafka transport)."""
    if settings.transport != "kafka":
        return []
    if worker == "score" and not (isinstance(settings, ScoreSettings) and settings.use_gnn()):
        return []  # baseline mode reads neither (and stays free of torch, which bundles import)
    from workers.runtime.transport.bundles import BundleMirror, BundlePublisher
    from workers.runtime.transport.embeddings import EmbeddingMirror, EmbeddingPublisher

    bootstrap, security, topics = settings.require_bootstrap(), settings.kafka_security(), settings.topics()
    poll_s = settings.topic_poll_s

    def sink(topic: str) -> KafkaBlobSink:
        return KafkaBlobSink(bootstrap, topic, chunk_bytes=settings.topic_chunk_bytes,
                             client_id=f"gnnrec-{worker}-publish", security=security)

    def tail(topic: str) -> KafkaTopicTail:
        return KafkaTopicTail(bootstrap, topic, client_id=f"gnnrec-{worker}-mirror", security=security)

    expected = {"train": ReplicaSettings, "refresh": RefreshSettings, "score": ScoreSettings}.get(worker)
    if expected is None:
        raise ValueError(f"no transport for worker {worker!r}; expected train, refresh or score")
    if not isinstance(settings, expected):
        raise TypeError(f"the {worker} worker's transport reads {expected.__name__}, got {type(settings).__name__}")
    if worker == "train":
        return [BundlePublisher(settings.model_dir, sink(topics.models), settings.data_dir / "models-topic.json",
                                topic=topics.models, poll_s=poll_s, worker=worker)]
    if worker == "refresh":
        if embeddings is None:
            raise ValueError("the refresh worker's transport publishes its embedding store: pass embeddings=")
        return [BundleMirror(tail(topics.models), settings.model_dir, topic=topics.models, poll_s=poll_s,
                             worker=worker),
                EmbeddingPublisher(embeddings, sink(topics.embeddings), settings.data_dir / "embeddings-topic.json",
                                   topic=topics.embeddings, snapshot_every=settings.embeddings_snapshot_every,
                                   poll_s=poll_s, worker=worker)]
    if settings.model_dir is None or settings.embeddings_dir is None:
        raise ValueError("the score worker's kafka transport needs --model-dir and --embeddings-dir (its settings "
                         "set both to its data dir in GNN mode)")
    return [BundleMirror(tail(topics.models), settings.model_dir, topic=topics.models, poll_s=poll_s,
                         worker=worker),
            EmbeddingMirror(tail(topics.embeddings), settings.embeddings_dir, topic=topics.embeddings,
                            poll_s=poll_s, worker=worker)]


def with_transport(worker: str, loop: WorkerLoop, settings: Transported, *,
                   embeddings: EmbeddingStore | None = None) -> WorkerLoop:
    """``loop`` as it is under local transport, else a :class:`TransportedLoop` around it."""
    parts = transport_parts(worker, settings, embeddings=embeddings)
    if not parts:
        return loop
    topics = settings.topics()

    async def create_topics() -> None:
        await ensure_topics(settings.require_bootstrap(), topics, security=settings.kafka_security(),
                            only=(topics.models, topics.embeddings))
    return TransportedLoop(loop, parts, worker=worker, retry_s=settings.topic_poll_s, prepare=create_topics)
