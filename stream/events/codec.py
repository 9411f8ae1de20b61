"""Typed, versioned event records and their JSON wire codecs.

Wire form: one UTF-8 JSON object per Kafka record value, ``"v": 1`` first, then the
fields of the record under their Python names. Optional fields that are ``None``
(``Interaction.weight``, ``Recommendation.embedding_version``) are left out by
:func:`encode`; decoders accept them missing or ``null``. A missing ``v`` means 1.
Unknown fields are ignored (forward compatibility: a v1 reader keeps working when a
producer adds a field); the published JSON Schemas (``stream/schemas/``) say the same.

The records themselves live in :mod:`stream.events.records` and the field checks in
:mod:`stream.events.checks`; this module holds the codecs and re-exports the records, so
``from stream.events import Interaction`` keeps working.

Decoders never raise on bad input: they return the record or an :class:`Invalid`
whose ``reason`` is one of :data:`REASONS` and whose ``detail`` names the field and
what is wrong with it. Validation rules (shared by encoder and decoders):

- ids are JSON strings of 1..``max_id_len`` characters with no control
  character (U+0000-U+001F, U+007F-U+009F); any other JSON type is ``wrong_type``;
- timestamps are JSON integers (``true`` and ``5.0`` are ``wrong_type``) in ms since
  the epoch, ``>= 0``; event timestamps must also be ``<= now_ms + max_future_skew_ms``;
- ``weight`` is an optional finite number ``>= 0`` and ``score`` a finite number
  (integers are accepted and become floats);
- raw payloads longer than ``max_bytes`` are rejected before parsing (``oversized``).

The only intended differences from the JSON Schemas: the schemas cannot see payload
size, ``now_ms`` or the int/float distinction of integral numbers (JSON Schema
treats ``5.0`` as an integer; the decoder does not).
"""
from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from typing import Any, Final

import orjson

from stream.events.checks import (
    check_dead_letter,
    check_follow,
    check_id,
    check_interaction,
    check_number,
    check_recommendation,
    check_source,
    json_type,
)
from stream.events.records import (
    DEFAULT_LIMITS,
    FOLLOW_OPS,
    INTERACTION_KINDS,
    REASONS,
    RECOMMENDATION_KINDS,
    SCHEMA_VERSION,
    DeadLetter,
    EventSource,
    EventValidationError,
    Follow,
    Interaction,
    Invalid,
    Recommendation,
    ScoredItem,
    ValidationLimits,
)

__all__ = [
    "DEFAULT_LIMITS", "FOLLOW_OPS", "INTERACTION_KINDS", "REASONS", "RECOMMENDATION_KINDS", "SCHEMA_VERSION",
    "DeadLetter", "EventSource", "EventValidationError", "Follow", "Interaction", "Invalid", "Recommendation", "ScoredItem",
    "ValidationLimits", "decode_dead_letter", "decode_follow", "decode_interaction", "decode_recommendation",
    "encode", "encode_recommendation_items",
]


# ---------------------------------------------------------------- encode
def _raise_if(record_type: str, bad: Invalid | None) -> None:
    if bad is not None:
        raise EventValidationError(record_type, bad)


def _encode_interaction(o: Interaction) -> bytes:
    _raise_if("Interaction", check_interaction(o.user_id, o.item_id, o.session_id, o.ts, o.kind,
                                                o.weight, DEFAULT_LIMITS.max_id_len, None))
    d = {"v": SCHEMA_VERSION, "user_id": o.user_id, "item_id": o.item_id,
         "session_id": o.session_id, "ts": o.ts, "kind": o.kind}
    if o.weight is not None:
        d["weight"] = o.weight
    return orjson.dumps(d)


def _encode_follow(o: Follow) -> bytes:
    _raise_if("Follow", check_follow(o.src_user, o.dst_user, o.ts, o.op, DEFAULT_LIMITS.max_id_len, None))
    return orjson.dumps({"v": SCHEMA_VERSION, "src_user": o.src_user, "dst_user": o.dst_user,
                         "ts": o.ts, "op": o.op})


def _encode_recommendation(o: Recommendation) -> bytes:
    fields = {"user_id": o.user_id, "session_id": o.session_id, "kind": o.kind,
              "model_version": o.model_version, "event_ts": o.event_ts, "emitted_ts": o.emitted_ts,
              "embedding_version": o.embedding_version}
    bad = check_recommendation(fields, DEFAULT_LIMITS.max_id_len)
    if bad is None and not isinstance(o.items, (tuple, list)):
        bad = Invalid("wrong_type", f"items must be a tuple of ScoredItem, got {type(o.items).__name__}")
    for i, it in enumerate(o.items if bad is None else ()):
        bad = (Invalid("wrong_type", f"items[{i}] must be a ScoredItem") if not isinstance(it, ScoredItem)
               else check_id(f"items[{i}].item_id", it.item_id, DEFAULT_LIMITS.max_id_len)
               or check_number(f"items[{i}].score", it.score, "bad_score", non_negative=False))
        if bad is not None:
            break
    _raise_if("Recommendation", bad)
    if o.embedding_version is None:
        del fields["embedding_version"]
    items = [{"item_id": it.item_id, "score": it.score} for it in o.items]
    if o.source is not None:
        src = o.source
        _raise_if("Recommendation", check_source({"topic": src.topic, "partition": src.partition,
                                                  "offset": src.offset}, DEFAULT_LIMITS.max_id_len))
        fields["source"] = {"topic": src.topic, "partition": src.partition, "offset": src.offset}
    return orjson.dumps({"v": SCHEMA_VERSION, **fields, "items": items})


def encode_recommendation_items(*, user_id: str, session_id: str | None, kind: str,
                                items: Sequence[tuple[str, float]], model_version: str, event_ts: int,
                                emitted_ts: int, embedding_version: str | None = None,
                                source: tuple[str, int, int] | None = None) -> bytes:
    """The wire form of a :class:`Recommendation` straight from ``(item_id, score)`` pairs.

    For the score worker's hot path: the header fields are checked as :func:`encode` checks
    them, the items are not — they are ids the store accepted from validated events and
    scores the worker computed — which saves building and checking ~20 objects per record.
    Same bytes as ``encode(Recommendation(...))`` for the same values; ``source`` is the
    answered event's ``(topic, partition, offset)``, as the worker read it from Kafka.
    """
    fields = {"user_id": user_id, "session_id": session_id, "kind": kind, "model_version": model_version,
              "event_ts": event_ts, "emitted_ts": emitted_ts, "embedding_version": embedding_version}
    _raise_if("Recommendation", check_recommendation(fields, DEFAULT_LIMITS.max_id_len))
    if embedding_version is None:
        del fields["embedding_version"]
    if source is not None:
        fields["source"] = {"topic": source[0], "partition": source[1], "offset": source[2]}
    return orjson.dumps({"v": SCHEMA_VERSION, **fields,
                         "items": [{"item_id": i, "score": float(sc)} for i, sc in items]})


def _encode_dead_letter(o: DeadLetter) -> bytes:
    fields = {"reason": o.reason, "detail": o.detail, "source_topic": o.source_topic,
              "partition": o.partition, "offset": o.offset, "worker": o.worker, "ts": o.ts}
    bad = check_dead_letter(fields, DEFAULT_LIMITS.max_id_len)
    if bad is None and not (isinstance(o.value, bytes) and (o.key is None or isinstance(o.key, bytes))):
        bad = Invalid("wrong_type", "key must be bytes or None and value bytes")
    _raise_if("DeadLetter", bad)
    key_b64 = None if o.key is None else base64.b64encode(o.key).decode("ascii")
    return orjson.dumps({"v": SCHEMA_VERSION, **fields, "key_b64": key_b64,
                         "value_b64": base64.b64encode(o.value).decode("ascii")})


_ENCODERS: Final = {Interaction: _encode_interaction, Follow: _encode_follow,
                    Recommendation: _encode_recommendation, DeadLetter: _encode_dead_letter}


def encode(obj: Interaction | Follow | Recommendation | DeadLetter) -> bytes:
    """Serialize a record to its v1 JSON wire form.

    Raises :class:`EventValidationError` for a record the decoders would reject (except the
    future-timestamp rule, which needs the reader's clock), and ``TypeError`` for other objects.
    """
    encoder = _ENCODERS.get(type(obj))
    if encoder is None:
        raise TypeError(f"encode() takes Interaction, Follow, Recommendation or DeadLetter, "
                        f"got {type(obj).__name__}")
    return encoder(obj)


# ---------------------------------------------------------------- decode
def _load(raw: Any, max_bytes: int | None) -> dict[str, Any] | Invalid:
    """Parse ``raw`` into a v1 JSON object, or say why not."""
    if raw is None:
        return Invalid("malformed_json", "record has no value (null / tombstone)")
    try:
        if max_bytes is not None and len(raw) > max_bytes:
            return Invalid("oversized", f"payload is {len(raw)} bytes; the limit is {max_bytes} "
                                        "(ValidationLimits.max_bytes)")
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Invalid("malformed_json", f"not valid UTF-8 JSON: {exc}")
    except TypeError:
        return Invalid("malformed_json", f"payload must be bytes, got {type(raw).__name__}")
    if type(obj) is not dict:
        return Invalid("not_an_object", f"expected a JSON object, got {json_type(obj)}")
    version = obj.get("v", SCHEMA_VERSION)
    if type(version) is not int:
        return Invalid("wrong_type", f"v must be an integer, got {json_type(version)}")
    if version != SCHEMA_VERSION:
        return Invalid("unsupported_version", f"v={version}; this reader understands v={SCHEMA_VERSION}")
    return obj


def _missing(exc: KeyError) -> Invalid:
    return Invalid("missing_field", f"required field {exc.args[0]!r} is absent")


def decode_interaction(raw: bytes, *, now_ms: int,
                       limits: ValidationLimits = DEFAULT_LIMITS) -> Interaction | Invalid:
    """Decode one interaction; ``now_ms`` (the reader's clock) bounds future timestamps."""
    obj = _load(raw, limits.max_bytes)
    if type(obj) is Invalid:
        return obj
    try:
        user_id, item_id, session_id = obj["user_id"], obj["item_id"], obj["session_id"]
        ts, kind = obj["ts"], obj["kind"]
    except KeyError as exc:
        return _missing(exc)
    weight = obj.get("weight")
    mx, max_ts = limits.max_id_len, now_ms + limits.max_future_skew_ms
    # Fast path for the common case; it may be stricter than the checks (isprintable() is
    # stricter than "no control character"), never laxer, and anything it refuses goes
    # through check_interaction, which decides.
    if not (type(user_id) is str and type(item_id) is str and type(session_id) is str
            and 0 < len(user_id) <= mx and 0 < len(item_id) <= mx and 0 < len(session_id) <= mx
            and user_id.isprintable() and item_id.isprintable() and session_id.isprintable()
            and type(ts) is int and 0 <= ts <= max_ts and type(kind) is str and kind in INTERACTION_KINDS
            and (weight is None or (type(weight) is float and 0.0 <= weight < math.inf))):
        bad = check_interaction(user_id, item_id, session_id, ts, kind, weight, mx, max_ts)
        if bad is not None:
            return bad
        if type(weight) is int:
            weight = float(weight)
    return Interaction(user_id, item_id, session_id, ts, kind, weight)


def decode_follow(raw: bytes, *, now_ms: int, limits: ValidationLimits = DEFAULT_LIMITS) -> Follow | Invalid:
    """Decode one follow/unfollow edge event."""
    obj = _load(raw, limits.max_bytes)
    if type(obj) is Invalid:
        return obj
    try:
        src, dst, ts, op = obj["src_user"], obj["dst_user"], obj["ts"], obj["op"]
    except KeyError as exc:
        return _missing(exc)
    bad = check_follow(src, dst, ts, op, limits.max_id_len, now_ms + limits.max_future_skew_ms)
    return bad if bad is not None else Follow(src, dst, ts, op)


def decode_recommendation(raw: bytes, *, max_id_len: int = DEFAULT_LIMITS.max_id_len) -> Recommendation | Invalid:
    """Decode a recommendation. Written by our own scorer, so no byte or clock limit applies."""
    obj = _load(raw, None)
    if type(obj) is Invalid:
        return obj
    try:
        fields = {k: obj[k] for k in ("user_id", "session_id", "kind", "items",
                                      "model_version", "event_ts", "emitted_ts")}
    except KeyError as exc:
        return _missing(exc)
    fields["embedding_version"] = obj.get("embedding_version")
    bad = check_recommendation(fields, max_id_len) or check_source(obj.get("source"), max_id_len)
    if bad is not None:
        return bad
    source = obj.get("source")
    raw_items = fields["items"]
    if type(raw_items) is not list:
        return Invalid("wrong_type", f"items must be an array, got {json_type(raw_items)}")
    items = []
    for i, it in enumerate(raw_items):
        if type(it) is not dict:
            return Invalid("wrong_type", f"items[{i}] must be an object, got {json_type(it)}")
        try:
            item_id, score = it["item_id"], it["score"]
        except KeyError as exc:
            return Invalid("missing_field", f"required field 'items[{i}].{exc.args[0]}' is absent")
        bad = (check_id(f"items[{i}].item_id", item_id, max_id_len)
               or check_number(f"items[{i}].score", score, "bad_score", non_negative=False))
        if bad is not None:
            return bad
        items.append(ScoredItem(item_id, float(score)))
    fields["items"] = tuple(items)
    if source is not None:
        fields["source"] = EventSource(source["topic"], source["partition"], source["offset"])
    return Recommendation(**fields)


def _b64(name: str, value: Any) -> bytes | Invalid:
    if not isinstance(value, str):
        return Invalid("wrong_type", f"{name} must be a base64 string, got {json_type(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        return Invalid("bad_base64", f"{name} is not strict base64: {exc}")


def decode_dead_letter(raw: bytes, *, max_id_len: int = DEFAULT_LIMITS.max_id_len) -> DeadLetter | Invalid:
    """Decode a dead letter. No byte limit: it carries the (possibly oversized) bad payload."""
    obj = _load(raw, None)
    if type(obj) is Invalid:
        return obj
    try:
        fields = {k: obj[k] for k in ("reason", "detail", "source_topic", "partition",
                                      "offset", "worker", "ts", "value_b64")}
    except KeyError as exc:
        return _missing(exc)
    bad = check_dead_letter(fields, max_id_len)
    if bad is not None:
        return bad
    key_b64 = obj.get("key_b64")
    key = None if key_b64 is None else _b64("key_b64", key_b64)
    value = _b64("value_b64", fields.pop("value_b64"))
    for decoded in (key, value):
        if type(decoded) is Invalid:
            return decoded
    return DeadLetter(key=key, value=value, **fields)
