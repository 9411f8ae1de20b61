"""The typed, versioned event records, their validation limits and the rejection value.

Frozen dataclasses without codec logic (only ``ValidationLimits`` checks its own values): the
JSON wire codecs that read and write them, and the validation rules they follow, are in
:mod:`stream.events`, which re-exports all of this.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Final

SCHEMA_VERSION: Final = 1
INTERACTION_KINDS: Final = frozenset({"view", "click", "cart", "purchase"})
FOLLOW_OPS: Final = frozenset({"follow", "unfollow"})
RECOMMENDATION_KINDS: Final = frozenset({"next_item", "social"})

#: Every ``Invalid.reason`` a decoder can return.
REASONS: Final = frozenset({
    "oversized",            # raw payload longer than ValidationLimits.max_bytes
    "malformed_json",       # not UTF-8 JSON (or no value at all: a tombstone)
    "not_an_object",        # valid JSON, but not an object
    "missing_field",        # a required field is absent
    "wrong_type",           # a field has the wrong JSON type
    "bad_id",               # an id string is empty, too long or has control characters
    "unknown_kind",         # Interaction.kind / Recommendation.kind outside its set
    "unknown_op",           # Follow.op outside {"follow", "unfollow"}
    "negative_timestamp",   # ts < 0
    "future_timestamp",     # ts > now_ms + max_future_skew_ms
    "bad_weight",           # weight negative or not finite
    "bad_score",            # score not finite
    "out_of_range",         # DeadLetter.partition / offset negative
    "bad_base64",           # DeadLetter key_b64 / value_b64 not strict base64
    "unsupported_version",  # v is an integer other than SCHEMA_VERSION
})


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """Input-defence limits for decoding events from external producers."""

    max_bytes: int = 16_384
    max_future_skew_ms: int = 86_400_000
    max_id_len: int = 256

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_future_skew_ms", "max_id_len"):
            value = getattr(self, name)
            if type(value) is not int or value < (0 if name == "max_future_skew_ms" else 1):
                raise ValueError(f"ValidationLimits.{name} must be an integer >= "
                                 f"{0 if name == 'max_future_skew_ms' else 1}, got {value!r}")


DEFAULT_LIMITS: Final = ValidationLimits()


@dataclass(frozen=True, slots=True)
class Invalid:
    """A rejected record: ``reason`` is a code from :data:`REASONS`, ``detail`` is for people."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Interaction:
    user_id: str
    item_id: str
    session_id: str
    ts: int
    kind: str
    weight: float | None = None


@dataclass(frozen=True, slots=True)
class Follow:
    src_user: str
    dst_user: str
    ts: int
    op: str


@dataclass(frozen=True, slots=True)
class ScoredItem:
    item_id: str
    score: float


@dataclass(frozen=True, slots=True)
class EventSource:
    """Where the event a recommendation answers sits in Kafka: a consumer deduplicates on it
    (with the kind) after a scorer restart answered some events twice."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Recommendation:
    user_id: str
    session_id: str | None
    kind: str
    items: tuple[ScoredItem, ...]
    model_version: str
    event_ts: int
    emitted_ts: int
    embedding_version: str | None = None
    source: EventSource | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record a worker could not use, with the original key/value bytes kept exactly."""

    reason: str
    detail: str
    source_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    worker: str
    ts: int


class EventValidationError(ValueError):
    """Raised by :func:`encode` for a record the decoders would reject."""

    def __init__(self, record_type: str, invalid: Invalid) -> None:
        super().__init__(f"cannot encode {record_type}: {invalid.reason}: {invalid.detail}")
        self.invalid = invalid
