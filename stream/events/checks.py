"""Field checks shared by the event encoder and decoders (rules: :mod:`stream.events`).

Each check returns ``None`` for a good value or the :class:`~stream.events.records.Invalid` naming the
field and what is wrong; the ``_check_<record>`` functions chain them in field order, so the
first bad field is the one reported.
"""
from __future__ import annotations

import math
import re
from typing import Any, Final

from stream.events.records import FOLLOW_OPS, INTERACTION_KINDS, RECOMMENDATION_KINDS, Invalid

_control_char = re.compile(r"[\x00-\x1f\x7f-\x9f]").search


JSON_TYPES: Final = {type(None): "null", bool: "boolean", int: "integer", float: "number",
                      str: "string", list: "array", dict: "object"}


def json_type(value: Any) -> str:
    # A non-JSON type name only shows up from encode(), e.g. numpy.int64.
    return JSON_TYPES.get(type(value), type(value).__name__)


def check_id(name: str, value: Any, max_len: int) -> Invalid | None:
    if not isinstance(value, str):
        return Invalid("wrong_type", f"{name} must be a string, got {json_type(value)}")
    n = len(value)
    if n == 0 or n > max_len:
        return Invalid("bad_id", f"{name} must be 1..{max_len} characters long, got {n}")
    bad = _control_char(value)
    if bad is not None:
        return Invalid("bad_id", f"{name} contains control character U+{ord(bad.group()):04X} "
                                 f"at position {bad.start()}")
    return None


def check_opt_id(name: str, value: Any, max_len: int) -> Invalid | None:
    return None if value is None else check_id(name, value, max_len)


def check_ts(name: str, value: Any, max_ts: int | None) -> Invalid | None:
    if type(value) is not int:
        return Invalid("wrong_type", f"{name} must be an integer (ms since epoch), got {json_type(value)}")
    if value < 0:
        return Invalid("negative_timestamp", f"{name} must be >= 0, got {value}")
    if max_ts is not None and value > max_ts:
        return Invalid("future_timestamp", f"{name}={value} is {value - max_ts} ms beyond now + "
                                           "allowed skew (ValidationLimits.max_future_skew_ms)")
    return None


def check_enum(name: str, value: Any, allowed: frozenset[str], reason: str) -> Invalid | None:
    if not isinstance(value, str):
        return Invalid("wrong_type", f"{name} must be a string, got {json_type(value)}")
    if value not in allowed:
        return Invalid(reason, f"{name} must be one of {', '.join(sorted(allowed))}; got {value[:40]!r}")
    return None


def check_number(name: str, value: Any, reason: str, *, non_negative: bool) -> Invalid | None:
    if type(value) is not float and type(value) is not int:
        return Invalid("wrong_type", f"{name} must be a number, got {json_type(value)}")
    if not math.isfinite(value):
        return Invalid(reason, f"{name} must be finite, got {value}")
    if non_negative and value < 0:
        return Invalid(reason, f"{name} must be >= 0, got {value}")
    return None


def check_count(name: str, value: Any) -> Invalid | None:
    if type(value) is not int:
        return Invalid("wrong_type", f"{name} must be an integer, got {json_type(value)}")
    if value < 0:
        return Invalid("out_of_range", f"{name} must be >= 0, got {value}")
    return None


def check_interaction(user_id: Any, item_id: Any, session_id: Any, ts: Any, kind: Any,
                       weight: Any, max_id_len: int, max_ts: int | None) -> Invalid | None:
    return (check_id("user_id", user_id, max_id_len)
            or check_id("item_id", item_id, max_id_len)
            or check_id("session_id", session_id, max_id_len)
            or check_ts("ts", ts, max_ts)
            or check_enum("kind", kind, INTERACTION_KINDS, "unknown_kind")
            or (None if weight is None else check_number("weight", weight, "bad_weight", non_negative=True)))


def check_follow(src: Any, dst: Any, ts: Any, op: Any, max_id_len: int, max_ts: int | None) -> Invalid | None:
    return (check_id("src_user", src, max_id_len)
            or check_id("dst_user", dst, max_id_len)
            or check_ts("ts", ts, max_ts)
            or check_enum("op", op, FOLLOW_OPS, "unknown_op"))


def check_recommendation(f: dict[str, Any], max_id_len: int) -> Invalid | None:
    return (check_id("user_id", f["user_id"], max_id_len)
            or check_opt_id("session_id", f["session_id"], max_id_len)
            or check_enum("kind", f["kind"], RECOMMENDATION_KINDS, "unknown_kind")
            or check_id("model_version", f["model_version"], max_id_len)
            or check_ts("event_ts", f["event_ts"], None)
            or check_ts("emitted_ts", f["emitted_ts"], None)
            or check_opt_id("embedding_version", f["embedding_version"], max_id_len))


def check_source(source: Any, max_id_len: int) -> Invalid | None:
    """A recommendation's optional ``source``: ``{"topic", "partition", "offset"}`` or absent."""
    if source is None:
        return None
    if type(source) is not dict:
        return Invalid("wrong_type", f"source must be an object, got {json_type(source)}")
    try:
        topic, partition, offset = source["topic"], source["partition"], source["offset"]
    except KeyError as exc:
        return Invalid("missing_field", f"required field 'source.{exc.args[0]}' is absent")
    return (check_id("source.topic", topic, max_id_len) or check_count("source.partition", partition)
            or check_count("source.offset", offset))


def check_dead_letter(f: dict[str, Any], max_id_len: int) -> Invalid | None:
    detail = f["detail"]
    return (check_id("reason", f["reason"], max_id_len)
            or (None if isinstance(detail, str)
                else Invalid("wrong_type", f"detail must be a string, got {json_type(detail)}"))
            or check_id("source_topic", f["source_topic"], max_id_len)
            or check_count("partition", f["partition"])
            or check_count("offset", f["offset"])
            or check_id("worker", f["worker"], max_id_len)
            or check_ts("ts", f["ts"], None))
