"""A blocking Kafka Metadata probe over a raw socket, used to decide that a broker is ready.

No Kafka client is used on purpose: the probe must work inside and outside a running asyncio
loop, and must not pull a client's retry/backoff logic into a readiness loop that owns its
own deadline.

Wire layout (all integers big-endian), Metadata v4, the oldest version Kafka 4.x still
accepts (KIP-896) and one Tansu supports::

    request  = int32 size | int16 api_key=3 | int16 api_version=4 | int32 correlation_id
               | int16 len(client_id) | client_id | int32 topics=-1 (null: all topics)
               | int8 allow_auto_topic_creation=0
    response = int32 size | int32 correlation_id | int32 throttle_time_ms
               | int32 n_brokers | n_brokers * (int32 node_id | int16 len | host | int32 port
               | int16 len(rack) or -1 | rack) | int16 len(cluster_id) or -1 | cluster_id | ...
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

_METADATA_API_KEY = 3
_METADATA_VERSION = 4
_CLIENT_ID = b"gnnrec-probe"


@dataclass(frozen=True)
class MetadataReply:
    """The part of a Metadata response a readiness check needs."""

    brokers: tuple[tuple[int, str, int], ...]  # (node_id, host, port)
    cluster_id: str | None


class ProbeError(ConnectionError):
    """The broker answered, but not with a usable Metadata response."""


def encode_metadata_request(correlation_id: int) -> bytes:
    """Metadata v4 request for all topics, framed with its int32 size prefix."""
    body = struct.pack(">hhih", _METADATA_API_KEY, _METADATA_VERSION, correlation_id, len(_CLIENT_ID))
    body += _CLIENT_ID + struct.pack(">ib", -1, 0)
    return struct.pack(">i", len(body)) + body


def decode_metadata_response(payload: bytes, correlation_id: int) -> MetadataReply:
    """Parse the brokers and cluster id from a Metadata v4 response (size prefix removed)."""
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(payload):
            raise ProbeError(f"Metadata response truncated at byte {pos} of {len(payload)}")
        values = struct.unpack_from(fmt, payload, pos)
        pos += size
        return values

    def take_string() -> str | None:
        nonlocal pos
        (length,) = take(">h")
        if length < 0:
            return None
        text = payload[pos : pos + length].decode("utf-8", "replace")
        pos += length
        return text

    got_id, _throttle, n_brokers = take(">iii")
    if got_id != correlation_id:
        raise ProbeError(f"Metadata correlation id {got_id} does not match request {correlation_id}")
    if not 0 <= n_brokers <= 10_000:
        raise ProbeError(f"Metadata response claims {n_brokers} brokers; not a Metadata v4 reply")
    brokers = []
    for _ in range(n_brokers):
        (node_id,) = take(">i")
        host = take_string() or ""
        (port,) = take(">i")
        take_string()  # rack
        brokers.append((node_id, host, port))
    return MetadataReply(brokers=tuple(brokers), cluster_id=take_string())


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ProbeError("broker closed the connection before answering Metadata")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def fetch_metadata(host: str, port: int, timeout_s: float = 2.0) -> MetadataReply:
    """Send one Metadata v4 request and return the decoded reply.

    Raises ``OSError`` (connection refused, timeout) or ``ProbeError`` (bad answer).
    """
    correlation_id = 7
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(encode_metadata_request(correlation_id))
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 0 < size < 64 << 20:
            raise ProbeError(f"Metadata response size {size} is implausible")
        return decode_metadata_response(_recv_exact(sock, size), correlation_id)
