"""A burst at full speed into a score worker that coalesces, on real brokers.

20,000 simulator events are produced as fast as the producer goes. The score worker falls
behind, so its fetched batches are full: it answers only the latest event of each session
(next-item) and user (social) of each batch, and says so in ``gnnrec_events_coalesced_total``.
It reaches the end of the log; every session's last event of the stream is answered; every
answer names a real event of its own session; no event is answered twice; and answered plus
coalesced events account for every event.
"""
from __future__ import annotations

import asyncio
from collections import Counter

from stream.events import Interaction, decode_recommendation
from stream.kafka.producer import EventProducer
from stream.kafka.topics import TopicSettings, ensure_topics
from stream.simulator import Simulator, SimulatorSettings
from tests.integration.pipeline_support import read_topic_sync, start_worker, wait_for, worker_env
from workers.runtime.launch import metric_sum

T0 = 1_700_000_000_000
N = 20_000


async def _produce(bootstrap: str, topics: TopicSettings, events) -> None:
    async with EventProducer(bootstrap, topics) as producer:
        for ev in events:
            await producer.send_event(ev)
        await producer.flush()


def test_a_burst_is_coalesced_and_the_score_worker_reaches_the_end(kafka_broker, unique_topics, tmp_path):
    topics = TopicSettings(interactions=unique_topics("interactions"), follows=unique_topics("follows"),
                           next_item=unique_topics("next-item"), social=unique_topics("social"),
                           dead_letters=unique_topics("dead-letters"), partitions=4)
    bootstrap = kafka_broker.bootstrap
    asyncio.run(ensure_topics(bootstrap, topics))
    events = [e for e in Simulator(SimulatorSettings(seed=11, n_users=500, n_items=2000)).events(
        start_ms=T0, n=N, step_ms=10) if isinstance(e, Interaction)]
    score = start_worker("score", worker_env(bootstrap, unique_topics, unique_topics("score"), tmp_path / "score"),
                         tmp_path)
    try:
        asyncio.run(_produce(bootstrap, topics, events))

        def done() -> bool:
            s = score.scrape()
            # Applied counts move during a batch, answers at its end: wait for both.
            return (metric_sum(s, "gnnrec_events_applied_total") == len(events)
                    and metric_sum(s, "gnnrec_recommendations_emitted_total", kind="next_item")
                    + metric_sum(s, "gnnrec_events_coalesced_total", kind="next_item") == len(events))
        wait_for(done, 180, "the score worker to reach the end of the burst")
        samples = score.scrape()
    finally:
        score.stop()
    answered = int(metric_sum(samples, "gnnrec_recommendations_emitted_total", kind="next_item"))
    coalesced = int(metric_sum(samples, "gnnrec_events_coalesced_total", kind="next_item"))
    assert coalesced > 0, "a burst at full speed should have been coalesced"
    assert answered + coalesced == len(events)
    recs = [decode_recommendation(r.value) for r in
            read_topic_sync(bootstrap, topics.next_item, topics.partitions_of(topics.next_item), answered,
                            timeout_s=60)]
    assert len(recs) == answered
    sources = Counter((r.source.partition, r.source.offset) for r in recs)
    assert max(sources.values()) == 1, "an event answered twice"
    by_session = {}
    for r in recs:
        by_session.setdefault(r.session_id, []).append(r.event_ts)
    last = {}
    for ev in events:
        last[ev.session_id] = ev.ts
    for session, ts in last.items():
        assert ts in by_session.get(session, []), f"the last event of session {session} was not answered"
    real = {(ev.user_id, ev.session_id, ev.ts) for ev in events}
    assert all((r.user_id, r.session_id, r.event_ts) in real for r in recs)
