"""Long-running processes and the command line.

``workers`` owns the runtime around the pure parts: Kafka consumption and production, the
faust application each worker runs inside, Prometheus metrics, settings (every CLI flag has an
environment twin) and the ``gnnrec`` CLI. It depends on ``stream``, ``graph_store`` and
``models``; nothing depends on it.
"""
