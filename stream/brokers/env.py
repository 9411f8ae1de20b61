"""Pick the broker a worker or test talks to: the one named by the environment, else Tansu."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stream.brokers.base import BrokerHandle
from stream.brokers.tansu import start_tansu

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"


@contextmanager
def broker_from_env_or_embedded(log_dir: Path | None = None) -> Iterator[BrokerHandle]:
    """Yield an ``"external"`` handle for ``$KAFKA_BOOTSTRAP_SERVERS`` (never stopped by us), or
    start an embedded Tansu (logging to ``log_dir/tansu.log`` when given) and stop it on exit."""
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        yield BrokerHandle(name="external", bootstrap=external)
        return
    log_path = Path(log_dir) / "tansu.log" if log_dir is not None else None
    handle = start_tansu(log_path=log_path)
    try:
        yield handle
    finally:
        handle.stop()
