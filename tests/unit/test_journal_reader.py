"""The one journal reader (agent.journal): the same entry reads the same in every form."""

from __future__ import annotations

import json

from agent import journal


def test_compact_and_spaced_json_give_the_same_record():
    rec = {
        "__CURSOR": "s=1;i=2",
        "__REALTIME_TIMESTAMP": "1778745600250000",
        "_SYSTEMD_UNIT": "port-sheet-sync.service",
        "PRIORITY": "3",
        "MESSAGE": 'token error: "quoted" \\ é',
    }
    compact = journal.parse_json(json.dumps(rec, separators=(",", ":"), ensure_ascii=False))
    spaced = journal.parse_json(json.dumps(rec).encode())
    assert compact == spaced
    assert compact == journal.JournalRecord(
        1778745600.25, "port-sheet-sync.service", 3, 'token error: "quoted" \\ é', "s=1;i=2", True
    )


def test_systemd_lines_belong_to_the_unit_they_are_about():
    rec = {
        "__REALTIME_TIMESTAMP": "1778745600000000",
        "_SYSTEMD_UNIT": "init.scope",
        "UNIT": "port-sheet-sync.service",
        "MESSAGE": "port-sheet-sync.service: Failed with result 'exit-code'.",
    }
    assert journal.parse_json(json.dumps(rec, separators=(",", ":"))).unit == (
        "port-sheet-sync.service"
    )
    user = {**rec, "_SYSTEMD_UNIT": "user@1000.service", "UNIT": "", "USER_UNIT": "x.service"}
    assert journal.parse_json(json.dumps(user)).unit == "x.service"
    own = {**rec, "_SYSTEMD_UNIT": "other.service"}
    assert journal.parse_json(json.dumps(own)).unit == "other.service"


def test_byte_array_messages_are_decoded_and_flagged():
    rec = {"__REALTIME_TIMESTAMP": "1", "MESSAGE": [*b"abc", 0xFF]}
    got = journal.parse_json(json.dumps(rec))
    assert (got.message, got.valid_utf8) == ("abc\ufffd", False)


def test_timestamps_outside_datetime_are_none_or_clamped_never_an_error():
    journal.parse_timestamp("0001-01-01T00:00:00+14:00 x")  # no OverflowError
    assert journal.parse_timestamp("2026-13-45T00:00:00Z x") is None
    assert journal.iso_z(1e14) == "9999-12-31T23:59:59Z"
    assert journal.parse_timestamp("2026-05-13T17:00:00+02:00 x")[0] == 1778684400.0
