"""Everything that touches Kafka: the event records and their wire schemas, topic layout,
producers and consumers, broker launchers and the faust app.

``stream.events`` defines the typed, versioned records (interactions, follows,
recommendations, dead letters) with pure JSON codecs whose decoders turn bad input into an
``Invalid`` value instead of raising; ``stream/schemas/`` publishes the same contract as JSON
Schema (draft 2020-12) for outside producers, and ``stream.events.badinput`` catalogues malformed
payloads. ``stream.kafka.topics`` names the topics, their partitioning key and the consumer timeouts
every worker shares; ``stream.kafka.producer`` replays event streams into Kafka (paced or flat out)
and ``stream.kafka.tail`` tails topics in readable form. ``stream.formats`` and
``stream.simulator`` turn datasets into event streams, and ``stream.brokers`` starts and stops
local brokers (Tansu by default, Apache Kafka where compaction, transactions or exact offsets
are needed). Stateful graph logic lives in ``graph_store``; workers own the I/O loops.
"""
from pathlib import Path

#: Folder of the published JSON Schemas: ``<record>.v<version>.json``.
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
