"""Shared fixtures: where the shared datasets live, and what a test does when they do not.

Missing data skips the test with where it looked, except with ``GNNREC_REQUIRE_DATA=1`` (CI),
where it is an error: a CI run must not pass by skipping every test that reads real data.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIRE_DATA_ENV = "GNNREC_REQUIRE_DATA"


def shared_data_dir() -> Path:
    return Path(os.environ.get("GNNREC_SHARED_DATA", REPO.parent / "shared" / "data"))


def data_missing(reason: str) -> NoReturn:
    """Skip with ``reason`` and how to fix it, or fail the test when data is required."""
    reason = f"{reason} (set GNNREC_SHARED_DATA to the shared datasets directory, by default ../shared/data)"
    if os.environ.get(REQUIRE_DATA_ENV, "").strip() == "1":
        pytest.fail(f"{reason} [{REQUIRE_DATA_ENV}=1, so this is an error, not a skip]", pytrace=False)
    pytest.skip(reason)


def shared_file(shared_data: Path, relative: str) -> Path:
    """``shared_data / relative``, or :func:`data_missing` when the datasets lack that file."""
    path = shared_data / relative
    if not path.exists():
        data_missing(f"{path} is absent from the shared datasets")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "README.md").exists():
        data_missing(f"shared datasets not found at {path} (no README.md there)")
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
