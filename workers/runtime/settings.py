"""One frozen settings object per worker; every CLI flag has an environment-variable twin.

Precedence: command-line flag > environment variable > default. The environment name of a
field is ``GNNREC_<FIELD>`` (``--batch-max`` ↔ ``GNNREC_BATCH_MAX``); the broker address also
honours the conventional ``KAFKA_BOOTSTRAP_SERVERS``, and the security protocol and SASL
settings ``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_MECHANISM``, ``KAFKA_SASL_USERNAME`` and
``KAFKA_SASL_PASSWORD``. Passwords are ``SecretStr``: ``repr``, logs and ``--help`` never show them.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.kafka.security import KafkaSecurity, SaslMechanism, SecurityConfigError, SecurityProtocol
from stream.kafka.topics import TopicSettings

S = TypeVar("S", bound="WorkerSettings")


class SettingsError(ValueError):
    """Settings given by flags and environment that cannot work; the message names each one by
    its flag and environment variable."""


def _env(name: str, *conventional: str) -> AliasChoices:
    """The field's own name (keyword argument), ``GNNREC_<NAME>``, then conventional variables."""
    return AliasChoices(name, "GNNREC_" + name.upper(), *conventional)


class WorkerSettings(BaseSettings):
    """What every worker shares: where the broker is, topic names, metrics, logging."""

    # Errors never echo the input: it holds the environment, passwords included.
    model_config = SettingsConfigDict(frozen=True, env_prefix="GNNREC_", extra="ignore", hide_input_in_errors=True)

    bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS", "GNNREC_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers (`gnnrec demo` and `gnnrec broker` start an embedded one when unset)",
    )
    interactions_topic: str = "interactions"
    follows_topic: str = "follows"
    next_item_topic: str = "recommendations.next-item"
    social_topic: str = "recommendations.social"
    dead_letters_topic: str = "dead-letters"
    models_topic: str = Field("models", description="topic of the trained model bundles (kafka transport)")
    embeddings_topic: str = Field("embeddings", description="topic of the embedding change log and snapshots "
                                  "(kafka transport)")
    partitions: int = Field(4, ge=1, description="partitions per topic when topics are created")
    recommendation_partitions: int = Field(
        1, ge=1, description="partitions of the two recommendation topics when created (more for consumer "
        "groups of several members; on the embedded broker every extra partition costs broker CPU)")
    replication_factor: int = Field(
        1, ge=1, description="replicas of each topic when created: 1 on the embedded single broker, 3 on a "
        "3-broker cluster (with min.insync.replicas=2 a topic then survives one broker down)")
    idempotent_producers: bool = Field(
        False, description="producers with acks=all and idempotence, so a send retried after a leader change "
        "is stored once and in order (true/false); needs a broker that grants producer ids (Apache Kafka "
        "does, the embedded Tansu does not)")
    metrics_port: int = Field(0, ge=0, description="port of the Prometheus /metrics endpoint (0 = any free port)")
    metrics_host: str = "127.0.0.1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", validation_alias=_env("security_protocol", "KAFKA_SECURITY_PROTOCOL"),
        description="how every Kafka connection is made: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL")
    sasl_mechanism: SaslMechanism = Field(
        "PLAIN", validation_alias=_env("sasl_mechanism", "KAFKA_SASL_MECHANISM"),
        description="SASL mechanism of the SASL_* protocols")
    sasl_username: str | None = Field(None, validation_alias=_env("sasl_username", "KAFKA_SASL_USERNAME"),
                                      description="SASL user name")
    sasl_password: SecretStr | None = Field(
        None, validation_alias=_env("sasl_password", "KAFKA_SASL_PASSWORD"),
        description="SASL password (prefer the environment variable: a flag shows in the process list)")
    ssl_cafile: Path | None = Field(None, description="PEM file of the CAs that sign the brokers' certificates "
                                                      "(unset: the system's CAs)")
    ssl_certfile: Path | None = Field(None, description="PEM client certificate, for brokers that ask for one")
    ssl_keyfile: Path | None = Field(None, description="PEM private key of the client certificate")
    ssl_key_password: SecretStr | None = Field(None, description="password of the client key, if it has one")
    ssl_check_hostname: bool = Field(True, description="check that the broker's certificate names the host "
                                                       "connected to (true/false)")

    @model_validator(mode="after")
    def _check_security(self) -> "WorkerSettings":
        try:
            self.kafka_security()
        except SecurityConfigError as exc:
            raise ValueError(security_error(exc)) from None
        return self

    def kafka_security(self) -> KafkaSecurity:
        """How this process's Kafka clients encrypt and authenticate (stream/kafka/security.py)."""
        return KafkaSecurity(
            protocol=self.security_protocol, sasl_mechanism=self.sasl_mechanism,
            sasl_username=self.sasl_username, sasl_password=self.sasl_password, ssl_cafile=self.ssl_cafile,
            ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile, ssl_key_password=self.ssl_key_password,
            ssl_check_hostname=self.ssl_check_hostname)

    def topics(self) -> TopicSettings:
        return TopicSettings(
            interactions=self.interactions_topic, follows=self.follows_topic,
            next_item=self.next_item_topic, social=self.social_topic,
            dead_letters=self.dead_letters_topic, models=self.models_topic, embeddings=self.embeddings_topic,
            partitions=self.partitions, recommendation_partitions=self.recommendation_partitions,
            replication=self.replication_factor,
        )

    def require_bootstrap(self) -> str:
        if not self.bootstrap_servers:
            raise ValueError(
                "no Kafka broker configured: set KAFKA_BOOTSTRAP_SERVERS or pass --bootstrap-servers "
                "(`gnnrec demo` starts an embedded broker for you)"
            )
        return self.bootstrap_servers


class StoreBacked(WorkerSettings):
    """Workers that keep a graph store: where it lives and how edges decay."""

    data_dir: Path = Field(Path("data/ingest"), description="RocksDB directory of this worker's store")
    store: Literal["rocksdb", "memory"] = "rocksdb"
    half_life_hours: float = Field(168.0, gt=0, description="edge-weight half-life in event time (inf = no decay)")
    session_history: int = Field(20, ge=1, description="items remembered per session")
    group_id: str = "gnnrec-ingest"
    batch_max: int = Field(5000, ge=1, description="most records taken from Kafka per batch")
    batch_timeout_ms: int = Field(100, ge=1, description="longest wait for a batch to fill")
    max_event_bytes: int = Field(16_384, ge=64)
    max_future_skew_ms: int = Field(86_400_000, ge=0, description="events further in the future are dead-lettered")
    ready_max_lag: int = Field(10_000, ge=0, description="records behind the high watermarks (summed over the "
                               "assigned partitions) above which /readyz answers 503")
    alive_max_stall_s: float = Field(60.0, gt=1, description="seconds without a turn of the worker's event loop "
                                     "after which /healthz answers 503")


class IngestSettings(StoreBacked):
    metrics_port: int = 9101
    gc_freeze_interval_s: float = Field(600.0, gt=0, description="how often the long-lived heap is re-frozen "
                                        "out of the cyclic GC's walks (workers/runtime/process_tuning.py)")
    native: Literal["auto", "on", "off"] = Field(
        "auto", description="RocksDB store planned by the native (Rust) kernel: on, off, or auto = on when "
        "graph_store/_native is built (deploy/build_native.sh)")
    fetch_chunks: Literal["on", "off"] = Field(
        "on", description="with the native store, hand each partition's fetched record batches to the kernel "
        "whole instead of one aiokafka record per event (stream/kafka/chunks.py)")
    checkpoint_events: int = Field(
        500_000, ge=1, description="a store without a write-ahead log (the native one) is flushed to disk after "
        "this many applied events, so a crash re-reads at most about that many from Kafka")
    checkpoint_s: float = Field(
        10.0, gt=0, description="... or after this many seconds with unflushed events, whichever comes first")


class Transported(StoreBacked):
    """Workers that publish or read model bundles and embeddings: how those travel between them.

    ``kafka``: on the models and embeddings topics (workers/runtime/transport/); each worker keeps
    its own copy under its ``--data-dir`` (``models/``, ``embeddings/``) unless ``--model-dir`` /
    ``--embeddings-dir`` say where. ``local``: through ``--model-dir`` and ``--embeddings-dir``,
    directories every worker shares (one machine or one volume). ``auto`` (the default) is local
    when either directory is given and kafka otherwise, so a worker on another machine needs only
    the broker address and its own data dir.
    """

    transport: Literal["auto", "kafka", "local"] = Field(
        "auto", description="how bundles and embeddings travel: kafka (the models and embeddings topics; each "
        "worker keeps its own copy under --data-dir), local (--model-dir/--embeddings-dir shared by every worker); "
        "auto = local when --model-dir or --embeddings-dir is given, else kafka")
    topic_poll_s: float = Field(1.0, gt=0, description="kafka transport: how often the models/embeddings topics "
                                "are read, and the local bundle or embeddings checked for a version to publish")
    topic_chunk_bytes: int = Field(
        512 * 1024, ge=1024, description="kafka transport: largest blob sent as one record; bigger bundles and "
        "embedding snapshots are chunked (keep it under the broker's max.message.bytes, 1 MB by default)")

    #: Where the kafka transport keeps a worker's own copy, under its data dir.
    LOCAL_COPIES: ClassVar[dict[str, str]] = {"model_dir": "models", "embeddings_dir": "embeddings"}

    @model_validator(mode="before")
    @classmethod
    def _resolve_transport(cls, data: Any) -> Any:
        """``auto`` → kafka or local; under kafka, unset directories → the worker's own data dir."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        dirs = [name for name in cls.LOCAL_COPIES if name in cls.model_fields]
        given = [name for name in dirs if data.get(name) is not None]
        explicit = data.get("transport") not in (None, "auto")
        transport = data["transport"] if explicit else ("local" if given else "kafka")
        data["transport"] = transport
        if transport == "kafka" and cls._kafka_keeps_copies(data, explicit):
            base = Path(data.get("data_dir") or cls.model_fields["data_dir"].default)
            for name in dirs:
                if data.get(name) is None:
                    data[name] = base / cls.LOCAL_COPIES[name]
        return data

    @classmethod
    def _kafka_keeps_copies(cls, data: dict, explicit: bool) -> bool:
        """Whether this worker needs local copies under kafka transport (score: only in GNN mode)."""
        return True


class ScoreSettings(Transported):
    data_dir: Path = Path("data/score")
    store: Literal["rocksdb", "memory"] = "memory"
    group_id: str = "gnnrec-score"
    metrics_port: int = 9102
    k: int = Field(20, ge=1, description="items per recommendation")
    session_context: int = Field(5, ge=1, description="recent session items the next-item baseline looks at")
    max_followees: int = Field(50, ge=1)
    exactly_once: Literal["on", "off"] = Field(
        "off", description="each batch's recommendations and answered offsets in one Kafka transaction (brokers "
        "with transactions; readers use isolation_level=read_committed): workers/score/transactional.py")
    transactional_id: str | None = Field(
        None, description="with --exactly-once on: this worker's transactional id (default: the group id and a "
        "digest of --data-dir, stable across restarts, distinct between workers)")
    coalesce: Literal["on", "off"] = Field("on", description="when behind, answer only the latest event of each session and user "
                           "in a fetched batch (workers/score/coalesce.py)")
    coalesce_above: int = Field(200, ge=0, description="a fetched batch of more records than this counts as behind")
    model_version: str = Field("baseline-v1", description="model_version of the baseline recommendations")
    recommender: Literal["auto", "transitions", "gnn"] = Field(
        "auto", description="next-item/social model: gnn (bundle + refreshed embeddings, baselines as fallback) "
        "or transitions (baselines only); auto = gnn when --model-dir and --embeddings-dir are set or "
        "--transport kafka is given")
    model_dir: Path | None = Field(None, description="model bundles published by `gnnrec worker train` (kafka "
                                   "transport: this worker's copy, default <data-dir>/models)")
    embeddings_dir: Path | None = Field(None, description="embedding store written by `gnnrec worker refresh` "
                                        "(kafka transport: this worker's copy, default <data-dir>/embeddings)")
    embeddings_poll_s: float = Field(1.0, gt=0, description="how often the embedding store and LATEST are checked")
    ann_threshold: int = Field(50_000, ge=0, description="catalogue size above which hnswlib ranks instead of a matmul")
    quality_sessions: int = Field(100_000, ge=1, description="sessions whose last next-item list is kept for HR/MRR")
    gc_freeze_interval_s: float = Field(600.0, gt=0, description="how often the long-lived heap is re-frozen "
                                        "out of the cyclic GC's walks once caught up (workers/runtime/process_tuning.py)")

    @classmethod
    def _kafka_keeps_copies(cls, data: dict, explicit: bool) -> bool:
        recommender = data.get("recommender") or "auto"
        return recommender == "gnn" or (recommender == "auto" and explicit)

    @model_validator(mode="after")
    def _check_recommender(self) -> "ScoreSettings":
        if self.recommender == "gnn" and (self.model_dir is None or self.embeddings_dir is None):
            raise ValueError("--recommender gnn with --transport local needs --model-dir (train worker output) and "
                             "--embeddings-dir (refresh worker output); leave both unset to read them from the "
                             "models and embeddings topics, or use --recommender transitions")
        return self

    def use_gnn(self) -> bool:
        if self.recommender == "auto":
            return self.model_dir is not None and self.embeddings_dir is not None
        return self.recommender == "gnn"


class ReplicaSettings(Transported):
    """Workers that rebuild their own replica of the graph from the log and read a model directory."""

    store: Literal["rocksdb", "memory"] = "memory"
    model_dir: Path = Field(Path("data/models"), description="directory of published model bundles (local "
                            "transport: shared by train, refresh and score; kafka: this worker's copy, default "
                            "<data-dir>/models)")
    idle_poll_s: float = Field(
        0.25, ge=0, description="once caught up, seconds to wait before the next fetch (never past the next "
        "refresh or training run): fewer, larger fetches cost the broker and this worker less; 0 polls continuously")


class RefreshSettings(ReplicaSettings):
    data_dir: Path = Path("data/refresh")
    group_id: str = "gnnrec-refresh"
    metrics_port: int = 9103
    embeddings_dir: Path = Field(Path("data/embeddings"),
                                 description="RocksDB embedding store this worker writes (local transport: scorers "
                                 "read it as secondaries; kafka: default <data-dir>/embeddings)")
    embeddings_snapshot_every: int = Field(
        60, ge=1, description="kafka transport: embedding versions between two full snapshots on the embeddings "
        "topic (a new reader replays the last snapshot and the at most this many change sets after it)")
    refresh_interval_s: float = Field(5.0, gt=0, description="wall-clock seconds between refreshes")
    dense_above: float = Field(0.5, gt=0, le=1, description="affected share above which a refresh goes dense")


class TrainSettings(ReplicaSettings):
    data_dir: Path = Path("data/train")
    group_id: str = "gnnrec-train"
    metrics_port: int = 9104
    train_interval_s: float = Field(600.0, gt=0, description="wall-clock seconds between training runs")
    min_events: int = Field(1000, ge=1, description="events applied before the first training run")
    train_budget_s: float = Field(600.0, gt=0, description="seconds a training run may take; its phases stop their "
                                  "epochs to fit, and a run still going this long plus a grace period is killed")
    train_sample_edges: int = Field(250_000, ge=0, description="most recent user-item edges the first training run "
                                    "trains on (0 = the whole graph); each later run may use --train-sample-growth "
                                    "times more")
    train_sample_growth: float = Field(4.0, ge=1, description="growth of the training sample from one run to the "
                                       "next, and of the store that makes a run due before --train-interval-s "
                                       "(1 = neither)")
    dim: int = Field(32, ge=1, description="embedding size")
    num_layers: int = Field(2, ge=0, description="LightGCN layers")
    lightgcn_epochs: int = Field(30, ge=0)
    srgnn_epochs: int = Field(3, ge=0)
    social_epochs: int = Field(3, ge=0)
    seed: int = Field(0, ge=0)
    train_threads: int = Field(1, ge=1, description="torch threads of a training run")


def env_names(cls: type[BaseSettings], name: str) -> list[str]:
    """The environment variables a field is read from, in the order they are looked up."""
    alias = cls.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str) and c.isupper()]
    return ["GNNREC_" + name.upper()]


def describe_setting(name: str, cls: type[BaseSettings] = WorkerSettings) -> str:
    """``--sasl-password (env GNNREC_SASL_PASSWORD / KAFKA_SASL_PASSWORD)`` for a field name."""
    if name not in cls.model_fields:
        return name
    return f"--{name.replace('_', '-')} (env {' / '.join(env_names(cls, name))})"


def security_error(exc: SecurityConfigError) -> str:
    """A security problem, the setting at fault named by its flag and environment variables."""
    return f"{describe_setting(exc.setting)}: {exc.problem}"


def add_settings_arguments(parser: argparse.ArgumentParser, cls: type[BaseSettings]) -> None:
    """One ``--flag`` per settings field, defaulting to None so env/defaults apply underneath."""
    for name, field in cls.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = " / ".join(env_names(cls, name))
        default = field.default
        help_text = f"{field.description or name} (env {env}; default {default})"
        kwargs: dict[str, Any] = {"default": None, "help": help_text, "dest": name}
        annotation = field.annotation
        if get_origin(annotation) is Literal:
            kwargs["choices"] = list(get_args(annotation))
        parser.add_argument(flag, **kwargs)


def settings_from_args(cls: type[S], args: argparse.Namespace) -> S:
    """The settings of ``cls`` from parsed flags over the environment (see :func:`load_settings`)."""
    return load_settings(cls, **{name: getattr(args, name) for name in cls.model_fields
                                 if getattr(args, name, None) is not None})


def load_settings(cls: type[S], **given: Any) -> S:
    """``cls(**given)`` over the environment; :class:`SettingsError`, each problem named by its
    flag and environment variable, if they are invalid."""
    try:
        return cls(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            loc = [str(part) for part in error["loc"]]
            problems.append(f"{describe_setting(loc[0], cls)}: {message}" if loc else message)
        raise SettingsError("; ".join(problems)) from None
