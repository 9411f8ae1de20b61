"""TLS and SASL end to end: Apache Kafka with a SASL_SSL listener (certificates made here with
keytool), the CLI and worker processes configured only by environment variables, and the
client libraries (aiokafka, kafka-python, faust inside the workers) over PLAIN and SCRAM-SHA-512.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr

from stream.brokers import BrokerHandle, BrokerUnavailable, start_apache_kafka
from stream.brokers.sasl_ssl import SaslSslListener
from stream.kafka.client import EventPublisher, RecommendationReader
from stream.kafka.producer import EventProducer
from stream.kafka.security import KafkaSecurity
from stream.kafka.topics import TopicSettings
from workers.runtime.launch import WorkerProcess, metric_sum

from tests.integration.certs import BrokerCertificates, make_certificates
from tests.integration.conftest import REPO, unavailable
from tests.integration.pipeline_support import committed_total, wait_for, worker_env

USER = "alice"
PASSWORD = "alice-Secret-42"
MECHANISMS = ("PLAIN", "SCRAM-SHA-512")


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerHandle, BrokerCertificates]]:
    work = tmp_path_factory.mktemp("sasl-ssl")
    try:
        certs = make_certificates(work / "certs")
        listener = SaslSslListener(certs.keystore, certs.password, {USER: SecretStr(PASSWORD)})
        handle = start_apache_kafka(log_path=work / "apache-kafka-sasl-ssl.log", sasl_ssl=listener)
    except (BrokerUnavailable, RuntimeError) as exc:
        unavailable(f"Apache Kafka with a SASL_SSL listener unavailable: {exc}")
    yield handle, certs
    handle.stop()


def _security_env(certs: BrokerCertificates, mechanism: str, password: str = PASSWORD) -> dict[str, str]:
    return {"GNNREC_SECURITY_PROTOCOL": "SASL_SSL", "GNNREC_SASL_MECHANISM": mechanism,
            "GNNREC_SASL_USERNAME": USER, "GNNREC_SASL_PASSWORD": password, "GNNREC_SSL_CAFILE": str(certs.ca_pem)}


def _topic_settings(unique_topics) -> TopicSettings:
    return TopicSettings(interactions=unique_topics("interactions"), follows=unique_topics("follows"),
                         next_item=unique_topics("next-item"), social=unique_topics("social"),
                         dead_letters=unique_topics("dead-letters"))


def _gnnrec(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], env={**os.environ, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_cli_and_workers_work_over_sasl_ssl(secure_broker, mechanism, unique_topics, tmp_path: Path) -> None:
    broker, certs = secure_broker
    topics = _topic_settings(unique_topics)
    security = KafkaSecurity("SASL_SSL", mechanism, USER, SecretStr(PASSWORD), ssl_cafile=certs.ca_pem)
    secure = _security_env(certs, mechanism)
    env = {**worker_env(broker.bootstrap, unique_topics, "unused", tmp_path), **secure}

    created = _gnnrec("topics", env=env)
    assert created.returncode == 0, created.stderr[-3000:]

    workers = {name: WorkerProcess(name, [], log_path=tmp_path / f"{name}.log", env={
        **env, "GNNREC_GROUP_ID": unique_topics(name), "GNNREC_DATA_DIR": str(tmp_path / name)}).start()
        for name in ("ingest", "score")}
    try:
        for worker in workers.values():
            worker.wait_ready(120)
        now = int(time.time() * 1000)
        items = ["i1", "i2", "i3"]
        # kafka-python publishes and reads; the workers consume and produce through aiokafka.
        with RecommendationReader(broker.bootstrap, topics, security=security) as reader, \
                EventPublisher(broker.bootstrap, topics, security=security) as events:
            for n, item in enumerate(items):
                events.click("u-secure", item, session_id="s-secure", ts=now + n)
            events.flush()
            asyncio.run(_send_malformed(broker.bootstrap, topics, security))
            rec = reader.wait_for("u-secure", "next_item", newer_than_ts=now + len(items) - 1, timeout_s=90)
        assert rec is not None, f"no recommendation over SASL_SSL; score log:\n{workers['score'].log_tail()}"
        assert rec.session_id == "s-secure" and rec.event_ts == now + len(items) - 1
        ingest = workers["ingest"]
        wait_for(lambda: committed_total(ingest, topics.interactions) == len(items) + 1, 60,
                 "the ingest worker to store every record")
        # The ingest worker's dead letter went out through its own producer, over SASL_SSL.
        assert metric_sum(ingest.scrape(), "gnnrec_dead_letters_total") == 1
        assert metric_sum(ingest.scrape(), "gnnrec_events_applied_total") == len(items)
    finally:
        for worker in workers.values():
            worker.stop()


async def _send_malformed(bootstrap: str, topics: TopicSettings, security: KafkaSecurity) -> None:
    async with EventProducer(bootstrap, topics, security=security) as producer:
        await producer.send_raw(topics.interactions, b"u-secure", b"{not json")


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_wrong_password_stops_the_cli_naming_the_setting(secure_broker, mechanism, unique_topics,
                                                           tmp_path: Path) -> None:
    broker, certs = secure_broker
    env = {**worker_env(broker.bootstrap, unique_topics, "unused", tmp_path),
           **_security_env(certs, mechanism, password="not-the-password")}
    done = _gnnrec("topics", env=env)
    assert done.returncode == 2
    assert "--sasl-password (env GNNREC_SASL_PASSWORD" in done.stderr
    assert f"refused {mechanism} authentication as '{USER}'" in done.stderr
    assert "not-the-password" not in done.stderr + done.stdout


def test_a_worker_with_a_wrong_password_exits_naming_the_setting(secure_broker, unique_topics, tmp_path) -> None:
    broker, certs = secure_broker
    env = {**worker_env(broker.bootstrap, unique_topics, unique_topics("ingest"), tmp_path / "ingest"),
           **_security_env(certs, "SCRAM-SHA-512", password="not-the-password")}
    done = _gnnrec("worker", "ingest", env=env)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "gnnrec worker ingest:" in done.stderr and "--sasl-password (env GNNREC_SASL_PASSWORD" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_untrusted_broker_certificate_names_the_ca_setting(secure_broker, unique_topics, tmp_path) -> None:
    broker, certs = secure_broker
    env = {**worker_env(broker.bootstrap, unique_topics, "unused", tmp_path), **_security_env(certs, "PLAIN")}
    del env["GNNREC_SSL_CAFILE"]  # the system's CAs never signed the test CA
    done = _gnnrec("topics", env=env)
    assert done.returncode == 2
    assert "--ssl-cafile (env GNNREC_SSL_CAFILE)" in done.stderr and "not trusted" in done.stderr


def test_a_plaintext_client_cannot_read(secure_broker) -> None:
    broker, _ = secure_broker

    async def plaintext_read() -> None:
        consumer = AIOKafkaConsumer("interactions", bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)
        try:
            await consumer.start()
        finally:
            await consumer.stop()

    with pytest.raises(KafkaConnectionError):
        asyncio.run(plaintext_read())
