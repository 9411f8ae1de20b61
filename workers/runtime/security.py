"""A process's Kafka security, checked against the brokers before any of its clients starts.

The clients report a refused certificate or password only as "unable to bootstrap" (a faust
worker then dies with that traceback), so workers and commands connect once first, with
:func:`stream.kafka.security.check_security`, and stop with the reason and the flag to change.
"""
from __future__ import annotations

import asyncio

from stream.kafka.security import KafkaSecurity, SecurityConfigError, check_security
from workers.runtime.settings import SettingsError, WorkerSettings, security_error


async def verified_security(settings: WorkerSettings) -> KafkaSecurity:
    """``settings.kafka_security()`` once the brokers accepted it; :class:`SettingsError`
    naming the flag and environment variable at fault if they did not."""
    security = settings.kafka_security()
    try:
        await check_security(settings.require_bootstrap(), security)
    except SecurityConfigError as exc:
        raise SettingsError(f"Kafka at {settings.bootstrap_servers} over {security.describe()}: "
                            f"{security_error(exc)}") from None
    return security


def verified_security_blocking(settings: WorkerSettings) -> KafkaSecurity:
    """:func:`verified_security` on a loop of its own: ``asyncio.run`` would leave the thread
    without a current event loop, and the faust worker that starts next takes that one."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(verified_security(settings))
    finally:
        loop.close()
