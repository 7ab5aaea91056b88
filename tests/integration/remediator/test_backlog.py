"""A backlog read in one go by the in-process service core (real state DB and store): what a
restart's catch-up or a journal batch does."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import yaml

from agent import config
from agent.remediator.service import Remediator
from tests.integration.remediator.helpers import SYNC_OK_WORD, TOKEN_3DIGIT, token_rule

TOKEN = "[port-sheet] token error: HTTP Error 400: invalid_grant"
OK = "[port-sheet] sync ok rows=3 requests=1 in 0.42s"


def test_a_backlog_opens_and_resolves_in_order_with_one_resolve_firing_per_fire(tmp_path: Path):
    log = tmp_path / "sync.log"
    rules_dir = tmp_path / "rules.d"
    rules_dir.mkdir()
    rule = token_rule({"file": str(log)}, match=TOKEN_3DIGIT, cooldown="0s", resolve=SYNC_OK_WORD)
    (rules_dir / "50-test.yml").write_text(yaml.safe_dump({"rules": [rule]}))
    state_db = tmp_path / "state" / "remediator.db"
    s = config.from_dict(
        {
            "host_name": "test",
            "state_dir": str(tmp_path / "state"),
            "store": {"path": str(tmp_path / "state" / "store.db")},
            "remediator": {
                "rules_dirs": [str(rules_dir)],
                "state_db": str(state_db),
                "private_data_dir": str(tmp_path / "runner"),
                "lock_file": str(tmp_path / "run" / "remediation.lock"),
            },
        },
        "test",
    )
    r = Remediator(s)
    r.apply_rules(r.load())  # the log is absent: all of it will be new
    log.write_text("\n".join(([TOKEN] * 3 + [OK] * 200) * 2) + "\n")
    r.detection.read_file(str(log))  # one read, one transaction: the fires are not in the store yet
    incidents = sorted(r.store.list_incidents(), key=lambda i: i.id)
    assert [i.status for i in incidents] == ["resolved", "resolved"]  # fire, resolve, fire, resolve
    r.state.close()
    r.store.close()
    with sqlite3.connect(state_db) as db:
        (added,) = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'firings'").fetchone()
    assert added == 4  # not a firing (and a commit) for each of the 400 "sync ok" lines
