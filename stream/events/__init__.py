"""Typed, versioned event records and their JSON wire codecs: the contract with producers.

``records`` defines the records (:class:`Interaction`, :class:`Follow`, :class:`Recommendation`,
:class:`DeadLetter`) and the validation limits; ``checks`` the field checks shared by encoder
and decoders; ``codec`` the encoders and the decoders, which turn bad input into an
:class:`Invalid` value instead of raising; ``fast_decode`` a batch decoder of interactions that
returns exactly what ``codec`` returns, faster; ``badinput`` a catalogue of malformed payloads
(the demo and the tests send them). ``stream/schemas/`` publishes the same contract as JSON
Schema. Everything public is importable from here.
"""
from stream.events.codec import (
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
    decode_dead_letter,
    decode_follow,
    decode_interaction,
    decode_recommendation,
    encode,
    encode_recommendation_items,
)

__all__ = [
    "DEFAULT_LIMITS", "FOLLOW_OPS", "INTERACTION_KINDS", "REASONS", "RECOMMENDATION_KINDS", "SCHEMA_VERSION",
    "DeadLetter", "EventSource", "EventValidationError", "Follow", "Interaction", "Invalid", "Recommendation", "ScoredItem",
    "ValidationLimits", "decode_dead_letter", "decode_follow", "decode_interaction", "decode_recommendation",
    "encode", "encode_recommendation_items",
]
