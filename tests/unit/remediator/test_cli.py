"""The incidents and reset sub-commands over a real store and state DB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from agent import config
from agent.remediator.engine import Engine
from agent.remediator.state import StateDB
from agent.store import open_store
from tests.unit.remediator.helpers import rule


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "-c", str(cfg), "remediator", *args],
        capture_output=True,
        text=True,
    )


def test_incidents_lists_json_and_text(tmp_path: Path, settings_factory):
    s = settings_factory()
    cfg = tmp_path / "agent.yml"
    cfg.write_text(yaml.safe_dump(config.to_dict(s)))
    with open_store(s) as store:
        inc = store.open_incident("sheet-sync-token", {"status": "400"}, summary="token error")
        store.update_incident(inc.id, status="escalated", cause="revoked")
    out = cli(cfg, "incidents", "--json")
    assert out.returncode == 0, out.stderr
    (got,) = json.loads(out.stdout)
    assert got["rule"] == "sheet-sync-token" and got["status"] == "escalated"
    assert got["cause"] == "revoked" and got["group"] == {"status": "400"}
    text = cli(cfg, "incidents").stdout
    assert "#1 escalated" in text and "sheet-sync-token[status=400]" in text


def test_incidents_text_escapes_control_characters_and_ansi(tmp_path: Path, settings_factory):
    s = settings_factory()
    cfg = tmp_path / "agent.yml"
    cfg.write_text(yaml.safe_dump(config.to_dict(s)))
    hostile = "token error\x1b[2J\x1b]0;owned\x07\r\n#9 resolved   fake-rule"
    with open_store(s) as store:
        store.open_incident("sheet-sync-token", {"unit": "x\x1b[31m"}, summary=hostile)
    text = cli(cfg, "incidents").stdout
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    # One incident: its heading line, its summary on one line, then what was done (no forged #9).
    lines = text.splitlines()
    assert [x for x in lines if x.startswith("#")] == [lines[0]], text
    assert lines[1].startswith("    token error"), text
    assert "token error\\x1b[2J\\x1b]0;owned\\x07\\r\\n#9 resolved" in text
    assert "[unit=x\\x1b[31m]" in text


def test_reset_closes_an_open_breaker(tmp_path: Path, settings_factory):
    s = settings_factory()
    cfg = tmp_path / "agent.yml"
    cfg.write_text(yaml.safe_dump(config.to_dict(s)))
    r = rule(threshold=1, breaker={"max_runs": 1, "within": "1d"})
    state = StateDB(s.remediator.state_db)
    e = Engine(state)
    assert e.observe(r, "[port-sheet] token error: HTTP Error 400", 0).fired
    assert e.observe(r, "[port-sheet] token error: HTTP Error 400", 1).breaker_opened
    state.close()
    out = cli(cfg, "reset", "sheet-sync-token")
    assert out.returncode == 0 and "breaker closed" in out.stdout
    e2 = Engine(StateDB(s.remediator.state_db))
    assert e2.observe(r, "[port-sheet] token error: HTTP Error 400", 2).fired
