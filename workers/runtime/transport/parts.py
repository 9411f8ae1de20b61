"""What the transport hosting drives: one part per topic a worker publishes to or mirrors from."""
from __future__ import annotations

from typing import Protocol

from workers.runtime.health import Check


class TransportPart(Protocol):
    """A publisher or mirror: ``step`` does one turn and says how long to wait before the next."""

    name: str  # its readiness check's name

    async def start(self) -> None: ...
    async def step(self) -> float: ...
    async def stop(self) -> None: ...
    def close(self) -> None: ...
    def check(self) -> Check: ...


async def call_lifecycle(client: object, method: str) -> None:
    """``await client.start()`` / ``stop()`` for a sink or tail that has a lifecycle (the Kafka
    ones; the in-memory ones have none)."""
    call = getattr(client, method, None)
    if call is not None:
        await call()
