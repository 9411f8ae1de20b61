"""Shared fixtures of the live-embedding tests."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from graph_store import MemoryGraphStore, StoreSettings
from stream.formats import read_events
from models.live.train import LiveTrainConfig, train_bundle
from tests.conftest import shared_file

SMALL_CFG = LiveTrainConfig(dim=16, num_layers=2, lightgcn_epochs=3, srgnn_epochs=1, social_epochs=1)


@pytest.fixture(scope="module")
def trained(shared_data: Path):
    """``(store, now, bundle)``: the first 4,000 YooChoose clicks and a small bundle trained on them."""
    path = shared_file(shared_data, "yoochoose/sessionrec_100k/yoochoose-clicks-100k_train_full.txt")
    events = list(itertools.islice(iter(read_events(path)), 4000))
    store = MemoryGraphStore(StoreSettings())
    store.apply_many(events)
    now = events[-1].ts
    return store, now, train_bundle(store, now, SMALL_CFG)
