"""Coalescing: a batch behind answers only the latest event of each session and user, and each
answer equals the one the event gets when every event is answered one by one."""
from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from stream.events import Follow, Interaction, encode
from stream.formats import read_events
from stream.kafka.batch_consumer import RawRecord
from stream.simulator import Simulator, SimulatorSettings
from workers.runtime.settings import ScoreSettings
from workers.runtime.stores import open_store
from workers.score.coalesce import superseded
from workers.score.loop import ScoreLoop

T0 = 1_700_000_000_000


def test_superseded_keeps_the_last_event_of_each_session_and_user():
    a1, b1, a2 = (Interaction("ua", "i1", "sa", T0, "click"), Interaction("ub", "i2", "sb", T0, "click"),
                  Interaction("ua", "i3", "sa", T0 + 1, "click"))
    f = Follow("ub", "ua", T0 + 2, "follow")
    a3 = Interaction("ua", "i4", "sa2", T0 + 3, "click")  # same user, a new session
    next_item, social = superseded([a1, b1, "invalid", a2, f, a3])
    assert next_item == {0}  # sa's first click; sb, sa's last and sa2 are answered
    assert social == {0, 1, 3}  # ua's last is a3, ub's last is the follow


def _loop(tmp: Path, **kw) -> ScoreLoop:
    settings = ScoreSettings(bootstrap_servers="127.0.0.1:1", data_dir=tmp, k=10, recommender="transitions", **kw)
    return ScoreLoop(settings, open_store(settings))


def _answers(pending) -> dict[tuple[int, str], list]:
    return {(p.rec.offset, o.kind): o.items for p in pending for o in p.outs}


def _check(events, tmp_path: Path, batch: int) -> tuple[int, int]:
    """Coalesced batches of ``batch`` records vs every event answered alone; returns
    (answers given coalesced, answers given one by one)."""
    records = [RawRecord("interactions" if isinstance(ev, Interaction) else "follows", 0, i, b"k", encode(ev), ev.ts)
               for i, ev in enumerate(events)]

    async def body():
        coalesced = _loop(tmp_path / "c", coalesce_above=0)
        single = _loop(tmp_path / "s", coalesce="off")
        got, want, expected = {}, {}, set()
        for start in range(0, len(records), batch):
            chunk = records[start:start + batch]
            got.update(_answers(coalesced._apply_batch(chunk)))
            skip_next, skip_social = superseded(events[start:start + batch])
            for i, ev in enumerate(events[start:start + batch]):
                if isinstance(ev, Interaction) and i not in skip_next:
                    expected.add((start + i, "next_item"))
                if i not in skip_social:
                    expected.add((start + i, "social"))
        for rec in records:
            want.update(_answers([p for p in [single._apply(rec)] if p is not None]))
        return got, want, expected

    got, want, expected = asyncio.run(body())
    assert set(got) == expected  # exactly the latest event of each session / user per batch
    for key, items in got.items():
        assert items == want[key], f"event {key} answered differently when coalesced"
    return len(got), len(want)


def test_coalesced_answers_equal_one_by_one_answers_on_the_simulator(tmp_path: Path):
    events = list(Simulator(SimulatorSettings(seed=5, n_users=80, n_items=300)).events(start_ms=T0, n=4000,
                                                                                         step_ms=20))
    given, all_ = _check(events, tmp_path, batch=400)
    assert given < 0.8 * all_  # a batch of 400 from 80 users supersedes many answers


@pytest.mark.data
def test_coalesced_answers_equal_one_by_one_answers_on_real_clicks(shared_data: Path, tmp_path: Path):
    path = shared_data / "yoochoose" / "sessionrec_100k" / "yoochoose-clicks-100k_train_full.txt"
    events = list(itertools.islice(iter(read_events(path)), 6000))
    given, all_ = _check(events, tmp_path, batch=1000)
    assert given < all_
