"""``gnnrec worker ingest``: interactions and follows from Kafka into the graph store, exactly once.

:mod:`workers.ingest.loop` holds the loop; the records are decoded by
:mod:`workers.runtime.decode` and, with the native store, by the Rust kernel itself.
"""
