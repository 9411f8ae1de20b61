"""A catalogue of malformed event payloads, one per class of bad input.

Tests use it to check that every class maps to its documented ``Invalid.reason`` (and that
the JSON Schemas reject the schema-level ones); the demo and integration tests inject a few
into the input topics to show that bad records become dead letters, not crashes.

Each sample is ``(expected_reason, raw_bytes)``. Timestamps are relative to ``now_ms`` so
the "far future" sample stays in the future whenever the catalogue is built.
"""
from __future__ import annotations

from typing import Any, Final, Literal

import orjson

from stream.events import DEFAULT_LIMITS, ValidationLimits

#: Reasons that JSON Schema validation cannot detect: the payload is not JSON at all, or
#: the rule depends on its byte size or on the reader's clock.
SCHEMA_BLIND_REASONS: Final = frozenset({"malformed_json", "oversized", "future_timestamp"})

_DROP: Final = object()  # marks a field to delete from the valid template


def _valid_interaction(now_ms: int) -> dict[str, Any]:
    return {"v": 1, "user_id": "u1", "item_id": "i1", "session_id": "s1",
            "ts": now_ms - 1_000, "kind": "click", "weight": 1.0}


def _valid_follow(now_ms: int) -> dict[str, Any]:
    return {"v": 1, "src_user": "u1", "dst_user": "u2", "ts": now_ms - 1_000, "op": "follow"}


def _variant(template: dict[str, Any], **changes: Any) -> bytes:
    record = dict(template)
    for field, value in changes.items():
        if value is _DROP:
            del record[field]
        else:
            record[field] = value
    return orjson.dumps(record)


def _shared_samples(valid: dict[str, Any], id_field: str, now_ms: int,
                    limits: ValidationLimits) -> list[tuple[str, bytes]]:
    """Classes that apply to every input event type."""
    good = orjson.dumps(valid)
    far_future = now_ms + limits.max_future_skew_ms + 3_600_000
    return [
        ("malformed_json", good[:-5]),                                   # truncated
        ("malformed_json", b""),                                         # empty value
        ("malformed_json", good.replace(b'"u1"', b'"u\xff\xfe1"', 1)),   # not UTF-8
        ("malformed_json", b"{'user_id': 'u1'}"),                        # Python repr, not JSON
        ("not_an_object", orjson.dumps([valid])),                        # array
        ("not_an_object", b'"u1 clicked i1"'),                           # string
        ("not_an_object", b"null"),
        ("missing_field", _variant(valid, ts=_DROP)),
        ("missing_field", _variant(valid, **{id_field: _DROP})),
        ("wrong_type", _variant(valid, **{id_field: 12345})),            # numeric id
        ("wrong_type", _variant(valid, **{id_field: None})),
        ("wrong_type", _variant(valid, **{id_field: ["u1"]})),
        ("wrong_type", _variant(valid, ts=str(now_ms))),                 # ts as a string
        ("wrong_type", _variant(valid, ts=now_ms - 0.5)),                # fractional ts
        ("wrong_type", _variant(valid, ts=True)),
        ("wrong_type", _variant(valid, v="1")),
        ("bad_id", _variant(valid, **{id_field: ""})),
        ("bad_id", _variant(valid, **{id_field: "u\n1"})),               # control character
        ("bad_id", _variant(valid, **{id_field: "u\u00851"})),           # C1 control (NEL)
        ("bad_id", _variant(valid, **{id_field: "u" * (limits.max_id_len + 1)})),
        ("negative_timestamp", _variant(valid, ts=-1)),
        ("future_timestamp", _variant(valid, ts=far_future)),
        ("unsupported_version", _variant(valid, v=2)),
        # A valid event padded past the size limit with an (ignored) unknown field.
        ("oversized", _variant(valid, padding="x" * limits.max_bytes)),
    ]


def malformed_samples(now_ms: int, *, event: Literal["interaction", "follow"] = "interaction",
                      limits: ValidationLimits = DEFAULT_LIMITS) -> list[tuple[str, bytes]]:
    """Bad payloads for the ``interactions`` (default) or ``follows`` topic.

    ``now_ms`` is the reader's clock; ``limits`` the reader's limits (the oversized,
    too-long-id and far-future samples are built just past them).
    """
    if event == "interaction":
        valid = _valid_interaction(now_ms)
        return _shared_samples(valid, "user_id", now_ms, limits) + [
            ("missing_field", _variant(valid, kind=_DROP)),
            ("wrong_type", _variant(valid, kind=1)),
            ("unknown_kind", _variant(valid, kind="like")),
            ("unknown_kind", _variant(valid, kind="CLICK")),
            ("bad_weight", _variant(valid, weight=-0.5)),
            ("wrong_type", _variant(valid, weight="1.0")),
            ("wrong_type", _variant(valid, weight=False)),
        ]
    if event == "follow":
        valid = _valid_follow(now_ms)
        return _shared_samples(valid, "src_user", now_ms, limits) + [
            ("missing_field", _variant(valid, op=_DROP)),
            ("wrong_type", _variant(valid, dst_user=7)),
            ("unknown_op", _variant(valid, op="block")),
            ("wrong_type", _variant(valid, op=None)),
        ]
    raise ValueError(f"event must be 'interaction' or 'follow', got {event!r}")
