"""Package-level promises: no torch at import time, the public names exist, modules stay small."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import graph_store

REPO = Path(__file__).resolve().parents[2]


def test_importing_graph_store_does_not_import_torch():
    code = "import sys, graph_store; print('torch' in sys.modules, 'torch_geometric' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_public_names_are_exported():
    for name in graph_store.__all__:
        assert getattr(graph_store, name) is not None
    assert graph_store.__doc__ and "owns" in graph_store.__doc__

