"""Offline recipes: train and evaluate each model on its published benchmark split.

One module per model (``srgnn``, ``lightgcn``, ``ngcf``, ``sage``, ``social``), each exposing
``train`` and ``evaluate`` for ``gnnrec train`` / ``gnnrec eval`` (``registry`` maps the names);
``results`` renders ``docs/RESULTS.md`` from the saved reports; ``stream_eval`` is the
prequential replay of ``gnnrec eval --stream``. The recipes use the library in ``models/``;
nothing in the library or the workers imports a recipe.
"""
