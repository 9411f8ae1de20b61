"""Shared fixtures: where the shared datasets live, and a clean skip when they do not."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("GNNREC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "README.md").exists():
        pytest.skip(f"shared datasets not found at {path} (set GNNREC_SHARED_DATA to ../shared/data)")
    return path


@pytest.fixture
def one_torch_thread():
    """Torch limited to one intra-op thread for the test: two threads on the shared 2-core
    machine run the model tests ~10x slower. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
