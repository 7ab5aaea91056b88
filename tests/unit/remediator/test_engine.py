"""The engine's window, cooldown and breaker semantics, on an explicit clock."""

from __future__ import annotations

from pathlib import Path

from agent.remediator.engine import Engine
from agent.remediator.state import StateDB
from tests.unit.remediator.helpers import rule

LINE = "[port-sheet] token error: HTTP Error 400: Bad Request"
M = 60.0


def feed(engine: Engine, r, times, line=LINE):
    return [engine.observe(r, line, t) for t in times]


def test_fires_on_the_threshold_th_match_inside_the_window():
    e = Engine(StateDB())
    ds = feed(e, rule(), [0, 30 * M, 60 * M])
    assert [d.fired for d in ds] == [False, False, True]
    assert ds[-1].count == 3


def test_window_is_half_open_a_match_exactly_within_old_has_left():
    e = Engine(StateDB())
    # (t - 90m, t]: the first match at 0 is out of the window at t = 90m
    ds = feed(e, rule(), [0, 45 * M, 90 * M])
    assert not ds[-1].fired and ds[-1].count == 2
    assert e.observe(rule(), LINE, 91 * M).fired


def test_non_matching_and_ignored_lines_are_not_counted():
    e = Engine(StateDB())
    r = rule(ignore=["HTTP Error 5\\d\\d"])
    assert e.observe(r, "sync ok", 0).outcome == "nomatch"
    d = e.observe(r, "[port-sheet] token error: HTTP Error 503", 1)
    assert d.outcome == "ignored"
    feed(e, r, [2, 3])
    assert e.state.window(r.name, "{}") == [2, 3]


def test_group_by_keys_separate_windows():
    e = Engine(StateDB())
    r = rule(group_by=["status"])
    for t in (0, 1):
        e.observe(r, "[port-sheet] token error: HTTP Error 400", t)
        e.observe(r, "[port-sheet] token error: HTTP Error 401", t)
    d = e.observe(r, "[port-sheet] token error: HTTP Error 401", 2)
    assert d.fired and d.group == {"status": "401"}
    assert not e.observe(r, "[port-sheet] token error: HTTP Error 500", 3).fired


def test_firing_empties_the_window_and_starts_the_cooldown():
    e = Engine(StateDB())
    r = rule(cooldown="6h")
    feed(e, r, [0, 1, 2])
    ds = feed(e, r, [3, 4, 5])
    assert not any(d.fired for d in ds)
    assert ds[-1].cooling


def test_matches_during_cooldown_count_so_the_first_match_after_it_fires():
    e = Engine(StateDB())
    r = rule(cooldown="60m", within="90m")
    feed(e, r, [0, 1, 2 * 1])  # fires at t=2
    feed(e, r, [40 * M, 50 * M, 59 * M])  # cooling, window holds 3
    d = e.observe(r, LINE, 62 * M + 2)
    # the window keeps the newest `threshold` matches: all a fire needs
    assert d.fired and d.count == 3


def test_breaker_opens_instead_of_the_fire_beyond_max_runs_and_stays_open():
    e = Engine(StateDB())
    r = rule(threshold=1, cooldown=0, breaker={"max_runs": 2, "within": "24h"})
    ds = feed(e, r, [0, 10, 20, 30])
    assert [d.fired for d in ds] == [True, True, False, False]
    assert ds[2].breaker_opened and ds[3].silenced
    # a day later it is still silent: only a person's reset closes it
    assert e.observe(r, LINE, 3 * 86400).silenced
    e.reset(r.name)
    assert e.observe(r, LINE, 3 * 86400 + 1).fired


def test_breaker_counts_fires_only_inside_its_own_window():
    e = Engine(StateDB())
    r = rule(threshold=1, breaker={"max_runs": 2, "within": "1h"})
    ds = feed(e, r, [0, 10, 3601 + 10, 3602 + 10])
    assert [d.fired for d in ds] == [True, True, True, True]


def test_resolve_line_is_reported_with_its_group():
    e = Engine(StateDB())
    r = rule(resolve=r"\[port-sheet\] sync ok")
    assert e.observe(r, "[port-sheet] sync ok rows=3 requests=1 in 0.42s", 0).outcome == "resolve"


def test_a_restart_between_the_second_and_third_failure_still_fires(tmp_path: Path):
    db = tmp_path / "state.db"
    r = rule(cooldown="6h")
    e = Engine(StateDB(db))
    feed(e, r, [0, 30 * M])
    e.state.close()
    e2 = Engine(StateDB(db))
    assert e2.observe(r, LINE, 60 * M).fired
    e2.state.close()
    # and after another restart the fired window does not fire again (cooldown persisted)
    e3 = Engine(StateDB(db))
    ds = feed(e3, r, [61 * M, 62 * M, 63 * M])
    assert not any(d.fired for d in ds) and ds[-1].cooling


def test_breaker_state_survives_a_restart(tmp_path: Path):
    db = tmp_path / "state.db"
    r = rule(threshold=1, breaker={"max_runs": 1, "within": "1d"})
    e = Engine(StateDB(db))
    assert e.observe(r, LINE, 0).fired
    assert e.observe(r, LINE, 1).breaker_opened
    e.state.close()
    assert Engine(StateDB(db)).observe(r, LINE, 2).silenced


def test_a_flood_keeps_at_most_threshold_timestamps_and_writes_nothing_per_line_in_cooldown(
    tmp_path: Path,
):
    db = tmp_path / "state.db"
    state = StateDB(db)
    e = Engine(state)
    r = rule(threshold=3, cooldown="6h")
    assert feed(e, r, [0, 1, 2])[-1].fired
    changes = state.db.total_changes
    with state.batch():
        ds = feed(e, r, [3 + i / 1000 for i in range(20000)])
    assert not any(d.fired for d in ds) and all(d.cooling for d in ds[2:])
    assert state.db.total_changes == changes  # nothing written while cooling
    assert len(state.window(r.name, "{}")) == 3
    state.flush_deferred()
    assert state.db.execute("SELECT count(*) FROM windows").fetchone()[0] == 1
    state.close()
    again = StateDB(db)
    assert len(again.window(r.name, "{}")) == 3
    again.close()


def test_a_reset_by_another_process_reaches_an_engine_at_its_next_match(tmp_path):
    # `remediator reset` runs in its own process while the service holds the state in memory.
    db = tmp_path / "remediator.db"
    service = Engine(StateDB(db))
    r = rule(threshold=1, cooldown="6h")
    assert service.observe(r, "[port-sheet] token error: HTTP Error 400", 0).fired
    assert service.observe(r, "[port-sheet] token error: HTTP Error 400", 1).cooling
    shell = StateDB(db)
    shell.reset("sheet-sync-token")
    shell.close()
    assert service.observe(r, "[port-sheet] token error: HTTP Error 400", 2).fired
    # Applied once: the cooldown that fire started holds again.
    assert service.observe(r, "[port-sheet] token error: HTTP Error 400", 3).cooling


def test_any_ignore_pattern_vetoes_a_match_with_its_own_flags():
    # The ignore patterns are searched as one alternation (each keeps its inline flags); two
    # naming the same group cannot be joined and are searched one by one, with the same result.
    base = "[port-sheet] token error: HTTP Error 400: x"
    for ignore in (
        [r"(?i)temporarily_unavailable", r"HTTP Error 5\d\d"],
        [r"(?P<x>(?i)temporarily_unavailable)", r"(?P<x>HTTP Error 5\d\d)"],
    ):
        e = Engine(StateDB())
        r = rule(ignore=ignore)
        assert e.observe(r, base + " TEMPORARILY_unavailable", 0).outcome == "ignored"
        assert e.observe(r, base.replace("400", "503"), 0).outcome == "ignored"
        assert e.observe(r, base + " HTTP Error 5xx", 0).outcome == "counted"
        assert e.observe(r, base, 0).outcome == "counted"


def test_a_reset_recorded_by_another_process_is_taken_at_the_next_batch(tmp_path: Path):
    db = str(tmp_path / "state.db")
    e = Engine(StateDB(db))
    r = rule(cooldown="6h")
    with e.batch():
        assert [d.fired for d in feed(e, r, [0, 1, 2])] == [False, False, True]
    StateDB(db).reset(r.name)  # as `remediator reset` does, from its own connection
    with e.batch():
        assert [d.fired for d in feed(e, r, [3, 4, 5])] == [False, False, True]  # no cooldown


def test_memory_that_could_not_be_read_back_is_read_back_before_the_next_batch(tmp_path: Path):
    # A failed write rolls back and reads memory back from the file; on a read-only disk the
    # read-back fails too (a rolled-back journal to undo). Memory then still held the rolled
    # back matches, and the lines read again were counted on top of them: two cycles of
    # failures made one incident (seen under load in test_faults' journal case).
    import os

    import pytest

    from agent.remediator.state import StateWriteError

    path = tmp_path / "state.db"
    s = StateDB(path)
    with s.batch():
        s.add_match("r", "g", 1.0, 0.0, keep=3)
    moved = tmp_path / "state.db.away"

    with pytest.raises(StateWriteError, match="cannot read back"), s.batch():
        s.add_match("r", "g", 2.0, 0.0, keep=3)  # to be rolled back
        os.rename(path, moved)
        path.mkdir()  # nothing to read back from
        raise RuntimeError("the write fails")
    # still unreadable: no batch runs on stale memory
    with pytest.raises(StateWriteError), s.batch():
        pass
    path.rmdir()
    os.rename(moved, path)
    with s.batch():
        assert s.windows == {("r", "g"): [1.0]}  # the file's, not the rolled-back [1.0, 2.0]
