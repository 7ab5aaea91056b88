"""The offline tester on sample logs: formats, timestamps, units, exact --json output."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import yaml

from agent.remediator.replay import CHUNK, parse_timestamp, replay
from agent.remediator.rules import load_rules, parse_rule

DATA = Path(__file__).parent / "data"
PACK = Path(__file__).parents[3] / "files" / "rules.d"


def journal_pack(tmp_path: Path) -> Path:
    """The packaged rules reading the journal of port-sheet-sync.service, as the remediator role
    renders them with ``remediator_rules_source: journal`` (the pack itself reads the log file)."""
    doc = yaml.safe_load((PACK / "50-port-sheet-sync.yml").read_text())
    for r in doc["rules"]:
        r["source"] = {"journal": {"unit": "port-sheet-sync.service"}}
    out = tmp_path / "rules.d"
    out.mkdir()
    (out / "50-port-sheet-sync.yml").write_text(yaml.safe_dump(doc))
    return out


def cli_json(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "agent", "remediator", "replay", *args, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_seed_log_fires_once_with_the_exact_json_shape():
    got = cli_json("--rules", str(DATA / "issue-example.yml"), str(DATA / "seed.log"))
    assert got == {
        "lines": 10,
        "undated": 5,
        "rules": [
            {
                "name": "sheet-sync-token",
                "matched": 5,
                "ignored": 0,
                "fired": [{"at": "2026-05-13T15:00:00Z", "group": {"status": "400"}, "count": 3}],
            }
        ],
    }


def test_timestamps_of_every_accepted_form_are_read_as_utc():
    assert parse_timestamp("2026-05-13T15:00:00Z x")[0] == 1778684400.0
    assert parse_timestamp("2026-05-13 15:00:00 x")[0] == 1778684400.0
    assert parse_timestamp("2026-05-13T17:00:00+02:00 x")[0] == 1778684400.0
    assert parse_timestamp("2026-05-13T15:00:00+0000 host x[1]: m")[0] == 1778684400.0
    assert parse_timestamp("[2026-05-13 15:00:00,250] x")[0] == 1778684400.25
    assert parse_timestamp("Sync failed at 2026-05-13 15:00:00 UTC") is None


def test_undated_lines_take_the_previous_lines_time():
    r = parse_rule(
        {"name": "r", "source": {"file": "/x"}, "match": "boom", "threshold": 1, "within": "1h"},
        "r.yml",
        0,
    )
    rep = replay([r], [["2026-05-13T15:00:00Z a", "boom b", "boom c", "2026-05-13T16:00:00Z d"]])
    assert [f["at"] for f in rep.rules[0].fired] == ["2026-05-13T15:00:00Z"] * 2
    assert (rep.lines, rep.undated) == (4, 2)


def test_journal_rules_read_their_units_short_iso_lines_and_skip_other_identifiers(tmp_path: Path):
    got = cli_json("--rules-dir", str(journal_pack(tmp_path)), str(DATA / "short-iso.log"))
    token = next(r for r in got["rules"] if r["name"] == "sheet-sync-token")
    # 08:30, 09:30 and 10:00 from port-sheet-sync (09:45 is jada-agent's; the 429 and the 503
    # token errors are vetoed by ignore); 08:30:01 has just left the 90-minute window at
    # 10:00:01: no fire.
    assert token == {"name": "sheet-sync-token", "matched": 3, "ignored": 2, "fired": []}
    assert got["lines"] == 10 and got["undated"] == 0


def test_journal_json_export_fires_for_the_unit_only_and_survives_binary_messages(
    tmp_path: Path,
):
    got = cli_json("--rules-dir", str(journal_pack(tmp_path)), str(DATA / "journal.json"))
    rules = {r["name"]: r for r in got["rules"]}
    assert rules["sheet-sync-token"]["fired"] == [
        {"at": "2026-05-14T09:00:00Z", "group": {"status": "401"}, "count": 3}
    ]
    assert rules["sheet-sync-token"]["matched"] == 3
    assert rules["sheet-sync-refresh-error"]["matched"] == 1
    assert got["lines"] == 9


def test_default_pack_never_fires_a_credential_refresh_on_transient_failures():
    lines = []
    for i in range(12):
        ts = f"2026-05-14T{8 + i // 2:02d}:{(i % 2) * 30:02d}:00+0000 h port-sheet-sync[1]: "
        lines += [
            ts + "[port-sheet] api error: HTTP 429 Too Many Requests",
            ts + "[port-sheet] token error: HTTP Error 429: Too Many Requests",
            ts + "[port-sheet] token error: HTTP Error 500: internal_failure",
            ts + "[port-sheet] token error: HTTP Error 503: Service Unavailable",
            ts + "[port-sheet] token error: HTTP Error 400: temporarily_unavailable",
            ts + "[port-sheet] transient error: timed out",
            ts + "[port-sheet] transient error: [Errno -3] Temporary failure in name resolution",
            ts + "google.auth.exceptions.RefreshError: ('server_error: x', {})",
            ts + "google.auth.exceptions.TransportError: HTTPSConnectionPool timed out",
            ts + "[port-sheet] token error: token endpoint unreachable: ConnectionError (timeout)",
            ts + "[port-sheet] api error: HTTP 503 backend error",
        ]
    rs = load_rules([PACK])
    rep = replay(rs.rules, [lines])
    assert all(r.fired == [] for r in rep.rules), [(r.name, r.fired) for r in rep.rules]


def test_default_pack_fires_each_playbook_for_its_failure():
    def run(msg: str) -> dict[str, list]:
        lines = [
            f"2026-05-14T{8 + i // 2:02d}:{(i % 2) * 30:02d}:00+0000 h port-sheet-sync[1]: {msg}"
            for i in range(3)
        ]
        rep = replay(load_rules([PACK]).rules, [lines])
        return {r.name: r.fired for r in rep.rules if r.fired}

    assert set(run("[port-sheet] token error: HTTP Error 400: Bad Request")) == {"sheet-sync-token"}
    assert set(
        run(
            "[port-sheet] token error: HTTP Error 401: invalid_client: The OAuth client was not found."
        )
    ) == {"sheet-sync-token"}
    assert set(run("google.auth.exceptions.RefreshError: ('invalid_scope: bad', {})")) == {
        "sheet-sync-refresh-error"
    }
    assert set(
        run(
            "[port-sheet] token error: [Errno 13] Permission denied: '/var/lib/jada-agent/secrets/google-token.json'"
        )
    ) == {"sheet-sync-token-permissions"}
    secrets = "/var/lib/jada-agent/secrets/google-token.json"
    for line, rule in [
        (
            f"[port-sheet] permission error: {secrets}: Permission denied (credential file unreadable)",
            "sheet-sync-token-permissions",
        ),
        (
            f"[port-sheet] permission error: {secrets} has mode 0644, readable beyond its owner; refusing it until it is 0600",
            "sheet-sync-token-permissions",
        ),
        (
            f"PermissionError: [Errno 13] Permission denied: '{secrets}'",
            "sheet-sync-token-permissions",
        ),
        (f"[port-sheet] token error: credential file missing: {secrets}", "sheet-sync-token"),
        (
            "[port-sheet] token error: granted scopes lack https://www.googleapis.com/auth/spreadsheets",
            "sheet-sync-token",
        ),
        (
            "[port-sheet] api error: HTTP 403 The caller does not have permission",
            "sheet-sync-access",
        ),
    ]:
        assert set(run(line)) == {rule}, line


def test_cooldown_and_breaker_apply_in_replay_as_live(tmp_path: Path):
    rules = tmp_path / "r.yml"
    rules.write_text(
        "rules:\n  - {name: r, source: {file: /x}, match: boom, threshold: 1, within: 1h,"
        " cooldown: 1h, breaker: {max_runs: 2, within: 1d}}\n"
    )
    log = tmp_path / "x.log"
    log.write_text("".join(f"2026-05-14T{h:02d}:00:00Z boom\n" for h in range(0, 6)))
    got = cli_json("--rules", str(rules), str(log))
    assert [f["at"] for f in got["rules"][0]["fired"]] == [
        "2026-05-14T00:00:00Z",
        "2026-05-14T01:00:00Z",
    ]


def test_text_output_explains_why_a_rule_did_not_fire(tmp_path: Path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "remediator",
            "replay",
            "--rules-dir",
            str(journal_pack(tmp_path)),
            str(DATA / "short-iso.log"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "never fired: at most 2 of 3 matches within 90m" in out


def test_out_of_range_timestamps_never_crash_replay(tmp_path: Path):
    rules = tmp_path / "r.yml"
    rules.write_text(
        "rules:\n"
        "  - {name: f, source: {file: /x}, match: boom, threshold: 1, within: 1h}\n"
        "  - {name: j, source: {journal: {unit: a.service}}, match: boom, threshold: 1,"
        " within: 1h}\n"
    )
    log = tmp_path / "x.log"
    log.write_text(
        "9999-12-31T23:59:59-14:00 boom beyond year 9999 in UTC\n"
        "0001-01-01T00:00:00+14:00 boom before year 1 in UTC\n"
        "2026-13-45T99:99:99Z boom an impossible date\n"
    )
    export = tmp_path / "j.json"
    export.write_text(
        '{"__REALTIME_TIMESTAMP":"99999999999999999999","_SYSTEMD_UNIT":"a.service",'
        '"MESSAGE":"boom far future"}\n'
    )
    got = cli_json("--rules", str(rules), str(log), str(export))
    rep = {r["name"]: r for r in got["rules"]}
    # Every line is counted; times beyond what a date can show are written as its limit.
    assert rep["f"]["matched"] == 3 and rep["f"]["fired"][0]["at"] == "9999-12-31T23:59:59.999999Z"
    assert [f["at"] for f in rep["j"]["fired"]] == ["9999-12-31T23:59:59.999999Z"]


def _entry(i: int, message: object, **fields: object) -> str:
    """A journal entry as journalctl -o json writes it: the cursor, then the timestamp."""
    rec = {
        "__CURSOR": f"s=5844266;i={i:x};b=0123;m={i:x};t={i:x};x=be00",
        "__REALTIME_TIMESTAMP": str(1778745600000000 + i * 1000000),
        "_SYSTEMD_UNIT": "port-sheet-sync.service",
        "MESSAGE": message,
        **fields,
    }
    return json.dumps(rec, separators=(",", ":")) + "\n"


def test_json_export_counts_each_line_without_a_timestamp_once(tmp_path: Path):
    export = tmp_path / "j.json"
    export.write_text(
        _entry(1, "ok")
        + "\n"  # a blank line
        + '{"MESSAGE":"written by hand, no time"}\n'
        + '{"__REALTIME_TIMESTAMP":"1778745600000000","MESSAGE":"another tool, key first"}\n'
        # a message that is the key's own name: the entry still has one timestamp (the old
        # count of the key's occurrences made this entry -1 line without a timestamp)
        + _entry(2, "__REALTIME_TIMESTAMP")
        + _entry(3, "[1, 2]", EXTRA="__REALTIME_TIMESTAMP")
    )
    got = cli_json("--rules", str(DATA / "issue-example.yml"), str(export))
    assert (got["lines"], got["undated"]) == (6, 2)


def test_json_export_line_counts_hold_across_chunks_and_line_lengths(tmp_path: Path):
    # Long journal entries (newlines found one by one), then a run of short hand-written lines
    # (counted with bytes.count), over several read chunks, undated lines among both.
    rnd = random.Random(3)
    parts = []
    for i in range(6000):
        k = rnd.random()
        if k < 0.7:
            parts.append(_entry(i, "x" * rnd.randint(300, 1500)))
        elif k < 0.9:
            parts.append('{"MESSAGE":"%s"}\n' % ("y" * rnd.randint(0, 40)))
        elif k < 0.95:
            parts.append("\n")
        else:
            parts.append('{"__REALTIME_TIMESTAMP":"1","MESSAGE":"z"}\n')
    text = "".join(parts)
    assert len(text) > 4 * CHUNK
    export = tmp_path / "j.json"
    export.write_text(text)
    lines = text.split("\n")[:-1]
    got = cli_json("--rules", str(DATA / "issue-example.yml"), str(export))
    assert got["lines"] == len(lines)
    assert got["undated"] == sum('"__REALTIME_TIMESTAMP"' not in x for x in lines)


def test_json_export_of_mostly_other_lines_counts_each_undated_line_once(tmp_path: Path):
    # Hand-written JSON lines, far more than the few a journal export holds: counted in bulk,
    # with the same answer per line -- one holding the key twice is one dated line.
    twice = '{"__REALTIME_TIMESTAMP":"1","MESSAGE":"__REALTIME_TIMESTAMP"}\n'
    text = ('{"MESSAGE":"no time"}\n' + twice + '{"__REALTIME_TIMESTAMP":"2"}\n') * 5000
    export = tmp_path / "j.json"
    export.write_text(_entry(0, "first") + text + _entry(1, "__REALTIME_TIMESTAMP"))
    got = cli_json("--rules", str(DATA / "issue-example.yml"), str(export))
    assert (got["lines"], got["undated"]) == (15002, 5000)
