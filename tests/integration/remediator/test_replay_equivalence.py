"""``remediator replay`` decides exactly as the live service: the same journal export fed to a
real ``jada-agent remediator run`` (through a journalctl on PATH that prints it) and to
``replay`` opens the same incidents, at the same times -- systemd's own lines attributed by
``UNIT=``, byte-array messages, over-long lines and other units' lines included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

from tests.integration.remediator.helpers import SYNC_OK_WORD, TOKEN_3DIGIT, token_rule

MAX_LINE = 64 * 1024  # the cut applied before matching (agent.remediator.matcher.MAX_LINE)

FAKE = """#!{python}
# journalctl -u UNIT -o json --follow, on a saved export: the entries journalctl -u selects
# (the unit's processes, and PID 1's lines about the unit), then it waits like --follow.
import json, sys, time
units = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--unit=")]
with open({feed!r}, "rb") as f:
    for raw in f:
        e = json.loads(raw)
        if e.get("_SYSTEMD_UNIT") in units or (e.get("UNIT") in units and e.get("_PID") == "1"):
            sys.stdout.buffer.write(raw)
sys.stdout.flush()
time.sleep(3600)
"""

UNIT = "port-sheet-sync.service"
T0 = 1778745600  # 2026-05-14T08:00:00Z


def entry(i: int, minutes: float, message: object, **fields: str) -> str:
    rec = {
        "__CURSOR": f"s=eq;i={i}",
        "__REALTIME_TIMESTAMP": str(int((T0 + minutes * 60) * 1e6)),
        "_SYSTEMD_UNIT": UNIT,
        "_PID": "812",
        "SYSLOG_IDENTIFIER": "port-sheet-sync",
        "MESSAGE": message,
        **fields,
    }
    return json.dumps(rec, separators=(",", ":")) + "\n"


def systemd_line(i: int, minutes: float) -> str:
    # PID 1 reporting the unit's failure: init.scope is the process's unit, UNIT= the subject.
    return entry(
        i,
        minutes,
        f"{UNIT}: Failed with result 'exit-code'.",
        _SYSTEMD_UNIT="init.scope",
        _PID="1",
        SYSLOG_IDENTIFIER="systemd",
        UNIT=UNIT,
    )


def export() -> str:
    token = "[port-sheet] token error: HTTP Error {}: invalid_grant: Token has been revoked."
    lines = []
    i = 0
    for k in range(4):  # every 30 min a failed run: the token line, then systemd's verdict
        i += 1
        lines.append(entry(i, k * 30, token.format(400)))
        i += 1
        lines.append(systemd_line(i, k * 30 + 0.1))
    i += 1
    lines.append(entry(i, 5, token.format(400), _SYSTEMD_UNIT="other.service", _PID="9"))
    # A byte-array MESSAGE (not UTF-8) and an over-long line whose failure lies past the cut.
    for k in range(3):
        i += 1
        raw = [*token.format(401).encode(), 0xFF]
        lines.append(entry(i, 130 + k * 30, raw))
        i += 1
        lines.append(entry(i, 131 + k * 30, "x" * MAX_LINE + token.format(403)))
    i += 1
    lines.append(entry(i, 300, "[port-sheet] token error: HTTP Error 401: déjà révoqué ✓"))
    return "".join(lines)


RULES = [
    {
        "name": "sheet-sync-token",
        "source": {"journal": {"unit": UNIT}},
        "match": r"\[port-sheet\] token error: (?:HTTP Error (?P<status>\d{3})\b)?",
        "ignore": [r"HTTP Error (?:5\d\d|429)\b"],
        "group_by": ["status"],
        "threshold": 3,
        "within": "90m",
        "cooldown": "12h",
    },
    {
        "name": "sheet-sync-unit-failed",
        "source": {"journal": {"unit": UNIT}},
        "match": r"Failed with result '(?P<result>[\w-]+)'",
        "group_by": ["result"],
        "threshold": 3,
        "within": "90m",
        "cooldown": "12h",
    },
]


def test_replay_fires_exactly_what_the_live_service_fires_on_the_same_journal(
    tmp_path: Path, service_factory
):
    feed = tmp_path / "journal.json"
    feed.write_text(export(), encoding="utf-8")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "journalctl"
    fake.write_text(FAKE.format(python=sys.executable, feed=str(feed)))
    fake.chmod(0o755)

    rules_dir = tmp_path / "replay-rules"
    rules_dir.mkdir()
    (rules_dir / "50-eq.yml").write_text(yaml.safe_dump({"rules": RULES}))
    out = subprocess.run(
        [sys.executable, "-m", "agent", "remediator", "replay", "--rules-dir", str(rules_dir),
         str(feed), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    replayed = sorted(
        (r["name"], json.dumps(f["group"], sort_keys=True), f["at"])
        for r in json.loads(out.stdout)["rules"]
        for f in r["fired"]
    )
    # The systemd line fires in replay as it does live (it used to match 0 in replay).
    assert [x[0] for x in replayed].count("sheet-sync-unit-failed") == 1
    assert len(replayed) == 3  # 400 and 401 (the byte-array lines); 403 lay past the cut

    svc = service_factory(RULES, env={"PATH": f"{bindir}:{os.environ['PATH']}"}).start()
    try:
        svc.wait_incident(lambda xs: len(xs) >= len(replayed))
        time.sleep(0.5)  # anything more it would open, it has opened by now
        live = sorted(
            (i.rule, json.dumps(i.group, sort_keys=True), round(i.opened.timestamp(), 3))
            for i in svc.incidents()
        )
    finally:
        svc.stop()
    assert live == [(r, g, round(_epoch(at), 3)) for r, g, at in replayed]


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_resolve_line_read_with_the_failures_resolves_their_incident(
    tmp_path: Path, service_factory
):
    # Nothing is open when the read starts; the third failure opens an incident, and the
    # "sync ok" line of the same read must still reach the rule and close it.
    log = tmp_path / "sync.log"
    rule = token_rule({"file": str(log)}, match=TOKEN_3DIGIT, resolve=SYNC_OK_WORD)
    svc = service_factory([rule]).start()
    tmp = tmp_path / "sync.log.new"
    tmp.write_text(
        "[port-sheet] token error: HTTP Error 400: Bad Request\n" * 3 + "[port-sheet] sync ok\n"
    )
    tmp.rename(log)  # the whole file appears at once: one read
    items = svc.wait_incident(lambda xs: len(xs) == 1 and xs[0].status == "resolved")
    assert "resolved by: [port-sheet] sync ok" in items[0].summary
