"""Prequential (test-then-train) evaluation of streaming recommenders on timestamped data.

``gnnrec eval --stream --dataset D`` replays a dataset in time order; for every event each
system first recommends (without the event), is scored against the item actually chosen, and
then learns the event. Layers: :mod:`.datasets` (names → time-ordered events),
:mod:`.prequential` (the loop, the ``System`` protocol, HR@k/MRR@k), :mod:`.systems` (the
score worker's baselines), :mod:`.gnn_systems` (``live`` / ``static`` / ``live_no_decay`` over
the live engine), :mod:`.run` (one run → the JSON report) and :mod:`.names`. Import
the submodules: this package module stays empty so that ``gnnrec --help`` stays fast.
"""
