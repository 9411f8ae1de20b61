"""Replay readers: hand-computed values on tiny files, exact counts from the shared-data
README on the real files, time order, and FormatError naming file and line on bad input."""
from __future__ import annotations

import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from stream.events import Follow, Interaction
from stream.formats import FORMATS, FormatError, detect_format, read_events

DAY = 86_400_000


def _ms(*ymd_hms: int) -> int:
    return int(datetime(*ymd_hms, tzinfo=timezone.utc).timestamp() * 1000)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _assert_time_ordered(events: list) -> None:
    keys = [(e.ts, 0 if isinstance(e, Follow) else 1) for e in events]
    assert keys == sorted(keys), "events must come in (ts, follows first) order"


# ----------------------------------------------------------------------------- tiny files


def test_yoochoose_prepared_tsv_is_sorted_and_converted(tmp_path: Path) -> None:
    f = _write(tmp_path / "clicks.txt", "SessionId\tItemId\tTime\n"
               "3\t214716935\t1396437466.94\n1\t214536502\t1396437400.0005\n3\t214832672\t1396438212.318\n")
    assert detect_format(f) == "yoochoose"
    assert list(read_events(f)) == [
        Interaction("1", "214536502", "1", 1_396_437_400_000, "click"),  # .0005 s rounds to 0 ms
        Interaction("3", "214716935", "3", 1_396_437_466_940, "click"),
        Interaction("3", "214832672", "3", 1_396_438_212_318, "click"),
    ]


def test_yoochoose_raw_recsys15_clicks(tmp_path: Path) -> None:
    f = _write(tmp_path / "yoochoose-clicks.dat",
               "1,2014-04-07T10:54:09.868Z,214536500,0\n1,2014-04-07T10:51:09.277Z,214536502,S\n")
    assert detect_format(f) == "yoochoose"
    assert [(e.item_id, e.ts) for e in read_events(f)] == [
        ("214536502", _ms(2014, 4, 7, 10, 51, 9) + 277), ("214536500", _ms(2014, 4, 7, 10, 54, 9) + 868)]


def test_diginetica_user_fallback_and_time(tmp_path: Path) -> None:
    f = _write(tmp_path / "train-item-views.csv", "sessionId;userId;itemId;timeframe;eventdate\n"
               "1;NA;81766;526309;2016-05-09\n2;42;31331;1031;2016-05-08\n")
    assert detect_format(f) == "diginetica"
    assert list(read_events(f)) == [
        Interaction("42", "31331", "2", _ms(2016, 5, 8) + 1031, "view"),
        Interaction("s1", "81766", "1", _ms(2016, 5, 9) + 526_309, "view"),
    ]


def test_movielens_ratings_become_weighted_clicks_with_day_sessions(tmp_path: Path) -> None:
    f = _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,10,4.0,86399\n")
    assert detect_format(f) == detect_format(tmp_path) == "movielens"
    assert list(read_events(f)) == [
        Interaction("1", "10", "1@1970-01-01", 86_399_000, "click", 4.0),
        Interaction("1", "31", "1@2009-12-14", 1_260_759_144_000, "click", 2.5),
    ]


def test_ciao_trust_follows_land_at_the_first_rating_of_their_source(tmp_path: Path) -> None:
    t0 = 1_000_000_000  # Unix seconds (2001)
    rating = np.array([[1, 100, 3, 4, 5, t0 + 2_000], [2, 101, 3, 5, 5, t0 + 1_000], [1, 102, 3, 2, 5, t0 + 1_500]])
    scipy.io.savemat(tmp_path / "toy_rating.mat", {"rating": rating})
    scipy.io.savemat(tmp_path / "toy_trust.mat", {"trust": np.array([[1, 2], [9, 1]])})
    reader = read_events(tmp_path / "toy_rating.mat")
    events = list(reader)
    ms = 1000 * t0
    assert events == [
        Follow("9", "1", ms + 1_000_000, "follow"),  # user 9 never rated: dataset start
        Interaction("2", "101", "2@2001-09-09", ms + 1_000_000, "click", 5.0),
        Follow("1", "2", ms + 1_500_000, "follow"),
        Interaction("1", "102", "1@2001-09-09", ms + 1_500_000, "click", 2.0),
        Interaction("1", "100", "1@2001-09-09", ms + 2_000_000, "click", 4.0),
    ]
    assert (reader.stats.rows, reader.stats.follows, reader.stats.yielded) == (3, 2, 5)
    assert reader.stats.follow_times == "first_interaction"


def _coarse_ciao(folder: Path) -> None:
    """Ratings in three coarse steps, trust dated in steps too (the third column)."""
    rating = np.array([[u, 100 + u * 10 + k, 1, 4, 5, step] for step in (1, 2, 3) for u in (1, 2, 3, 4)
                       for k in range(2)])
    trust = np.array([[1, 2, 1], [2, 3, 1], [3, 4, 2], [4, 1, 3]])
    scipy.io.savemat(folder / "epinion_rating_with_timestamp.mat", {"rating": rating})
    scipy.io.savemat(folder / "epinion_trust_with_timestamp.mat", {"trust": trust})


def test_ciao_coarse_time_steps_are_refused_with_the_option_that_maps_them(tmp_path: Path) -> None:
    _coarse_ciao(tmp_path)
    with pytest.raises(FormatError, match=r"3 distinct values from 1 to 3: coarse time steps.*--time-step-ms"):
        read_events(tmp_path / "epinion_rating_with_timestamp.mat")
    day = 86_400_000
    reader = read_events(tmp_path / "epinion_rating_with_timestamp.mat", time_step_ms=day)
    events = list(reader)
    assert {e.ts for e in events} == {day, 2 * day, 3 * day}
    assert reader.stats.time_steps == 3 and reader.stats.follow_times == "own"
    follows = [e for e in events if isinstance(e, Follow)]
    assert [(f.src_user, f.dst_user, f.ts) for f in follows] == [("1", "2", day), ("2", "3", day),
                                                                 ("3", "4", 2 * day), ("4", "1", 3 * day)]
    assert [e.ts for e in events] == sorted(e.ts for e in events)


def test_ciao_follows_dated_by_the_file_interleave_so_a_prefix_holds_both_kinds(tmp_path: Path) -> None:
    _coarse_ciao(tmp_path)
    path = tmp_path / "epinion_rating_with_timestamp.mat"
    step1 = list(read_events(path, time_step_ms=1000, limit=10))  # step 1: 8 ratings, 2 follows
    assert sum(isinstance(e, Follow) for e in step1) == 2
    first_half = step1[:5]
    assert any(isinstance(e, Follow) for e in first_half) and any(isinstance(e, Interaction) for e in first_half)
    ratings = [(e.user_id, e.item_id) for e in step1 if isinstance(e, Interaction)]
    assert ratings == [(str(u), str(100 + u * 10 + k)) for u in (1, 2, 3, 4) for k in range(2)]  # file order kept


def test_a_time_step_for_real_times_is_refused(tmp_path: Path) -> None:
    rating = np.array([[1, 100, 3, 4, 5, 1_300_000_000]])
    scipy.io.savemat(tmp_path / "x_rating.mat", {"rating": rating})
    with pytest.raises(FormatError, match="holds Unix seconds"):
        read_events(tmp_path / "x_rating.mat", time_step_ms=1000)
    f = _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n")
    with pytest.raises(ValueError, match="movielens files carry real times"):
        read_events(f, time_step_ms=1000)


def test_lastfm_merges_tags_drops_pre_epoch_dates_and_counts_them(tmp_path: Path) -> None:
    _write(tmp_path / "user_taggedartists.dat", "userID\tartistID\ttagID\tday\tmonth\tyear\n"
           "2\t52\t13\t1\t4\t2009\n2\t52\t15\t1\t4\t2009\n2\t52\t15\t1\t5\t2009\n"
           "3\t7\t1\t1\t9\t1956\n3\t8\t1\t1\t3\t1979\n")
    _write(tmp_path / "user_friends.dat", "userID\tfriendID\n2\t3\n3\t2\n4\t2\n")
    reader = read_events(tmp_path)
    assert list(reader) == [
        Follow("3", "2", _ms(1979, 3, 1), "follow"),
        Follow("4", "2", _ms(1979, 3, 1), "follow"),  # user 4 never tagged: dataset start
        Interaction("3", "8", "3@1979-03-01", _ms(1979, 3, 1), "click"),  # odd but valid: kept
        Follow("2", "3", _ms(2009, 4, 1), "follow"),
        Interaction("2", "52", "2@2009-04-01", _ms(2009, 4, 1), "click"),
        Interaction("2", "52", "2@2009-05-01", _ms(2009, 5, 1), "click"),
    ]
    s = reader.stats
    assert (s.rows, s.interactions, s.merged_rows, s.dropped_pre_epoch, s.follows) == (5, 3, 1, 1, 3)


def test_limit_takes_a_time_ordered_prefix(tmp_path: Path) -> None:
    f = _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n"
               + "".join(f"1,{i},3.0,{1000 - i}\n" for i in range(50)))
    full = list(read_events(f))
    assert list(read_events(f, limit=7)) == full[:7]
    assert [e.item_id for e in full[:3]] == ["49", "48", "47"]
    with pytest.raises(ValueError, match="limit"):
        read_events(f, limit=-1)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("name", "text", "line", "what"), [
    ("yoochoose-clicks.txt", "SessionId\tItemId\tTime\n3\t21\t1396437466.9\n3\t2147", 3,
     "expected 3 tab-separated fields, got 2"),
    ("yoochoose-clicks.txt", "SessionId\tItemId\tTime\n3\t21\t13964x7466.9\n", 2, "Unix seconds"),
    ("yoochoose-clicks.dat", "1,2014-04-07T10:54:09.868Z,214536500,0\n1,2014-04-07T25:00:00Z,5,0\n", 2,
     "bad ISO timestamp"),
    ("views.csv", "session_id;user_id;item_id;timeframe;eventdate\n1;NA;5;10;2016-13-01\n", 2, "eventdate"),
    ("views.csv", "session_id;user_id;item_id;timeframe;eventdate\n1;NA;5;10;2016-01-01\n1;N", 3,
     "expected 5 semicolon-separated fields, got 2"),
    ("ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.0,4\n1,2,three,4\n", 3, "bad rating"),
    ("ratings.csv", "userId,movieId,rating,timestamp\n1,x2,3.0,4\n", 2, "movieId must be a non-negative integer"),
    ("user_taggedartists.dat", "userID\tartistID\ttagID\tday\tmonth\tyear\n2\t52\t13\t1\t13\t2009\n", 2, "bad date"),
])
def test_bad_lines_raise_format_error_with_file_and_line(tmp_path: Path, name: str, text: str,
                                                          line: int, what: str) -> None:
    f = _write(tmp_path / name, text)
    with pytest.raises(FormatError, match=f"{name} line {line}: .*{what}") as info:
        read_events(f)
    assert info.value.line == line and info.value.path == f


def test_bad_header_unknown_format_and_bad_binaries(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="ratings.csv line 1: expected header"):
        read_events(_write(tmp_path / "ratings.csv", "user,movie,rating,time\n1,2,3,4\n"), "movielens")
    with pytest.raises(FormatError, match="mystery.txt line 1: unrecognised header"):
        read_events(_write(tmp_path / "mystery.txt", "a|b|c\n"))
    with pytest.raises(ValueError, match="unknown format 'parquet'"):
        read_events(tmp_path / "ratings.csv", "parquet")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FormatError, match="broken.zip: not a readable zip"):
        read_events(tmp_path / "broken.zip")
    (tmp_path / "x_rating.mat").write_bytes(b"MATLAB 5.0 MAT-file" + b"\x00" * 40)
    with pytest.raises(FormatError, match="x_rating.mat: not a readable MATLAB"):
        read_events(tmp_path / "x_rating.mat")
    scipy.io.savemat(tmp_path / "y_rating.mat", {"ratings": np.zeros((2, 6))})
    with pytest.raises(FormatError, match=r"y_rating.mat: no 'rating' matrix \(found \['ratings'\]\)"):
        read_events(tmp_path / "y_rating.mat")


# ----------------------------------------------------------------------------- shared data


@pytest.fixture(scope="module")
def loaded(shared_data: Path) -> dict[str, tuple]:
    """Each shared dataset read once: (reader stats, events)."""
    paths = {
        "yoochoose": shared_data / "yoochoose/sessionrec_100k/yoochoose-clicks-100k_train_full.txt",
        "yoochoose_test": shared_data / "yoochoose/sessionrec_100k/yoochoose-clicks-100k_test.txt",
        "diginetica": shared_data / "diginetica/raw_sample/sample_train-item-views.csv",
        "movielens": shared_data / "movielens/ml-latest-small.zip",
        "ciao": shared_data / "ciao_epinions/ciao_rating_with_timestamp.mat",
        "lastfm": shared_data / "lastfm_hetrec2011",
    }
    out = {}
    for name, path in paths.items():
        reader = read_events(path)
        out[name] = (path, reader.stats, list(reader))
    return out


def _summary(events: list) -> tuple[int, int, int, int]:
    inter = [e for e in events if isinstance(e, Interaction)]
    return (len(inter), len({e.session_id for e in inter}), len({e.item_id for e in inter}),
            len({e.user_id for e in inter}))


@pytest.mark.data
@pytest.mark.parametrize(("name", "fmt", "expected", "first_day", "last_day"), [
    # (interactions, sessions, items, users) — counts from shared/data/README.md
    ("yoochoose", "yoochoose", (70_278, 17_794, 2_933, 17_794), (2014, 4, 1), (2014, 4, 7)),
    ("yoochoose_test", "yoochoose", (13_568, 3_416, 1_771, 3_416), (2014, 4, 7), (2014, 4, 8)),
    ("diginetica", "diginetica", (12_391, 2_986, 7_139, None), (2016, 1, 3), (2016, 6, 1)),
    ("movielens", "movielens", (100_836, None, 9_724, 610), (1996, 3, 29), (2018, 9, 24)),
    ("ciao", "ciao", (284_086, None, 105_114, 7_375), (2000, 5, 30), (2011, 4, 12)),
])
def test_shared_dataset_counts_and_order(loaded, name, fmt, expected, first_day, last_day) -> None:
    path, stats, events = loaded[name]
    assert detect_format(path) == fmt and stats.fmt == fmt
    got = _summary(events)
    assert tuple(g if e is not None else None for g, e in zip(got, expected)) == expected
    assert stats.rows == stats.interactions == expected[0] and stats.dropped_pre_epoch == 0
    _assert_time_ordered(events)
    inter = [e for e in events if isinstance(e, Interaction)]
    assert _ms(*first_day) <= inter[0].ts < _ms(*first_day) + DAY
    assert _ms(*last_day) <= inter[-1].ts < _ms(*last_day) + DAY
    assert all(type(e.item_id) is str and type(e.user_id) is str for e in inter)


@pytest.mark.data
def test_shared_diginetica_users(loaded) -> None:
    *_, events = loaded["diginetica"]
    assert len({e.user_id for e in events if not e.user_id.startswith("s")}) == 1_270  # README: non-NA users
    assert {e.kind for e in events} == {"view"}


@pytest.mark.data
def test_shared_movielens_weights_and_sessions(loaded) -> None:
    *_, events = loaded["movielens"]
    assert {e.weight for e in events} == {x / 2 for x in range(1, 11)}
    day = datetime.fromtimestamp(events[0].ts / 1000, timezone.utc).date().isoformat()
    assert events[0].session_id == f"{events[0].user_id}@{day}"


@pytest.mark.data
def test_shared_ciao_trust(loaded) -> None:
    _, stats, events = loaded["ciao"]
    follows = [e for e in events if isinstance(e, Follow)]
    assert len(follows) == stats.follows == 57_544
    first: dict[str, int] = {}
    for e in events:
        if isinstance(e, Interaction):
            first.setdefault(e.user_id, e.ts)
    start = min(first.values())
    assert all(f.ts == first.get(f.src_user, start) for f in follows)


@pytest.mark.data
def test_shared_lastfm(loaded, shared_data: Path) -> None:
    path, stats, events = loaded["lastfm"]
    assert detect_format(path) == "lastfm"
    follows = [e for e in events if isinstance(e, Follow)]
    assert len(follows) == 25_434 and len({f.src_user for f in follows} | {f.dst_user for f in follows}) == 1_892
    n_inter, _, n_artists, n_users = _summary(events)
    # 186,479 tag rows (README) = 85,012 (user, artist, date) clicks (measured here)
    # + 101,463 extra tags on the same day + 4 rows dated 1956/1957 (before the epoch).
    assert (stats.rows, n_inter, stats.merged_rows, stats.dropped_pre_epoch) == (186_479, 85_012, 101_463, 4)
    assert (n_users, n_artists) == (1_892, 12_523)
    _assert_time_ordered(events)
    assert events[0] == Follow("1929", "128", _ms(1979, 5, 1), "follow")  # at user 1929's 1979 outlier
    same = list(read_events(shared_data / "lastfm_hetrec2011/user_taggedartists.dat"))
    assert same == events


@pytest.mark.data
def test_truncated_copy_of_shared_file_names_file_and_line(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "yoochoose/sessionrec_100k/yoochoose-clicks-100k_train_full.txt"
    lines = src.read_text().splitlines(keepends=True)[:40]
    cut = tmp_path / "yoochoose-clicks.txt"
    cut.write_text("".join(lines[:16]) + lines[16].rsplit("\t", 1)[0] + "\n" + "".join(lines[17:]))
    with pytest.raises(FormatError, match="yoochoose-clicks.txt line 17: expected 3 tab-separated fields, got 2"):
        read_events(cut)
    friends = tmp_path / "lastfm"
    shutil.copytree(shared_data / "lastfm_hetrec2011", friends)
    text = (friends / "user_friends.dat").read_text().splitlines(keepends=True)
    text[100] = text[100].replace("\t", " ")
    (friends / "user_friends.dat").write_text("".join(text))
    with pytest.raises(FormatError, match="user_friends.dat line 101: expected 2 tab-separated fields, got 1"):
        read_events(friends)
    with zipfile.ZipFile(shared_data / "movielens/ml-latest-small.zip") as zf:
        ratings = zf.read("ml-latest-small/ratings.csv")
    row_start = ratings.index(b"\n", 200_000) + 1
    cut_at = ratings.index(b",", row_start) + 3  # the file ends two bytes into the 2nd field
    (tmp_path / "ratings.csv").write_bytes(ratings[:cut_at])
    line = ratings[:cut_at].count(b"\n") + 1
    with pytest.raises(FormatError, match=f"ratings.csv line {line}: expected 4 comma-separated fields, got 2"):
        read_events(tmp_path / "ratings.csv")


def test_formats_constant_matches_readers() -> None:
    assert FORMATS == ("yoochoose", "diginetica", "movielens", "ciao", "lastfm")
    # every format has a reader, and the split modules are the ones stream.formats re-exports
    from stream import formats
    from stream.formats import parsing as format_parsing
    from stream.formats import readers as format_readers
    assert set(format_readers.READERS) == set(FORMATS)
    assert formats.FormatError is format_parsing.FormatError and formats.ReadStats is format_parsing.ReadStats


@pytest.mark.data
def test_shared_ciao_published_in_coarse_steps_is_never_read_as_seconds(shared_data: Path, tmp_path: Path) -> None:
    """The real Ciao ratings rewritten in the layout's coarse form: time as 11 steps (equal-count
    bins of the real times) and trust dated by step (its source's first rating)."""
    rating = scipy.io.loadmat(shared_data / "ciao_epinions/ciao_rating_with_timestamp.mat")["rating"].astype(np.int64)
    trust = scipy.io.loadmat(shared_data / "ciao_epinions/ciao_trust.mat")["trust"].astype(np.int64)
    edges = np.quantile(rating[:, 5], np.linspace(0, 1, 12)[1:-1])
    rating[:, 5] = 1 + np.searchsorted(edges, rating[:, 5], side="right")
    first_step = {}
    for user, step in zip(rating[:, 0].tolist(), rating[:, 5].tolist()):
        first_step[user] = min(step, first_step.get(user, step))
    dated = np.column_stack([trust[:, :2], [first_step.get(s, 1) for s in trust[:, 0].tolist()]])
    scipy.io.savemat(tmp_path / "ciao_rating_with_timestamp.mat", {"rating": rating})
    scipy.io.savemat(tmp_path / "ciao_trust_with_timestamp.mat", {"trust": dated})
    path = tmp_path / "ciao_rating_with_timestamp.mat"
    with pytest.raises(FormatError, match="11 distinct values from 1 to 11: coarse time steps"):
        read_events(path)
    month = 30 * DAY
    reader = read_events(path, time_step_ms=month)
    events = list(reader)
    assert reader.stats.time_steps == 11 and len(events) == 284_086 + 57_544
    assert {e.ts for e in events} == {k * month for k in range(1, 12)}
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    prefix = events[:20_000]
    kinds = {type(e) for e in prefix}
    assert kinds == {Interaction, Follow}
    # In proportion: the share of follows in the prefix is that of its step.
    step1 = [e for e in events if e.ts == month]
    share = sum(isinstance(e, Follow) for e in step1) / len(step1)
    assert abs(sum(isinstance(e, Follow) for e in prefix) / len(prefix) - share) < 0.01
