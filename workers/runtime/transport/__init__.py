"""The kafka transport: trained bundles and embeddings between workers on topics, no shared disk.

``bundles`` publishes the train worker's bundles to the models topic and mirrors them into a
worker's own model directory; ``embeddings`` publishes the refresh worker's embedding versions
(deltas and periodic snapshots) to the embeddings topic and mirrors them into a worker's own
embedding store; ``embedding_log`` is the pure rule a mirror replays that topic by; ``hosting``
runs these parts beside a worker's loop (``--transport kafka``, the default when no shared
directory is given). The blob layout on the topics is :mod:`stream.kafka.blobs`.
"""
