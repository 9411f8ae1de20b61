"""Benchmarks: every ``gnnrec bench`` command, and the scripts that compare with other systems.

``ingest`` (ingest vs the raw consume limit of ``raw_consume`` vs a naive faust agent in
``naive_faust``), ``latency`` (event → recommendation through the GNN score worker), ``refresh``
(local vs full embedding recomputation), ``store_apply`` (the store's apply path alone);
``recbole/`` times our training against RecBole's (run in RecBole's own virtualenv), and
``inductive_ab`` and ``social_nofriends`` are model ablations. Each prints JSON. Run a script
as a module from the repository root: ``python -m bench.store_apply``.
"""
