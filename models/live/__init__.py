"""The online model: what turns the live graph into GNN recommendations, free of Kafka.

``train`` fits a model bundle on a graph store snapshot (LightGCN on the decayed user–item
graph, SR-GNN's session encoder and the social model over its embeddings, the priors and the
repeat policy); ``bundle`` saves, publishes and loads bundles; ``refresher`` keeps every node's
embedding fresh by local recomputation around the store's dirty nodes; ``scorer`` ranks items
for sessions and users (exact product or an hnswlib index, with the popularity and transition
priors of ``prior`` and ``transition_prior`` and the exclusions of ``repeats``); ``baselines``
are the transitions and followee recommenders every answer can fall back to; ``quality`` scores
served lists against the next click. ``engine`` runs them all in one process, without a broker,
for the prequential evaluation. The workers in ``workers/`` host these pieces.
"""
