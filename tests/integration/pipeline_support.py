"""Helpers for the end-to-end tests: real replay data, worker processes, store comparison."""
from __future__ import annotations

import asyncio
import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from graph_store import GraphStore
from stream.events import Interaction
from workers.runtime.launch import WorkerProcess, metric_sum

YOOCHOOSE_TRAIN = "yoochoose/sessionrec_100k/yoochoose-clicks-100k_train_full.txt"


@dataclass(frozen=True)
class Expected:
    """Counts computed directly from the file's rows, with plain set arithmetic."""

    interactions: int
    sessions: int
    items: int
    user_item_edges: int
    transition_edges: int


def yoochoose_rows(shared_data: Path, n: int) -> tuple[list[Interaction], Expected]:
    """The first ``n`` rows of the YooChoose 100k training file, as events, plus expected counts.

    YooChoose sessions are anonymous: the user is the session.
    """
    rows = []
    with open(shared_data / YOOCHOOSE_TRAIN, newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        for row in reader:
            rows.append((row[0], row[1], int(round(float(row[2]) * 1000))))
            if len(rows) == n:
                break
    events = [Interaction(user_id=s, item_id=i, session_id=s, ts=ts, kind="click") for s, i, ts in rows]
    last: dict[str, str] = {}
    transitions: set[tuple[str, str]] = set()
    for s, i, _ in rows:
        prev = last.get(s)
        if prev is not None and prev != i:
            transitions.add((prev, i))
        last[s] = i
    expected = Expected(
        interactions=len(rows), sessions=len({s for s, _, _ in rows}), items=len({i for _, i, _ in rows}),
        user_item_edges=len({(s, i) for s, i, _ in rows}), transition_edges=len(transitions))
    return events, expected


def worker_env(bootstrap: str, topics, group: str, data_dir: Path) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "GNNREC_INTERACTIONS_TOPIC": topics("interactions"), "GNNREC_FOLLOWS_TOPIC": topics("follows"),
        "GNNREC_NEXT_ITEM_TOPIC": topics("next-item"), "GNNREC_SOCIAL_TOPIC": topics("social"),
        "GNNREC_DEAD_LETTERS_TOPIC": topics("dead-letters"), "GNNREC_GROUP_ID": group,
        "GNNREC_DATA_DIR": str(data_dir), "GNNREC_METRICS_PORT": "0", "GNNREC_LOG_LEVEL": "INFO",
    }


def start_worker(name: str, env: dict[str, str], log_dir: Path) -> WorkerProcess:
    proc = WorkerProcess(name, [], env=env, log_path=log_dir / f"{name}-{time.time_ns()}.log").start()
    proc.wait_ready(120)
    return proc


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")


def committed_total(worker: WorkerProcess, topic: str) -> int:
    return int(metric_sum(worker.scrape(), "gnnrec_committed_offset", topic=topic))


async def read_topic(bootstrap: str, topic: str, partitions: int, expect: int, timeout_s: float,
                     settle_s: float = 1.0, isolation_level: str = "read_uncommitted") -> list:
    """Records of ``topic`` until ``expect`` are read (or the timeout passes), then ``settle_s``
    more, so that extra records (duplicates) show up instead of being cut off."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                isolation_level=isolation_level)
    await consumer.start()
    out: list = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while len(out) < expect and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for msgs in batches.values():
                out.extend(msgs)
        settle_until = time.monotonic() + settle_s
        while time.monotonic() < settle_until:
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(msgs)
        return out
    finally:
        await consumer.stop()


def read_topic_sync(*args, **kwargs) -> list:
    return asyncio.run(read_topic(*args, **kwargs))


def assert_stores_equal(actual: GraphStore, oracle: GraphStore, now_ms: int, rel: float = 1e-9) -> None:
    """Same nodes, same edges, same decayed weights (to ``rel``), same session histories."""
    a, o = actual.counts(), oracle.counts()
    assert a == o, f"counts differ: store {a} vs oracle {o}"
    for node_type, edge_type in (("user", "ui"), ("item", "ii"), ("user", "uu")):
        ids = oracle.node_ids(node_type)
        assert sorted(actual.node_ids(node_type)) == sorted(ids)
        for node in ids:
            got = {n.node_id: n.weight for n in actual.neighbours(node_type, node, edge_type, now_ms)}
            want = {n.node_id: n.weight for n in oracle.neighbours(node_type, node, edge_type, now_ms)}
            assert got.keys() == want.keys(), f"{edge_type} neighbours of {node} differ"
            for k, w in want.items():
                assert math.isclose(got[k], w, rel_tol=rel), f"{edge_type} {node}->{k}: {got[k]} vs {w}"
    for session in oracle.node_ids("session"):
        assert actual.session_items(session) == oracle.session_items(session)
