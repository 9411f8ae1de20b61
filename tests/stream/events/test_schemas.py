"""The published JSON Schemas agree with the decoders (encoded events are checked in test_events)."""
from __future__ import annotations

import json

import jsonschema
import orjson
import pytest

from stream import SCHEMA_DIR
from stream.events.badinput import SCHEMA_BLIND_REASONS, malformed_samples
from stream.events import DeadLetter, decode_dead_letter, decode_interaction

NOW = 1_750_000_000_000
NAMES = ["interaction", "follow", "recommendation", "dead-letter"]


def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / f"{name}.v1.json").read_text()))


@pytest.mark.parametrize("name", NAMES)
def test_schema_files_are_valid_draft_2020_12(name: str) -> None:
    schema = json.loads((SCHEMA_DIR / f"{name}.v1.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:gnnrec:schema:{name}:v1"


def test_schema_dir_holds_exactly_the_published_schemas() -> None:
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.json")) == sorted(f"{n}.v1.json" for n in NAMES)


@pytest.mark.parametrize("event", ["interaction", "follow"])
def test_schema_rejects_every_schema_level_bad_sample(event: str) -> None:
    validator = _validator(event)
    accepted = [(reason, raw[:80]) for reason, raw in malformed_samples(NOW, event=event)
                if reason not in SCHEMA_BLIND_REASONS and validator.is_valid(orjson.loads(raw))]
    assert accepted == []


@pytest.mark.parametrize("event", ["interaction", "follow"])
def test_schema_blind_samples_are_exactly_the_documented_ones(event: str) -> None:
    # Parseable schema-blind samples (size, reader's clock) pass the schema: only the decoder
    # catches them. Unparseable ones (malformed_json) cannot even be handed to a validator.
    validator = _validator(event)
    for reason, raw in malformed_samples(NOW, event=event):
        if reason == "malformed_json":
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(raw)
        elif reason in SCHEMA_BLIND_REASONS:
            assert validator.is_valid(orjson.loads(raw)), reason


def test_integral_float_is_the_documented_divergence() -> None:
    # JSON Schema counts 5.0 as an integer; the decoder does not (documented in both).
    raw = b'{"user_id":"u","item_id":"i","session_id":"s","ts":5.0,"kind":"view"}'
    assert _validator("interaction").is_valid(orjson.loads(raw))
    assert decode_interaction(raw, now_ms=NOW).reason == "wrong_type"


@pytest.mark.parametrize("change", [{"value_b64": "QUJD\n"}, {"value_b64": "QQ"}, {"key_b64": "Q!=="},
                                    {"partition": -1}, {"reason": ""}, {"worker": "w\x00"}])
def test_dead_letter_schema_and_decoder_agree(change: dict) -> None:
    good = {"v": 1, "reason": "bad_id", "detail": "d", "source_topic": "interactions", "partition": 0,
            "offset": 3, "key_b64": None, "value_b64": "QUJD", "worker": "w", "ts": 1}
    validator = _validator("dead-letter")
    assert validator.is_valid(good) and isinstance(decode_dead_letter(orjson.dumps(good)), DeadLetter)
    bad = {**good, **change}
    assert not validator.is_valid(bad)
    assert decode_dead_letter(orjson.dumps(bad)).reason in {"bad_base64", "out_of_range", "bad_id"}


@pytest.mark.parametrize("change", [{"source": {"topic": "interactions", "partition": -1, "offset": 0}},
                                    {"source": {"topic": "interactions", "partition": 0}},
                                    {"source": {"topic": "", "partition": 0, "offset": 0}},
                                    {"source": "interactions/0/5"}])
def test_recommendation_source_schema_and_decoder_agree(change: dict) -> None:
    from stream.events import EventSource, Recommendation, decode_recommendation
    good = {"v": 1, "user_id": "u", "session_id": None, "kind": "social", "items": [], "model_version": "m",
            "event_ts": 1, "emitted_ts": 2, "source": {"topic": "interactions", "partition": 3, "offset": 7}}
    validator = _validator("recommendation")
    decoded = decode_recommendation(orjson.dumps(good))
    assert validator.is_valid(good) and isinstance(decoded, Recommendation)
    assert decoded.source == EventSource("interactions", 3, 7)
    bad = {**good, **change}
    assert not validator.is_valid(bad)
    assert decode_recommendation(orjson.dumps(bad)).reason in {"out_of_range", "missing_field", "bad_id",
                                                               "wrong_type"}
