"""`gnnrec demo`: the whole pipeline on the embedded broker (or KAFKA_BOOTSTRAP_SERVERS).

Starts the broker unless one is configured, creates the topics, starts the ingest, train,
refresh and score workers as separate processes (train publishes bundles to ``models/`` and
refresh writes embeddings to ``embeddings/`` under the demo's data dir; score serves the GNN
over them and falls back to the baselines until the first model is out), and replays events
into it: the simulator (restamped with the wall clock, a few malformed events mixed in to show
dead-lettering) or, with ``--file``, the user's own file in any supported format (its events
keep their own timestamps, so edge weights decay in the file's time). It prints progress and
sample recommendations as they arrive, and ends with a summary (``--json``: one JSON object)
after ``--events N``, at the end of the file, or on Ctrl-C.

Latency is the time from an event's produce to its recommendation's send: with the simulator,
an event's timestamp is its send time, so the demo reads it off each recommendation; a file's
events carry their own time, so the summary takes the score worker's
``gnnrec_event_to_recommendation_seconds`` histogram instead (upper bounds of its buckets).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.events import Interaction, decode_recommendation
from workers.runtime.launch import WorkerProcess, metric_sum
from workers.runtime.settings import SettingsError, WorkerSettings, load_settings

DEFAULT_PORTS = {"ingest": 9101, "score": 9102, "refresh": 9103, "train": 9104}


def _free_or_zero(port: int) -> int:
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


class Collector:
    """Reads recommendation and dead-letter topics; keeps counts, latencies and samples."""

    def __init__(self, bootstrap: str, settings: WorkerSettings, from_beginning: bool, quiet: bool,
                 event_ts_is_send_time: bool = True) -> None:
        self.settings = settings
        self.quiet = quiet
        self.from_beginning = from_beginning
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                         **settings.kafka_security().aiokafka_options())
        self.counts = {"next_item": 0, "social": 0}
        self.dead_letters = 0
        self.latencies_ms: list[float] = []
        self.event_ts_is_send_time = event_ts_is_send_time  # else a recommendation's event_ts says nothing of latency
        self.next_item_sessions: set[str] = set()
        self.gnn = 0
        self.model_version: str | None = None
        self.embedding_version: str | None = None
        self._last_shown = {"next_item": 0.0, "social": 0.0}

    async def start(self) -> None:
        await self.consumer.start()
        topics = [self.settings.next_item_topic, self.settings.social_topic, self.settings.dead_letters_topic]
        tps = [TopicPartition(t, p) for t in topics for p in range(self.settings.topics().partitions_of(t))]
        self.consumer.assign(tps)
        if self.from_beginning:
            await self.consumer.seek_to_beginning(*tps)
        else:
            await self.consumer.seek_to_end(*tps)

    async def poll(self) -> None:
        batches = await self.consumer.getmany(timeout_ms=100, max_records=10_000)
        for tp, msgs in batches.items():
            if tp.topic == self.settings.dead_letters_topic:
                self.dead_letters += len(msgs)
                continue
            for msg in msgs:
                reco = decode_recommendation(msg.value)
                if not hasattr(reco, "items"):
                    continue
                self.counts[reco.kind] += 1
                if reco.embedding_version is not None:
                    self.gnn += 1
                    self.model_version, self.embedding_version = reco.model_version, reco.embedding_version
                if self.event_ts_is_send_time:
                    self.latencies_ms.append(reco.emitted_ts - reco.event_ts)
                self._maybe_show(reco)

    def _maybe_show(self, reco) -> None:
        # One sample per kind every few seconds, so samples come from the whole run, not only
        # the cold start (where trending items fill most lists).
        now = time.monotonic()
        if self.quiet or not reco.items or now - self._last_shown[reco.kind] < 4.0:
            return
        self._last_shown[reco.kind] = now
        items = ", ".join(f"{it.item_id}:{it.score:.3g}" for it in reco.items[:5])
        where = f" session {reco.session_id}" if reco.session_id else ""
        emb = f", embeddings {reco.embedding_version}" if reco.embedding_version else ""
        print(f"  [{reco.kind}] user {reco.user_id}{where} -> {items} ... (model {reco.model_version}{emb})", flush=True)

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        data = sorted(self.latencies_ms)
        return float(data[min(len(data) - 1, int(round(q * (len(data) - 1))))])

    async def stop(self) -> None:
        await self.consumer.stop()


async def _produce(bootstrap: str, settings: WorkerSettings, args, stop: asyncio.Event, state: dict,
                   model_ready: asyncio.Event) -> None:
    from stream.events.badinput import malformed_samples
    from stream.kafka.producer import EventProducer
    producer = EventProducer(bootstrap, settings.topics(), idempotent=settings.idempotent_producers,
                             security=settings.kafka_security())
    await producer.start()
    rng = random.Random(args.seed)
    events = demo_events(args)
    restamp = args.file is None
    started = time.monotonic()
    try:
        for i, event in enumerate(events):
            if stop.is_set():
                break
            if i == args.warmup_events and i and not model_ready.is_set():
                state["waiting_since"] = time.monotonic()
                await model_ready.wait()
                state["waiting_since"] = None
                started = time.monotonic() - i / args.rate  # resume the pace from here
            ahead = (i / args.rate) - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            now_ms = int(time.time() * 1000)
            await producer.send_event(dataclasses.replace(event, ts=now_ms) if restamp else event)
            state["produced"] += 1
            state["interactions"] += isinstance(event, Interaction)
            if args.bad_every and i % args.bad_every == args.bad_every - 1:
                _, raw = rng.choice(malformed_samples(now_ms))
                await producer.send_raw(settings.interactions_topic, b"bad", raw)
                state["bad_sent"] += 1
        await producer.flush()
    finally:
        await producer.stop()
        state["producing"] = False


def demo_events(args):
    """What the demo replays: the user's ``--file`` (its own timestamps), else the simulator
    (timestamps follow the wall clock, and a season lasts a minute, so the popularity drift is
    visible within a demo run; the simulator's default season is a week of event time)."""
    if args.file is not None:
        from stream.formats import read_events
        return read_events(args.file, args.format, limit=args.events, time_step_ms=args.time_step_ms)
    from stream.simulator import Simulator, SimulatorSettings
    sim = Simulator(SimulatorSettings(seed=args.seed, season_period_ms=60_000))
    return sim.events(start_ms=int(time.time() * 1000), n=args.events or 10**9,
                      step_ms=max(1, round(1000 / args.rate)))


def _finite(value: float | None) -> float | None:
    return value if value is not None and value != float("inf") else None


def histogram_quantile(samples: dict[str, float], name: str, q: float) -> float | None:
    """Upper bound of the bucket holding quantile ``q`` of a scraped histogram (None if empty)."""
    buckets = []
    for key, value in samples.items():
        if key.startswith(name + "_bucket{"):
            le = key.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), value))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return None
    target = q * buckets[-1][1]
    return next(le for le, count in buckets if count >= target)


def quality(samples: dict[str, float]) -> dict[str, dict[str, float]]:
    """Online HR@20 / MRR@20 per recommender from the score worker's /metrics."""
    out: dict[str, dict[str, float]] = {"online_hr@20": {}, "online_mrr@20": {}}
    for rec in ("gnn", "transitions"):
        if metric_sum(samples, "gnnrec_online_scored_total", recommender=rec):
            out["online_hr@20"][rec] = round(metric_sum(samples, "gnnrec_online_hit_rate_20", recommender=rec), 4)
            out["online_mrr@20"][rec] = round(metric_sum(samples, "gnnrec_online_mrr_20", recommender=rec), 4)
    return out


def latency_ms(col: Collector, score_samples: dict[str, float]) -> dict[str, float | None]:
    """p50/p99 event → recommendation: read off the recommendations when event times are send
    times, else the upper bounds of the score worker's histogram buckets."""
    if col.event_ts_is_send_time:
        return {"p50": col.percentile(0.5), "p99": col.percentile(0.99)}
    name = "gnnrec_event_to_recommendation_seconds"
    return {q: None if (v := histogram_quantile(score_samples, name, x)) is None else v * 1000
            for q, x in (("p50", 0.5), ("p99", 0.99))}


def _status_line(state: dict, col: Collector, ingest: WorkerProcess, score: WorkerProcess) -> str:
    applied = metric_sum(ingest.scrape(), "gnnrec_events_applied_total")
    samples = score.scrape()
    lat = latency_ms(col, samples)
    p50, p99 = lat["p50"], lat["p99"]
    bound = "" if col.event_ts_is_send_time else "<= "
    lat = f"p50 {bound}{p50:.0f} ms  p99 {bound}{p99:.0f} ms" if p50 is not None else "latency n/a"
    stale = histogram_quantile(samples, "gnnrec_embedding_staleness_seconds", 0.5)
    hr = quality(samples)["online_hr@20"]
    gnn = (f"  gnn {col.gnn:>7}  staleness p50 <= {stale:g} s" if stale is not None else "  gnn    n/a") + \
        "".join(f"  HR@20 {k} {v:.3f}" for k, v in hr.items())
    return (f"produced {state['produced']:>7}  ingested {int(applied):>7}  next-item {col.counts['next_item']:>7}  "
            f"social {col.counts['social']:>7}  dead-letters {col.dead_letters:>4}  {lat}{gnn}")


async def _run(args, bootstrap: str, embedded: bool, workdir: Path, broker_name: str = "") -> dict:
    from stream.kafka.topics import ensure_topics
    from workers.runtime.security import verified_security
    settings = WorkerSettings(bootstrap_servers=bootstrap)
    await ensure_topics(bootstrap, settings.topics(), security=await verified_security(settings))
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    models, embeddings = ["--model-dir", str(workdir / "models")], ["--embeddings-dir", str(workdir / "embeddings")]
    # Small, frequent trainings so a model is out within the first seconds of the demo.
    extra = {"ingest": [], "score": [*models, *embeddings],
             "refresh": [*models, *embeddings, "--refresh-interval-s", "2"],
             "train": [*models, "--min-events", "2000", "--train-interval-s", "60", "--lightgcn-epochs", "10"]}
    workers = {
        name: WorkerProcess(name, ["--data-dir", str(workdir / name), "--metrics-port",
                                   str(_free_or_zero(DEFAULT_PORTS[name])), *extra[name]],
                            log_path=workdir / f"{name}.log", env=env).start()
        for name in ("ingest", "train", "refresh", "score")
    }
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))
    col = Collector(bootstrap, settings, from_beginning=embedded, quiet=args.json,
                    event_ts_is_send_time=args.file is None)
    state = {"produced": 0, "interactions": 0, "bad_sent": 0, "producing": True, "waiting_since": None}
    stop = asyncio.Event()
    model_ready = asyncio.Event()
    try:
        for w in workers.values():
            await asyncio.to_thread(w.wait_ready, 120)
        for name, w in workers.items():
            say(f"worker {name}: metrics at {w.metrics_url}  (log {w.log_path})")
        await col.start()
        what = "the simulator" if args.file is None else f"{args.file}"
        say(f"replaying {what} at {args.rate:.0f} events/s into {bootstrap}; Ctrl-C stops")
        producer = asyncio.create_task(_produce(bootstrap, settings, args, stop, state, model_ready))
        last_line, drained_since, last_check, coalesced = 0.0, None, 0.0, 0.0
        try:
            while True:
                await col.poll()
                waiting = state["waiting_since"]
                if waiting is not None and time.monotonic() - last_check >= 1.0:
                    last_check = time.monotonic()
                    served = metric_sum(await asyncio.to_thread(workers["score"].scrape),
                                        "gnnrec_embedding_version_info")
                    if served > 0:
                        say("first model trained, refreshed and served: streaming on")
                        model_ready.set()
                    elif time.monotonic() - waiting > args.warmup_timeout_s:
                        say(f"no model served after {args.warmup_timeout_s:.0f} s: streaming on with the "
                            f"baselines (see {workers['train'].log_path})")
                        model_ready.set()
                    elif time.monotonic() - last_line >= 2.0:
                        say(f"waiting for the first model (train → refresh → score) after "
                            f"{args.warmup_events} events ...")
                if time.monotonic() - last_line >= 2.0:
                    last_line = time.monotonic()
                    say(_status_line(state, col, workers["ingest"], workers["score"]))
                if producer.done():
                    producer.result()
                    if time.monotonic() - last_check >= 1.0:  # a burst answers only each session's latest click
                        last_check = time.monotonic()
                        coalesced = metric_sum(await asyncio.to_thread(workers["score"].scrape),
                                               "gnnrec_events_coalesced_total", kind="next_item")
                    done = col.counts["next_item"] + coalesced >= state["interactions"]
                    drained_since = drained_since or time.monotonic()
                    if done or time.monotonic() - drained_since > 30:
                        break
        except (KeyboardInterrupt, asyncio.CancelledError):
            # Ctrl-C: stop producing, then still collect and print the summary.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            stop.set()
            await asyncio.shield(producer)
        samples = workers["ingest"].scrape()
        applied = metric_sum(samples, "gnnrec_events_applied_total")
        dead_counted = metric_sum(samples, "gnnrec_dead_letters_total")
        await asyncio.sleep(0.5)
        await col.poll()
        score_samples = workers["score"].scrape()
    finally:
        await col.stop()
        for w in workers.values():
            await asyncio.to_thread(w.stop)
    return {
        "events_produced": state["produced"] + state["bad_sent"],
        "events_ingested": int(applied),
        "malformed_sent": state["bad_sent"],
        "dead_letters": col.dead_letters,
        "dead_letters_counted": int(dead_counted),
        "recommendations": dict(col.counts),
        # Events not answered because a later click of the same session in the same batch was.
        "coalesced": {kind: int(metric_sum(score_samples, "gnnrec_events_coalesced_total", kind=kind))
                      for kind in ("next_item", "social")},
        "latency_ms": latency_ms(col, score_samples),
        "source": "simulator" if args.file is None else str(args.file),
        "gnn_recommendations": col.gnn,
        "model_version": col.model_version,
        "embedding_version": col.embedding_version,
        **quality(score_samples),
        # Above the last bucket (a file replayed faster than its own time passes) is reported as None.
        "staleness_p50_s": _finite(histogram_quantile(score_samples, "gnnrec_embedding_staleness_seconds", 0.5)),
        "metrics": {name: w.metrics_url for name, w in workers.items()},
        "broker": f"embedded-{broker_name}" if embedded else bootstrap,
        "workdir": str(workdir),
    }


def run(args) -> int:
    from stream.brokers import broker_from_env_or_embedded
    if args.bad_every is None:
        args.bad_every = 500 if args.file is None else 0
    if args.file is not None:
        from stream.formats import FormatError
        try:  # a file that cannot be read fails here, before any broker or worker starts
            demo_events(args)
        except (FormatError, FileNotFoundError, ValueError) as exc:
            print(f"gnnrec demo: {exc}", file=sys.stderr)
            return 2
    from stream.brokers.env import BOOTSTRAP_ENV
    security = load_settings(WorkerSettings).security_protocol  # the workers read the same environment
    if security != "PLAINTEXT" and not os.environ.get(BOOTSTRAP_ENV, "").strip():
        raise SettingsError(f"the embedded broker is plaintext on loopback, but the security protocol is {security} "
                            "(GNNREC_SECURITY_PROTOCOL / KAFKA_SECURITY_PROTOCOL): unset it and the SASL and SSL "
                            f"settings, or set {BOOTSTRAP_ENV} to a broker that speaks {security}")
    workdir = args.data_dir or Path(tempfile.mkdtemp(prefix="gnnrec-demo-"))
    with broker_from_env_or_embedded(log_dir=workdir) as broker:
        embedded = broker.name != "external"
        if not args.json:
            print(f"broker: {broker.name} at {broker.bootstrap}", flush=True)
        try:
            summary = asyncio.run(_run(args, broker.bootstrap, embedded, workdir, broker.name))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    if args.json:
        print(json.dumps(summary))
    else:
        print("summary:\n" + json.dumps(summary, indent=2))
    return 0
