"""Kafka in a Docker container through testcontainers, for machines that run a Docker engine.

Without an engine, ``KafkaContainer()`` fails in its constructor; we ping the engine first (2 s
timeout) so the caller gets a :class:`BrokerUnavailable` that names the socket that was tried.
"""
from __future__ import annotations

import os

from stream.brokers.base import BrokerHandle, BrokerUnavailable

DEFAULT_IMAGE = "confluentinc/cp-kafka:7.6.0"  # testcontainers' KafkaContainer is written for it


def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _ping_docker() -> None:
    try:
        import docker
    except ImportError as exc:
        raise BrokerUnavailable(
            "the `docker` Python package is missing; install the test extra (`pip install -e .[test]`)"
        ) from exc
    try:
        client = docker.from_env(timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # docker raises DockerException, requests errors, OSError...
        raise BrokerUnavailable(
            f"no Docker engine answered at {_docker_host()}: {exc}. Start Docker (or set "
            "DOCKER_HOST), or use the embedded brokers (start_tansu / start_apache_kafka)"
        ) from exc


def start_testcontainers_kafka(image: str = DEFAULT_IMAGE) -> BrokerHandle:
    """Start Kafka (KRaft) in a container; raises :class:`BrokerUnavailable` within ~2 s without Docker."""
    _ping_docker()
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers < 4.10 only has the deprecated top-level module
        from testcontainers.kafka import KafkaContainer
    container = KafkaContainer(image=image).with_kraft()
    try:
        container.start()
    except Exception as exc:
        raise BrokerUnavailable(f"the Kafka container ({image}) did not start: {exc}") from exc

    def stop(timeout_s: float) -> None:
        container.stop()

    return BrokerHandle(name="testcontainers", bootstrap=container.get_bootstrap_server(), _stopper=stop)
