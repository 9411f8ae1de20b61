"""LightGCN propagation kept fresh as the graph changes, without a full pass.

``graph`` holds the symmetric CSR graph (:class:`~models.incremental.graph.SymGraph`) and its
edge updates; ``local`` the full propagation, its per-layer cache and the exact local update
around the dirty nodes; ``push`` a residual-push update that trades a bounded error for
locality. Pure tensor-in, tensor-out: the refresh worker owns I/O and time.
"""
