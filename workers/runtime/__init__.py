"""What every worker process shares: settings, metrics, the hosting service, replicas, decoding.

``settings`` (one frozen settings object per worker, every flag with an environment twin),
``metrics`` (Prometheus), ``health`` (the HTTP port: /metrics, /healthz, /readyz), ``runner`` (the
faust service that runs a worker loop and beats its health), ``replica``
(a worker's own copy of the graph, fed from the log), ``stores`` (opening the store a worker's
settings ask for), ``decode`` (a fetch → events, dead letters and offsets: pure),
``process_tuning`` (BLAS threads, the cyclic GC) and ``launch`` (worker subprocesses and their
``/metrics``, for the demo, benchmarks and tests).
"""
