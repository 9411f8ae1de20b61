"""``--exactly-once on``: the score worker SIGKILLed mid-stream answers each event once, for a
reader that reads committed records only (Apache Kafka: Tansu has no transactions, and the
option is refused there with that reason)."""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from stream.events import decode_recommendation
from stream.kafka.topics import TopicSettings, ensure_topics
from tests.integration.pipeline_support import read_topic_sync, wait_for, worker_env
from tests.integration.test_score_crash import BATCH_MAX, N, _event_offsets, _events, kill_while_producing
from workers.runtime.launch import WorkerProcess, WorkerStartError, metric_sum

KILLS = 3


def _topics(unique_topics) -> TopicSettings:
    return TopicSettings(interactions=unique_topics("interactions"), follows=unique_topics("follows"),
                         next_item=unique_topics("next-item"), social=unique_topics("social"),
                         dead_letters=unique_topics("dead-letters"), partitions=4)


@pytest.mark.parametrize("kafka_broker", ["apache"], indirect=True)
def test_killed_three_times_each_event_is_answered_exactly_once_for_read_committed(
        kafka_broker, unique_topics, tmp_path):
    from stream.events.badinput import malformed_samples
    topics = _topics(unique_topics)
    bootstrap = kafka_broker.bootstrap
    asyncio.run(ensure_topics(bootstrap, topics))
    events = _events()
    bad = [s for s in malformed_samples(now_ms=events[0].ts) if s[0] != "oversized"]
    env = {**worker_env(bootstrap, unique_topics, unique_topics("score"), tmp_path / "score"),
           "GNNREC_BATCH_MAX": str(BATCH_MAX), "GNNREC_COALESCE": "off", "GNNREC_EXACTLY_ONCE": "on"}
    score = kill_while_producing(bootstrap, topics, events, bad, env, tmp_path, kills=KILLS)
    try:
        # The last batch's transaction commits right after its records are applied.
        wait_for(lambda: metric_sum(score.scrape(), "gnnrec_recommendations_emitted_total", kind="next_item") > 0,
                 30, "the last score worker to answer")
    finally:
        score.stop()
    committed = [decode_recommendation(r.value) for r in read_topic_sync(
        bootstrap, topics.next_item, topics.partitions_of(topics.next_item), N, timeout_s=60, settle_s=2.0,
        isolation_level="read_committed")]
    uncommitted = read_topic_sync(bootstrap, topics.next_item, topics.partitions_of(topics.next_item), N,
                                  timeout_s=30, settle_s=2.0)
    by_offset = _event_offsets(bootstrap, topics)
    answered = Counter((r.source.partition, r.source.offset) for r in committed)
    assert set(answered) == set(by_offset)
    assert max(answered.values()) == 1, "an event answered twice in committed transactions"
    for r in committed:
        ev = by_offset[(r.source.partition, r.source.offset)]
        assert (r.user_id, r.session_id, r.event_ts) == (ev.user_id, ev.session_id, ev.ts)
    # The aborted transactions' records are in the log, invisible to read_committed readers.
    assert len(uncommitted) >= len(committed)


@pytest.mark.parametrize("kafka_broker", ["tansu"], indirect=True)
def test_a_broker_without_transactions_refuses_the_option_with_the_reason(kafka_broker, unique_topics, tmp_path):
    topics = _topics(unique_topics)
    asyncio.run(ensure_topics(kafka_broker.bootstrap, topics))
    env = {**worker_env(kafka_broker.bootstrap, unique_topics, unique_topics("score"), tmp_path / "score"),
           "GNNREC_EXACTLY_ONCE": "on"}
    proc = WorkerProcess("score", [], env=env, log_path=tmp_path / "score.log").start()
    try:
        with pytest.raises(WorkerStartError):
            proc.wait_ready(60)
    finally:
        proc.stop()
    assert "--exactly-once on" in proc.log_path.read_text(errors="replace")
