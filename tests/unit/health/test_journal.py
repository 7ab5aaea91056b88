"""Recurring failure signatures and their cadence in generated journals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.health import parallel
from agent.health.analysis import JournalAnalysis
from agent.health.readers import JournalError, open_journal
from agent.health.signatures import cadence, normalise
from tests.unit.health import journalgen

END = datetime(2026, 5, 20, 14, 15, tzinfo=UTC)
FAIL_FROM = datetime(2026, 5, 13, 14, 30, tzinfo=UTC)


def analyse(path: Path) -> dict:
    return JournalAnalysis().feed(open_journal(path)).result()


@pytest.fixture(scope="module")
def production_json(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("j") / "journal.json"
    journalgen.write(p, end=END, days=7, sync_failing_since=FAIL_FROM, noise_per_hour=20)
    return p


def test_normalise_replaces_numbers_times_ids_and_hex_but_keeps_http_status():
    line = (
        "2026-05-13T14:30:00Z req 5f0c2a1e-1b2c-4d5e-8f90-0123456789ab from 10.1.2.3:443 "
        "HTTP Error 400 took 0.42s at 12:30:01 id deadbeef01 rows=17"
    )
    assert normalise(line) == (
        "<TS> req <ID> from <IP> HTTP Error 400 took <N>s at <TIME> id <HEX> rows=<N>"
    )


def test_production_pattern_gives_one_signature_every_30_min_attributed_to_the_sync(
    production_json,
):
    result = analyse(production_json)
    sync = [r for r in result["recurring"] if r["unit"] == "port-sheet-sync.service"]
    assert len(sync) == 1  # the sync's own line; systemd's three about the run are folded in
    assert {r["cadence_s"] for r in sync} == {1800}
    assert {r["regular_since"] for r in sync} == {"2026-05-13T14:30:00Z"}
    token = next(r for r in sync if r["signature"].startswith("[port-sheet] token error"))
    assert token["count"] == 336  # 7 days x 48 runs
    assert token["signature"] == (
        "[port-sheet] token error: HTTP Error 400: invalid_grant: Token has been expired or revoked."
    )
    assert "every 30 min since 2026-05-13 14:30Z" in token["summary"]
    assert not [r for r in result["recurring"] if r["unit"] == "jada-agent.service"]


def test_turn_cap_session_lines_are_not_failures_but_are_counted_per_day(production_json):
    result = analyse(production_json)
    assert result["units"]["jada-agent.service"]["failures"] == 0
    assert result["sessions_by_day"]["2026-05-15"] == {"max_turns": 2, "completed": 1}


def test_short_iso_text_gives_the_same_signatures_as_json(tmp_path, production_json):
    text = tmp_path / "journal.txt"
    journalgen.write(text, fmt="text", end=END, days=7, sync_failing_since=FAIL_FROM,
                     noise_per_hour=20)  # fmt: skip
    a = {
        (r["unit"], r["signature"], r["count"], r["cadence_s"]) for r in analyse(text)["recurring"]
    }
    b = {
        (r["unit"], r["signature"], r["count"], r["cadence_s"])
        for r in analyse(production_json)["recurring"]
    }
    assert a == b


def test_historical_bad_request_message_is_its_own_signature(tmp_path):
    p = tmp_path / "j.json"
    journalgen.write(p, end=END, days=1, sync_failing_since=END - timedelta(hours=5),
                     historical_message=True, noise_per_hour=5)  # fmt: skip
    sigs = {r["signature"] for r in analyse(p)["recurring"]}
    assert "[port-sheet] token error: HTTP Error 400: Bad Request" in sigs


def test_cadence_is_none_for_irregular_occurrences():
    assert cadence([0, 100, 900, 1000, 5000, 5050]) is None
    assert cadence([0, 1800]) is None


def test_cadence_starts_where_the_regular_run_starts_despite_an_early_stray():
    times = [0.0] + [50_000.0 + 1800 * i for i in range(30)]
    period, since = cadence(times)
    assert (period, since) == (1800.0, 50_000.0)


def test_cadence_tolerates_timer_jitter():
    times = [i * 1800 + (7 if i % 2 else -5) for i in range(20)]
    assert cadence(times)[0] == 1800.0


def test_escaped_and_binary_messages_are_decoded(tmp_path):
    lines = [
        {"__REALTIME_TIMESTAMP": "1747146600000000", "_SYSTEMD_UNIT": "x.service",
         "MESSAGE": 'error: "quoted" \\ path é'},
        {"__REALTIME_TIMESTAMP": "1747148400000000", "_SYSTEMD_UNIT": "x.service",
         "MESSAGE": list(b"error: raw bytes \xff")},
        {"__REALTIME_TIMESTAMP": "1747150200000000", "_SYSTEMD_UNIT": "x.service", "MESSAGE": None},
    ]  # fmt: skip
    p = tmp_path / "j.json"
    p.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    entries = list(open_journal(p))
    assert entries[0][3] == 'error: "quoted" \\ path é'
    assert entries[1][3] == "error: raw bytes \ufffd"
    assert entries[2][3] == ""


def test_systemd_lines_are_attributed_by_their_unit_field(tmp_path):
    rec = {"__REALTIME_TIMESTAMP": "1747146600000000", "_SYSTEMD_UNIT": "init.scope",
           "UNIT": "port-sheet-sync.service", "SYSLOG_IDENTIFIER": "systemd",
           "MESSAGE": "Failed to start port-sheet-sync.service - Port sheet sync.", "PRIORITY": "3"}  # fmt: skip
    p = tmp_path / "j.json"
    p.write_text(json.dumps(rec, separators=(",", ":")) + "\n")
    ((_, unit, prio, _),) = list(open_journal(p))
    assert (unit, prio) == ("port-sheet-sync.service", 3)


def test_a_file_that_is_no_journal_is_a_clear_error_naming_file_and_line(tmp_path):
    p = tmp_path / "notes.json"
    p.write_text('{"__REALTIME_TIMESTAMP":"1747146600000000","MESSAGE":"x"}\nhello world\n')
    with pytest.raises(JournalError, match=r"notes.json: line 2: expected a journalctl -o json"):
        list(open_journal(p))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(JournalError, match="cannot read the journal file"):
        list(open_journal(tmp_path / "nope.json"))


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_reading_in_parallel_parts_gives_the_same_findings(tmp_path, monkeypatch, fmt):
    p = tmp_path / f"journal.{fmt}"
    journalgen.write(p, fmt=fmt, end=END, days=3, sync_failing_since=END - timedelta(days=2),
                     noise_per_hour=30)  # fmt: skip
    one = parallel.analyse_path(p, workers=1).result()
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 1)
    three = parallel.analyse_path(p, workers=3).result()
    assert three == one


def test_ansible_module_invocations_under_the_remediator_are_not_failures():
    # A remediation run on the host logs its modules' arguments; their words ("failed_when",
    # "error") are parameters. A real failure line next to them still counts.
    t0 = datetime(2026, 5, 20, 12, tzinfo=UTC).timestamp()
    unit = "jada-remediator.service"
    noise = (
        "Invoked with _raw_params=/opt/jada-agent/venv/bin/jada-agent credentials diagnose"
        " --json msg=the sync failed: token error chdir=None"
    )
    entries = [(t0 + 1800 * i, unit, 6, noise) for i in range(6)]
    entries.append((t0 + 20000, unit, 3, "remediator: action failed: runner error"))
    result = JournalAnalysis().feed(iter(entries)).result()
    sigs = [r["signature"] for r in result["recurring"] if r["unit"] == unit]
    assert not [s for s in sigs if s.startswith("Invoked with")]
    assert result["units"][unit]["failures"] == 1


def test_a_rule_name_ending_in_error_is_not_a_failure_but_a_failure_line_is():
    t0 = datetime(2026, 5, 20, 12, tzinfo=UTC).timestamp()
    unit = "jada-remediator.service"
    start = "rules: 4 (sheet-sync-token, sheet-sync-refresh-error); journal units: x.service"
    entries = [(t0 + 3 * i, unit, 6, start) for i in range(3)]
    entries.append((t0 + 60, unit, 6, "remediation failed: rc=2"))
    result = JournalAnalysis().feed(iter(entries)).result()
    assert result["units"][unit]["failures"] == 1


def _systemd_burst(ts: float, unit: str = "port-sheet-sync.service") -> list:
    return [
        (ts, unit, 5, f"{unit}: Main process exited, code=exited, status=2/INVALIDARGUMENT"),
        (ts, unit, 4, f"{unit}: Failed with result 'exit-code'."),
        (ts, unit, 3, f"Failed to start {unit} - Port sheet sync."),
    ]


def test_systemd_lines_are_folded_into_the_failed_run_one_run_one_failure():
    t0 = datetime(2026, 5, 20, tzinfo=UTC).timestamp()
    entries = []
    for i in range(8):
        ts = t0 + i * 1800
        entries.append((ts + 0.8, "port-sheet-sync.service", 3, "token error: invalid_grant"))
        entries += _systemd_burst(ts + 0.9)
    result = JournalAnalysis().feed(entries).result()
    unit = result["units"]["port-sheet-sync.service"]
    assert (unit["failures"], unit["failed_runs"]) == (8, 8)
    assert [r["signature"] for r in result["recurring"]] == ["token error: invalid_grant"]
    assert sum(n for _b, n in result["timeline"]["units"]["port-sheet-sync.service"]) == 8


def test_a_run_that_logged_nothing_has_systemds_first_line_as_its_one_cause():
    t0 = datetime(2026, 5, 20, tzinfo=UTC).timestamp()
    entries = [e for i in range(3) for e in _systemd_burst(t0 + i * 1800)]
    result = JournalAnalysis().feed(entries).result()
    assert result["units"]["port-sheet-sync.service"]["failures"] == 3
    (only,) = result["recurring"]
    assert only["signature"].endswith("status=<N>/INVALIDARGUMENT")
    assert only["count"] == 3


def test_the_units_own_line_arriving_after_systemds_is_still_the_cause():
    t0 = datetime(2026, 5, 20, tzinfo=UTC).timestamp()
    entries = []
    for i in range(3):
        ts = t0 + i * 1800
        entries += _systemd_burst(ts)
        entries.append((ts + 0.3, "port-sheet-sync.service", 3, "token error: invalid_grant"))
    result = JournalAnalysis().feed(entries).result()
    assert [(r["signature"], r["count"]) for r in result["recurring"]] == [
        ("token error: invalid_grant", 3)
    ]
    assert result["units"]["port-sheet-sync.service"]["failures"] == 3


def test_a_successful_exit_status_is_not_a_failed_run():
    ts = datetime(2026, 5, 20, tzinfo=UTC).timestamp()
    msg = "x.service: Main process exited, code=exited, status=0/SUCCESS"
    result = JournalAnalysis().feed([(ts, "x.service", 6, msg)]).result()
    assert result["units"]["x.service"]["failed_runs"] == 0
    assert result["units"]["x.service"]["failures"] == 0


def test_runs_started_by_hand_seconds_apart_are_each_their_own_failed_run():
    t0 = datetime(2026, 5, 20, tzinfo=UTC).timestamp()
    entries = []
    for i in range(3):
        ts = t0 + i * 3
        entries.append((ts + 0.8, "port-sheet-sync.service", 3, "token error: invalid_grant"))
        entries += _systemd_burst(ts + 0.9)
    unit = JournalAnalysis().feed(entries).result()["units"]["port-sheet-sync.service"]
    assert (unit["failures"], unit["failed_runs"]) == (3, 3)
