"""`gnnrec bench latency --json`: event → recommendation latency of the GNN score worker.

On ``KAFKA_BOOTSTRAP_SERVERS`` or the embedded default broker (``--broker apache`` or
``tansu`` starts that one for the run, whatever the environment says): produce ``--warm-events``
simulator events as history, train one bundle in-process on that history and publish it to a
model dir, start `gnnrec worker refresh` (writes embeddings) and `gnnrec worker score`
(``--recommender gnn``) as subprocesses, wait until the score worker has replayed the history
and serves GNN recommendations, then produce at ``--rate`` events/s with live timestamps and read
both recommendation topics: first ``--warmup-seconds`` (the worker's first live seconds still
carry its start-up: the replay's backlog, first calls into torch, the first heap freeze; their
p99 is reported as ``warmup_p99_ms``), then the measured ``--seconds``.

Latency is measured per recommendation of a measured event: ``consumed`` = when this process
read it from the topic minus the event's timestamp (the whole path through Kafka twice),
``emitted`` = the score worker's send time minus the event's timestamp. Producer, broker,
both workers and this reader share the machine's cores, as they would in a one-box deployment;
``cpu_us_per_event`` says what each of them spent per measured event. On the embedded Tansu
broker (memory engine) every fetch costs in proportion to the record batches already stored in
the partitions it reads, so its share grows with the length of the run (docs/serving.md).
"""
from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import os
import tempfile
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.events import Interaction
from stream.kafka.producer import DEFAULT_LINGER_MS
from workers.runtime.launch import WorkerProcess, metric_sum
from workers.runtime.settings import WorkerSettings


def add_arguments(b) -> None:
    b.add_argument("--rate", type=float, default=float(os.environ.get("GNNREC_BENCH_RATE", 2000)),
                   help="events/s produced during the measurement (env GNNREC_BENCH_RATE)")
    b.add_argument("--seconds", type=float, default=float(os.environ.get("GNNREC_BENCH_SECONDS", 20)))
    b.add_argument("--warmup-seconds", type=float, default=float(os.environ.get("GNNREC_BENCH_WARMUP_SECONDS", 5)),
                   help="live traffic at --rate before the measured --seconds (its latencies are reported "
                        "apart, as warmup_p99_ms): the score worker's first live seconds include its start-up")
    b.add_argument("--warm-events", type=int, default=int(os.environ.get("GNNREC_BENCH_WARM_EVENTS", 20_000)),
                   help="history produced and trained on before measuring")
    b.add_argument("--recommender", choices=["gnn", "transitions"], default="gnn")
    b.add_argument("--refresh", choices=["worker", "once"], default="worker",
                   help="worker: `gnnrec worker refresh` keeps embeddings fresh; once: this process writes "
                        "one full rebuild after training (scoring cost alone, embeddings never refreshed)")
    b.add_argument("--refresh-interval-s", type=float, default=2.0)
    b.add_argument("--producer-linger-ms", type=int,
                   default=int(os.environ.get("GNNREC_BENCH_PRODUCER_LINGER_MS", DEFAULT_LINGER_MS)),
                   help="linger of the producing service this bench plays (default: EventProducer's); "
                        "on Tansu every produce request and every stored batch costs broker CPU "
                        "(env GNNREC_BENCH_PRODUCER_LINGER_MS)")
    b.add_argument("--lightgcn-epochs", type=int, default=10)
    b.add_argument("--seed", type=int, default=7)
    b.add_argument("--broker", choices=["embedded", "apache", "tansu"],
                   default=os.environ.get("GNNREC_BENCH_BROKER", "embedded"),
                   help="embedded: $KAFKA_BOOTSTRAP_SERVERS if set, else the embedded default (Apache Kafka, KRaft); "
                        "apache / tansu: start that broker for this run (env GNNREC_BENCH_BROKER)")
    b.add_argument("--window-s", type=float, default=10.0,
                   help="p99_ms_by_window: p99 of the measured events in consecutive windows of this "
                        "many seconds of event time (shows whether latency drifts during a run)")
    b.add_argument("--data-dir", type=Path, default=None, help="worker dirs and logs (default: a temp dir)")
    b.add_argument("--json", action="store_true")


def _windows(stamped: list[tuple[float, float]], start_ms: float, window_s: float) -> list[float | None]:
    """p99 latency per consecutive ``window_s`` of event time, from (event_ts, latency) pairs."""
    if not stamped or window_s <= 0:
        return []
    buckets: dict[int, list[float]] = {}
    for ts, lat in stamped:
        buckets.setdefault(int((ts - start_ms) // (window_s * 1000)), []).append(lat)
    return [_pct(buckets.get(i, []), 0.99) for i in range(max(buckets) + 1)]


def _pct(data: list[float], q: float) -> float | None:
    if not data:
        return None
    data = sorted(data)
    return round(float(data[min(len(data) - 1, int(round(q * (len(data) - 1))))]), 1)


async def _produce(bootstrap: str, settings: WorkerSettings, events: list, *, rate: float | None,
                   live_ts: bool, mark: dict | None = None, mark_at: int = 0,
                   linger_ms: int = DEFAULT_LINGER_MS) -> tuple[int, float]:
    """Send ``events`` (paced at ``rate`` if given); returns (sent, seconds) from event ``mark_at``.

    ``mark["ts"]`` / ``mark["t"]`` get the timestamp (ms) and monotonic time at which event
    ``mark_at`` is stamped: events from there on are the measured ones."""
    from stream.kafka.producer import EventProducer
    producer = EventProducer(bootstrap, settings.topics(), linger_ms=linger_ms)
    await producer.start()
    started = measured = time.monotonic()
    try:
        for i, event in enumerate(events):
            if rate:
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            marking = i == mark_at and mark is not None
            if marking:
                await asyncio.sleep(0.002)  # the first measured timestamp is later than every warm-up one
            if live_ts:
                event = dataclasses.replace(event, ts=int(time.time() * 1000))
            if marking:
                measured = time.monotonic()
                mark["ts"], mark["t"] = event.ts, measured
            await producer.send_event(event)
        await producer.flush()
    finally:
        await producer.stop()
    return len(events) - mark_at, time.monotonic() - measured


def _train_and_publish(history: list, model_dir: Path, epochs: int, seed: int, emb_dir: Path | None) -> str:
    import torch

    from graph_store import MemoryGraphStore, StoreSettings
    from models.live.bundle import publish
    from models.live.train import LiveTrainConfig, train_bundle
    torch.set_num_threads(1)
    store = MemoryGraphStore(StoreSettings())
    store.apply_many(history)
    bundle = train_bundle(store, history[-1].ts, LiveTrainConfig(lightgcn_epochs=epochs, seed=seed))
    publish(bundle, model_dir)
    if emb_dir is not None:  # --refresh once: one full rebuild, written as the refresh worker would
        from graph_store.embeddings import RocksDBEmbeddingStore
        from models.live.refresher import Refresher
        result = Refresher(bundle).rebuild(store, history[-1].ts)
        with RocksDBEmbeddingStore(emb_dir) as writer:
            for node_type, (ids, vectors) in result.rows.items():
                writer.put_many(node_type, ids, vectors, f"{result.embedding_version}/w{result.watermark_ms}")
    return bundle.version


def _proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of a process we started, from ``/proc`` (Linux only)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu(workers: dict[str, WorkerProcess], broker_pid: int | None = None) -> dict[str, float]:
    """Each worker's ``process_cpu_seconds_total`` (prometheus-client's process collector), the
    embedded broker's from ``/proc`` and this process's own."""
    out = {}
    broker = None if broker_pid is None else _proc_cpu_s(broker_pid)
    if broker is not None:
        out["broker"] = broker
    for name, w in workers.items():
        samples = w.scrape()
        if any(key.startswith("process_cpu_seconds_total") for key in samples):
            out[name] = metric_sum(samples, "process_cpu_seconds_total")
    out["bench (producer + reader)"] = time.process_time()
    return out


async def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout_s:.0f}s")
        await asyncio.sleep(0.5)


async def _bench(args, bootstrap: str, workdir: Path, broker_pid: int | None = None) -> dict:
    from stream.simulator import Simulator, SimulatorSettings
    from stream.kafka.topics import ensure_topics
    settings = WorkerSettings(bootstrap_servers=bootstrap)
    await ensure_topics(bootstrap, settings.topics())
    n_warmup, n_live = int(args.rate * args.warmup_seconds), int(args.rate * args.seconds)
    now = int(time.time() * 1000)
    sim = Simulator(SimulatorSettings(seed=args.seed))
    events = list(sim.events(start_ms=now - args.warm_events * 10, n=args.warm_events + n_warmup + n_live,
                             step_ms=10))
    history, live = events[:args.warm_events], events[args.warm_events:]
    await _produce(bootstrap, settings, history, rate=None, live_ts=False)

    model_dir, emb_dir = workdir / "models", workdir / "embeddings"
    started = time.monotonic()
    once = emb_dir if args.recommender == "gnn" and args.refresh == "once" else None
    model_version = await asyncio.to_thread(_train_and_publish, history, model_dir, args.lightgcn_epochs,
                                            args.seed, once)
    train_s = time.monotonic() - started
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    common = ["--model-dir", str(model_dir), "--metrics-port", "0"]
    workers: dict[str, WorkerProcess] = {}
    if args.recommender == "gnn" and args.refresh == "worker":
        workers["refresh"] = WorkerProcess("refresh", [*common, "--data-dir", str(workdir / "refresh"),
                                                       "--embeddings-dir", str(emb_dir),
                                                       "--refresh-interval-s", str(args.refresh_interval_s)],
                                           log_path=workdir / "refresh.log", env=env)
    workers["score"] = WorkerProcess("score", [*common, "--data-dir", str(workdir / "score"), "--embeddings-dir",
                                               str(emb_dir), "--recommender", args.recommender],
                                     log_path=workdir / "score.log", env=env)
    # As a consumer service reading recommendations would: a fetch that waits at most 10 ms for
    # records (aiokafka's default is 500 ms; the score worker uses 10 ms for the same reason).
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10)
    lat_consumed: list[float] = []
    stamped: list[tuple[float, float]] = []
    lat_emitted: list[float] = []
    lat_warmup: list[float] = []
    mark: dict = {}
    counts = {"next_item": 0, "social": 0, "gnn": 0}
    versions: set[tuple[str, str | None]] = set()
    try:
        for w in workers.values():
            w.start()
        for w in workers.values():
            await asyncio.to_thread(w.wait_ready, 180)
        score = workers["score"]
        await _wait(lambda: metric_sum(score.scrape(), "gnnrec_events_applied_total") >= len(history), 120,
                    "score worker replaying the history")
        if args.recommender == "gnn":
            await _wait(lambda: any(k.startswith("gnnrec_embedding_version_info") for k in score.scrape()), 120,
                        "score worker serving embeddings")
        await consumer.start()
        tps = [TopicPartition(t, p) for t in (settings.next_item_topic, settings.social_topic)
               for p in range(settings.topics().partitions_of(t))]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        # This process stands in for the producing and consuming services, and it holds the
        # training run's heap and every event: a full collection of it took 200-250 ms, which
        # held back the events already stamped and the reading of recommendations (measured:
        # the score worker got no input for 200 ms once or twice a run, at this process's
        # gen-2 collections). Frozen, a collection walks only what the measurement allocates.
        gc.collect()
        gc.freeze()
        warm_from = int(time.time() * 1000)
        producer = asyncio.create_task(_produce(bootstrap, settings, live, rate=args.rate, live_ts=True,
                                                mark=mark, mark_at=n_warmup,
                                                linger_ms=args.producer_linger_ms))
        expected = sum(2 if isinstance(e, Interaction) else 1 for e in live[n_warmup:])
        got, idle_since, cpu_before = 0, None, None
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
            now_ms = time.time() * 1000
            if cpu_before is None and "ts" in mark:
                cpu_before = _cpu(workers, broker_pid)  # within ~100 ms of the first measured event
            measure_from = mark.get("ts", float("inf"))
            for msgs in batches.values():
                for msg in msgs:
                    # plain JSON, not the validating decoder: this reader shares the cores it measures
                    reco = orjson.loads(msg.value)
                    if reco["event_ts"] < measure_from:
                        if reco["event_ts"] >= warm_from:
                            lat_warmup.append(now_ms - reco["event_ts"])
                        continue
                    got += 1
                    counts[reco["kind"]] += 1
                    emb_version = reco.get("embedding_version")
                    counts["gnn"] += emb_version is not None
                    versions.add((reco["model_version"], emb_version))
                    lat_consumed.append(now_ms - reco["event_ts"])
                    stamped.append((reco["event_ts"], lat_consumed[-1]))
                    lat_emitted.append(reco["emitted_ts"] - reco["event_ts"])
            if producer.done():
                idle_since = idle_since or time.monotonic()
                if got >= expected or time.monotonic() - idle_since > 30:
                    break
        sent, produce_s = producer.result()
        cpu_after = _cpu(workers, broker_pid)
        samples = score.scrape()
    finally:
        gc.unfreeze()
        await consumer.stop()
        for w in workers.values():
            await asyncio.to_thread(w.stop)
    emb = sorted(v for _, v in versions if v)
    return {
        "rate_eps": args.rate, "producer_linger_ms": args.producer_linger_ms, "achieved_rate_eps": round(sent / produce_s, 1), "seconds": args.seconds,
        "events": sent, "recommendations": got, "expected_recommendations": expected,
        "p50_ms": _pct(lat_consumed, 0.5), "p99_ms": _pct(lat_consumed, 0.99), "max_ms": _pct(lat_consumed, 1.0),
        "emitted_p50_ms": _pct(lat_emitted, 0.5), "emitted_p99_ms": _pct(lat_emitted, 0.99),
        "warmup_seconds": args.warmup_seconds, "warmup_p99_ms": _pct(lat_warmup, 0.99),
        "window_s": args.window_s, "p99_ms_by_window": _windows(stamped, mark.get("ts", 0), args.window_s),
        "gnn_share": round(counts["gnn"] / got, 4) if got else None,
        "next_item": counts["next_item"], "social": counts["social"], "recommender": args.recommender,
        "refresh": args.refresh if args.recommender == "gnn" else None,
        "model_version": model_version, "embedding_versions_seen": len(emb),
        "last_embedding_version": emb[-1] if emb else None, "warm_events": len(history),
        "train_seconds": round(train_s, 1),
        # CPU time each worker spent while the measured events went through, per measured event
        "cpu_us_per_event": {name: round((cpu_after[name] - cpu_before[name]) / sent * 1e6, 1)
                             for name in cpu_before if sent and name in cpu_after},
        "online_hr@20": {r: metric_sum(samples, "gnnrec_online_hit_rate_20", recommender=r) for r in ("gnn", "transitions")},
        "workdir": str(workdir),
    }


def _broker(kind: str, workdir: Path):
    from stream.brokers import broker_from_env_or_embedded, start_embedded
    if kind in ("apache", "tansu"):
        return start_embedded(workdir, kind=kind)
    return broker_from_env_or_embedded(log_dir=workdir)


def run(args) -> int:
    workdir = args.data_dir or Path(tempfile.mkdtemp(prefix="gnnrec-bench-latency-"))
    workdir.mkdir(parents=True, exist_ok=True)
    with _broker(args.broker, workdir) as broker:
        result = asyncio.run(_bench(args, broker.bootstrap, workdir, broker.pid))
    result["broker"] = {"tansu": "tansu", "apache": "apache-kafka"}.get(broker.name, broker.bootstrap)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0
