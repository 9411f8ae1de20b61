"""The long-running processes, their runtime, the demo and the ``gnnrec`` command line.

One folder per role — ``ingest``, ``score``, ``train``, ``refresh`` — each with the loop its
process runs; ``runtime`` is what they share (settings with environment twins, Prometheus
metrics, the faust service that hosts a loop, the replica feed, store opening, record decoding,
process tuning, launching worker subprocesses); ``cli`` is the command line, one module per
command group; ``demo`` runs the whole pipeline. The workers host the online model of
:mod:`models.live` and read and write Kafka through :mod:`stream.kafka`; nothing below
imports this package.
"""
