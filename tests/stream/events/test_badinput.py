"""The bad-input catalogue: every class decodes to its documented reason, never an exception."""
from __future__ import annotations

import pytest

from stream.events.badinput import malformed_samples
from stream.events import REASONS, Follow, Interaction, Invalid, ValidationLimits, decode_follow, decode_interaction

NOW = 1_750_000_000_000
DECODERS = {"interaction": decode_interaction, "follow": decode_follow}

# The classes the catalogue promises for each topic (one sample or more each).
EXPECTED_CLASSES = {
    "interaction": {"malformed_json", "not_an_object", "missing_field", "wrong_type", "bad_id", "unknown_kind",
                    "negative_timestamp", "future_timestamp", "bad_weight", "unsupported_version", "oversized"},
    "follow": {"malformed_json", "not_an_object", "missing_field", "wrong_type", "bad_id", "unknown_op",
               "negative_timestamp", "future_timestamp", "unsupported_version", "oversized"},
}


@pytest.mark.parametrize("event", ["interaction", "follow"])
def test_every_sample_decodes_to_its_reason(event: str) -> None:
    samples = malformed_samples(NOW, event=event)
    got = [(expected, DECODERS[event](raw, now_ms=NOW)) for expected, raw in samples]
    wrong = [(expected, result) for expected, result in got
             if not (isinstance(result, Invalid) and result.reason == expected)]
    assert wrong == []
    assert {expected for expected, _ in samples} == EXPECTED_CLASSES[event]
    assert {expected for expected, _ in samples} <= REASONS


@pytest.mark.parametrize("event", ["interaction", "follow"])
def test_samples_are_distinct_bytes(event: str) -> None:
    raws = [raw for _, raw in malformed_samples(NOW, event=event)]
    assert len(set(raws)) == len(raws)


def test_future_sample_is_relative_to_now() -> None:
    # Far-future at NOW, but an ordinary event for a reader whose clock is 2 days later.
    raw = dict((r, b) for r, b in malformed_samples(NOW) if r == "future_timestamp")["future_timestamp"]
    assert decode_interaction(raw, now_ms=NOW).reason == "future_timestamp"
    assert isinstance(decode_interaction(raw, now_ms=NOW + 2 * 86_400_000), Interaction)


def test_oversized_sample_is_otherwise_valid_and_follows_the_limits() -> None:
    limits = ValidationLimits(max_bytes=1_000)
    raw = dict(malformed_samples(NOW, event="follow", limits=limits))["oversized"]
    assert 1_000 < len(raw) < 16_384
    assert decode_follow(raw, now_ms=NOW, limits=limits).reason == "oversized"
    assert isinstance(decode_follow(raw, now_ms=NOW), Follow)  # unknown padding field is ignored


def test_unknown_event_type_is_refused() -> None:
    with pytest.raises(ValueError, match="interaction' or 'follow"):
        malformed_samples(NOW, event="recommendation")  # type: ignore[arg-type]
