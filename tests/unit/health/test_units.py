"""Unit facts from `systemctl show` output as systemd 252 prints it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agent.health.units import UnitsError, parse_show, parse_timestamp, unit_facts

SHOW = """Id=jada-agent.service
Description=jada-agent orchestrator
LoadState=loaded
ActiveState=active
SubState=running
Result=success
Type=notify
UnitFileState=enabled
ActiveEnterTimestamp=@1778414400
StateChangeTimestamp=@1778414400
NRestarts=0
ExecMainStatus=0
MainPID=811
ControlGroup=/system.slice/jada-agent.service
MemoryCurrent=151003136

Id=port-sheet-sync.timer
LoadState=loaded
ActiveState=active
SubState=waiting
Result=success
UnitFileState=enabled
Triggers=port-sheet-sync.service
NextElapseUSecRealtime=@1779287400
LastTriggerUSec=@1779285600

Id=port-sheet-sync.service
LoadState=loaded
ActiveState=failed
SubState=failed
Result=exit-code
Type=oneshot
NRestarts=0
ExecMainStatus=2
ExecMainStartTimestamp=@1779285600
ExecMainExitTimestamp=@1779285601
ControlGroup=
MemoryCurrent=[not set]
"""


def test_timestamps_parse_in_both_forms():
    assert parse_timestamp("@1778414400") == "2026-05-10T12:00:00Z"
    assert parse_timestamp("Sun 2026-05-10 12:00:00 UTC") == "2026-05-10T12:00:00Z"
    assert parse_timestamp("n/a") is None
    assert parse_timestamp("") is None


def test_show_blocks_split_per_unit():
    blocks = parse_show(SHOW)
    assert [b["Id"] for b in blocks] == [
        "jada-agent.service",
        "port-sheet-sync.timer",
        "port-sheet-sync.service",
    ]


@pytest.fixture
def systemctl(tmp_path: Path) -> str:
    """A stand-in for the systemctl binary (this machine has no systemd as PID 1)."""
    out = tmp_path / "show.txt"
    out.write_text(SHOW)
    script = tmp_path / "systemctl"
    script.write_text(f"#!/bin/sh\ncat {out}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_unit_facts_link_a_timer_to_its_service_last_run(systemctl):
    units = unit_facts(["jada-agent.service", "port-sheet-sync.timer"], systemctl=systemctl)
    timer = units["port-sheet-sync.timer"]
    assert timer["next_elapse"] == "2026-05-20T14:30:00Z"
    assert timer["last_run"] == {
        "unit": "port-sheet-sync.service",
        "result": "exit-code",
        "status": 2,
        "started": "2026-05-20T14:00:00Z",
        "exited": "2026-05-20T14:00:01Z",
    }
    core = units["jada-agent.service"]
    assert (core["active"], core["since"], core["restarts"]) == (
        "active",
        "2026-05-10T12:00:00Z",
        0,
    )
    assert core["memory_bytes"] == 151003136  # no cgroup file here: systemd's MemoryCurrent


def test_missing_systemctl_is_a_clear_error(tmp_path):
    with pytest.raises(UnitsError, match="not found"):
        unit_facts(["x.service"], systemctl=str(tmp_path / "nope"))


def test_failing_systemctl_reports_its_message(tmp_path):
    script = tmp_path / "systemctl"
    script.write_text("#!/bin/sh\necho 'System has not been booted with systemd' >&2\nexit 1\n")
    script.chmod(0o700)
    with pytest.raises(UnitsError, match="not been booted with systemd"):
        unit_facts(["x.service"], systemctl=str(script))


def test_timespans_of_monotonic_timers_parse_to_seconds():
    from agent.health.units import parse_timespan

    assert parse_timespan("1h 2min 3.5s") == 3723.5
    assert parse_timespan("250ms") == 0.25
    assert parse_timespan("0") is None
