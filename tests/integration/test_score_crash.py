"""The score worker SIGKILLed mid-stream, on real brokers, with bad records in the stream.

Every recommendation names the event it answers (topic, partition, offset). After three kills
and restarts: every valid interaction got a next-item recommendation; none answers a bad
record or an offset that holds no event; deduplicated on the source they are exactly the
events, each with the event's own user, session and time; and each crash answered at most
one produced batch (``batch_max`` records) again.
"""
from __future__ import annotations

import asyncio
import threading
from collections import Counter

from stream.events import Interaction, decode_recommendation
from stream.events.badinput import malformed_samples
from stream.kafka.producer import EventProducer
from stream.kafka.topics import TopicSettings, ensure_topics
from tests.integration.pipeline_support import read_topic_sync, start_worker, wait_for, worker_env
from workers.runtime.launch import metric_sum

T0 = 1_700_000_000_000
N = 3_000
BATCH_MAX = 100
KILLS = 3


def _events() -> list[Interaction]:
    return [Interaction(user_id=f"u{k % 97}", item_id=f"i{(k * 13) % 211}", session_id=f"s{k % 97}",
                        ts=T0 + 100 * k, kind="click") for k in range(N)]


async def _produce(bootstrap: str, topics: TopicSettings, events, bad, rate: float) -> None:
    async with EventProducer(bootstrap, topics) as producer:
        for k, ev in enumerate(events):
            await producer.send_event(ev)
            if k % 300 == 150:  # a bad record now and then, on the partition of a real user
                reason, raw = bad[(k // 300) % len(bad)]
                await producer.send_raw(topics.interactions, ev.user_id.encode(), raw)
            if k % 50 == 49:
                await producer.flush()
                await asyncio.sleep(50 / rate)
        await producer.flush()


def test_score_worker_killed_three_times_answers_each_event_and_repeats_at_most_a_batch_per_crash(
        kafka_broker, unique_topics, tmp_path):
    topics = TopicSettings(interactions=unique_topics("interactions"), follows=unique_topics("follows"),
                           next_item=unique_topics("next-item"), social=unique_topics("social"),
                           dead_letters=unique_topics("dead-letters"), partitions=4)
    bootstrap = kafka_broker.bootstrap
    asyncio.run(ensure_topics(bootstrap, topics))
    events = _events()
    bad = [s for s in malformed_samples(now_ms=T0) if s[0] != "oversized"]
    env = {**worker_env(bootstrap, unique_topics, unique_topics("score"), tmp_path / "score"),
           "GNNREC_BATCH_MAX": str(BATCH_MAX), "GNNREC_COALESCE": "off"}
    score = kill_while_producing(bootstrap, topics, events, bad, env, tmp_path)
    score.stop()
    recs = [decode_recommendation(r.value) for r in
            read_topic_sync(bootstrap, topics.next_item, topics.partitions_of(topics.next_item), N, timeout_s=60)]
    by_offset = _event_offsets(bootstrap, topics)
    assert all(r.source is not None and r.source.topic == topics.interactions for r in recs)
    answered = Counter((r.source.partition, r.source.offset) for r in recs)
    assert set(answered) == set(by_offset), "deduplicated on their source, the answers are exactly the events"
    for r in recs:
        ev = by_offset[(r.source.partition, r.source.offset)]
        assert (r.user_id, r.session_id, r.event_ts) == (ev.user_id, ev.session_id, ev.ts)
    repeated = sum(n - 1 for n in answered.values())
    assert repeated <= KILLS * BATCH_MAX, f"{repeated} events answered twice over {KILLS} crashes"


def kill_while_producing(bootstrap: str, topics: TopicSettings, events, bad, env: dict, tmp_path, kills: int = KILLS):
    """Produce ``events`` (and ``bad``) at 1,000/s while a score worker is SIGKILLed ``kills``
    times, each after it answered some events, and restarted; returns the last worker, once it
    reached the end of the log (the caller stops it)."""
    producing = threading.Thread(target=lambda: asyncio.run(_produce(bootstrap, topics, events, bad, rate=1_000)))
    score = start_worker("score", env, tmp_path)
    producing.start()
    try:
        for kill in range(1, kills + 1):
            wait_for(lambda: metric_sum(score.scrape(), "gnnrec_recommendations_emitted_total", kind="next_item")
                     >= 150, 60, f"the score worker to answer events before kill {kill}", poll_s=0.05)
            score.kill()
            score = start_worker("score", env, tmp_path)
        producing.join(120)
        wait_for(lambda: sum(score_committed(score, topics.interactions)) == N + N // 300, 120,
                 "the last score worker to reach the end of the log")
    except BaseException:
        score.stop()
        raise
    return score


def score_committed(proc, topic: str) -> list[float]:
    samples = proc.scrape()
    return [v for k, v in samples.items() if k.startswith("gnnrec_committed_offset{") and f'topic="{topic}"' in k]


def _event_offsets(bootstrap: str, topics: TopicSettings) -> dict[tuple[int, int], Interaction]:
    """(partition, offset) → the valid interaction stored there, read back from the topic."""
    from stream.events import Invalid, decode_interaction
    records = read_topic_sync(bootstrap, topics.interactions, topics.partitions, N + N // 300, timeout_s=60)
    out = {}
    for rec in records:
        ev = decode_interaction(rec.value, now_ms=2 * T0)
        if not isinstance(ev, Invalid):
            out[(rec.partition, rec.offset)] = ev
    assert len(out) == N
    return out
