"""The score worker's GNN answers against the reference scorer, on real data.

A trained bundle is published and its full rebuild written to a RocksDB embedding store; the
:class:`ScoreLoop` follows both (a RocksDB secondary, the model dir), applies each later event
as a consumed record and answers the batch with one GNN call per kind, as in production. Each
event's answer equals what :class:`tests.models.live.reference.ReferenceScorer` gives from the
rows the refresh wrote, the replica's popularity at the embeddings' watermark and the replica
as it stood when that event was applied. YooChoose for next-item; Last.fm (whose friends are
follows) for next-item and social.
"""
from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from graph_store import MemoryGraphStore, StoreSettings
from graph_store.embeddings import RocksDBEmbeddingStore
from models.live.bundle import publish
from models.live.refresher import Refresher
from models.live.train import LiveTrainConfig, train_bundle
from stream.events import Interaction, encode
from stream.formats import read_events
from stream.kafka.batch_consumer import RawRecord
from tests.models.live.reference import ReferenceScorer, decayed_popularity, transition_weights
from workers.runtime.settings import ScoreSettings
from workers.runtime.stores import open_store
from workers.score.loop import ScoreLoop

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CFG = LiveTrainConfig(dim=16, num_layers=2, lightgcn_epochs=3, srgnn_epochs=1, social_epochs=1)
K, TOL = 20, 1e-4
DATASETS = {  # name: (path under shared data, events warmed up on, events answered)
    "yoochoose": ("yoochoose/sessionrec_100k/yoochoose-clicks-100k_train_full.txt", 4000, 400),
    "lastfm": ("lastfm_hetrec2011", 6000, 400),
}


def _events(shared_data: Path, name: str) -> tuple[list, list]:
    rel, warm, live = DATASETS[name]
    path = shared_data / rel
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared/data)")
    events = list(itertools.islice(iter(read_events(path)), warm + live))
    return events[:warm], events[warm:]


def _assert_same(served, expected, scores, reference, where) -> None:
    """Same items in the same order (unless their reference scores tie within TOL), each served
    score the reference score of that item."""
    assert len(served) == len(expected), where
    for p, ((item, score), (want, want_score)) in enumerate(zip(served, expected)):
        ref = float(scores[reference.index[item]])
        assert score == pytest.approx(ref, abs=TOL), (where, p, item)
        assert item == want or abs(ref - want_score) <= TOL, (where, p, item, want)


@pytest.mark.parametrize("name", list(DATASETS))
def test_worker_gnn_answers_equal_the_reference(tmp_path: Path, shared_data: Path, name: str):
    warm, live = _events(shared_data, name)
    side = MemoryGraphStore(StoreSettings())
    side.apply_many(warm)
    now = warm[-1].ts
    bundle = train_bundle(side, now, CFG)
    publish(bundle, tmp_path / "models")
    result = Refresher(bundle).rebuild(side, now)
    writer = RocksDBEmbeddingStore(tmp_path / "embeddings")
    for node_type, (ids, vectors) in result.rows.items():
        writer.put_many(node_type, ids, vectors, f"{result.embedding_version}/w{result.watermark_ms}")

    async def body() -> tuple[list, list, ReferenceScorer]:
        settings = ScoreSettings(bootstrap_servers="127.0.0.1:1", data_dir=tmp_path / "score", k=K,
                                 model_dir=tmp_path / "models", embeddings_dir=tmp_path / "embeddings")
        loop = ScoreLoop(settings, open_store(settings))
        loop.store.apply_many(warm)
        loop.maybe_poll_embeddings(force=True)
        assert loop.gnn.scorer is not None and loop.gnn.model_version == bundle.version
        item_ids, item_vectors = result.rows["item"]
        user_ids, user_vectors = result.rows["user"]
        reference = ReferenceScorer(bundle, item_ids, item_vectors, dict(zip(user_ids, user_vectors)),
                                    decayed_popularity(loop.store, result.watermark_ms))
        m, expected, pending = bundle.transition_successors, [], []
        topics = loop.topics
        for offset, ev in enumerate(live):
            topic = topics.interactions if isinstance(ev, Interaction) else topics.follows
            p = loop._apply(RawRecord(topic, 0, offset, b"k", encode(ev), ev.ts))
            pending.append(p)
            want = {}  # the reference, on the replica as this event left it
            if isinstance(ev, Interaction):
                items = loop.store.session_items(ev.session_id)
                successors = transition_weights(loop.store, items, ev.ts, m)
                want["next_item"] = (reference.next_scores(items, successors),
                                     reference.recommend_next(items, K, successors))
            if bundle.social is not None and p.social_request is not None:
                user, followees, items = p.social_request
                want["social"] = (reference.social_scores(user, followees, items),
                                  reference.recommend_social(user, followees, items, K))
            expected.append(want)
        loop._answer_gnn(pending)
        loop.gnn.close()
        return pending, expected, reference

    pending, expected, reference = asyncio.run(body())
    compared = {"next_item": 0, "social": 0}
    for b, (p, want) in enumerate(zip(pending, expected)):
        for out in p.outs:
            if out.recommender != "gnn":
                assert want.get(out.kind, (None, None))[1] is None, (b, out.kind)  # the reference cannot answer either
                continue
            scores, ranked = want[out.kind]
            _assert_same(out.items, ranked, scores, reference, (b, out.kind))
            compared[out.kind] += 1
    assert compared["next_item"] > 200
    assert (compared["social"] > 100) is (bundle.social is not None)
