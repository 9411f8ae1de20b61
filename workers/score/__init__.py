"""``gnnrec worker score``: each interaction → a next-item and a social recommendation.

:mod:`workers.score.loop` is the loop (its own replica of the graph, the baselines, sending);
:mod:`workers.score.gnn` keeps the GNN scorer in step with the published bundle and embeddings.
"""
