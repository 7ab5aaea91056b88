"""Rule files: validation errors name file, rule and key; later files override by name."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.remediator.regex import required_literals
from agent.remediator.rules import RuleError, load_rules
from tests.unit.remediator.helpers import write_rules

BASE = {
    "name": "r1",
    "source": {"file": "/var/log/a.log"},
    "match": "boom (?P<code>\\d+)",
    "threshold": 2,
    "within": "10m",
}


@pytest.mark.parametrize(
    ("change", "key", "expected"),
    [
        ({"match": "boom ("}, "match", "valid RE2 regular expression"),
        ({"match": r"(?P<code>\w+) \1"}, "match", "backreference"),
        ({"ignore": ["x(?=y)"]}, "ignore[0]", "lookahead or lookbehind"),
        ({"resolve": "(?<!not )ok"}, "resolve", "negative lookahead or lookbehind"),
        ({"match": "(?P<code>a++)"}, "match", "possessive quantifier"),
        ({"within": "ten minutes"}, "within", "duration"),
        ({"threshold": 0}, "threshold", "at least 1"),
        ({"group_by": ["nope"]}, "group_by", "names of groups in match"),
        ({"source": {"file": "relative.log"}}, "source.file", "absolute"),
        ({"source": {"journal": {"unit": "bad unit"}}}, "source.journal.unit", "unit name"),
        ({"action": {"playbook": "../x.yml"}}, "action.playbook", "playbook file name"),
        (
            {"action": {"playbook": "x.yml", "extravars": {"jada_rule": 1}}},
            "action.extravars.jada_rule",
            "not set",
        ),
        ({"breaker": {"max_runs": 0}}, "breaker.max_runs", "at least 1"),
        ({"cooldwn": "1h"}, "cooldwn", "one of"),
    ],
)
def test_errors_name_the_file_the_rule_and_the_key(tmp_path: Path, change, key, expected):
    f = write_rules(tmp_path / "rules.d" / "a.yml", {**BASE, **change})
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path / "rules.d"])
    text = str(info.value)
    assert str(f) in text and "rule 'r1'" in text and key in text and expected in text


def test_missing_required_key_is_named(tmp_path: Path):
    data = dict(BASE)
    del data["within"]
    write_rules(tmp_path / "d" / "a.yml", data)
    with pytest.raises(RuleError, match="rule 'r1': within: expected a value"):
        load_rules([tmp_path / "d"])


def test_invalid_yaml_names_the_line(tmp_path: Path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.yml").write_text("rules:\n  - name: [\n")
    with pytest.raises(RuleError, match=r"a\.yml: line 3: expected valid YAML"):
        load_rules([tmp_path / "d"])


def test_a_later_directory_overrides_a_rule_by_name_and_can_disable_one(tmp_path: Path):
    write_rules(tmp_path / "pkg" / "50.yml", BASE, {**BASE, "name": "r2"})
    write_rules(tmp_path / "local" / "10.yml", {**BASE, "threshold": 7})
    (tmp_path / "local" / "20.yml").write_text("rules:\n  - {name: r2, enabled: false}\n")
    rs = load_rules([tmp_path / "pkg", tmp_path / "local"])
    assert [(r.name, r.threshold) for r in rs.rules] == [("r1", 7)]
    assert rs.rules[0].file.endswith("local/10.yml")


def test_required_literals_are_found_for_sequences_and_alternations():
    assert required_literals(re.compile(r"\[port-sheet\] token error: HTTP (\d+)")) == (
        b"[port-sheet] token error: HTTP ",
    )
    assert required_literals(re.compile(r"(?:foo error|bar failure) x")) is not None
    assert required_literals(re.compile(r"(?i)foo bar")) is None
    assert required_literals(re.compile(r"\d+ \w+")) is None


def test_literal_prefilter_never_rejects_a_line_the_regex_matches():
    patterns = [
        r"\[port-sheet\] token error: HTTP Error (?P<status>4\d\d)\b",
        r"RefreshError\b.*?\b(?P<e>invalid_grant|invalid_client)\b",
        r"(?:Permission denied|PermissionError)\b.*?(?P<p>/\S*token\S*)",
        r"a(?:bc|bd)e+f",
    ]
    lines = [
        "[port-sheet] token error: HTTP Error 401: invalid_client",
        "google.auth.exceptions.RefreshError: ('invalid_grant: Token', {})",
        "PermissionError: [Errno 13] Permission denied: '/var/lib/x/secrets/google-token.json'",
        "abdeef",
        "abcef",
    ]
    for p in patterns:
        rx = re.compile(p)
        lits = required_literals(rx)
        assert lits
        for line in lines:
            if rx.search(line):
                assert any(lit in line.encode() for lit in lits), (p, line)


def _check(*rules_dirs: str | Path) -> subprocess.CompletedProcess[str]:
    """``jada-agent remediator check`` on these rule directories, in order."""
    args = [a for d in rules_dirs for a in ("--rules-dir", str(d))]
    return subprocess.run(
        [sys.executable, "-m", "agent", "remediator", "check", *args],
        capture_output=True,
        text=True,
    )


def test_check_command_accepts_the_packaged_pack_and_rejects_a_bad_file(tmp_path: Path):
    ok = _check("files/rules.d")
    assert ok.returncode == 0, ok.stderr
    assert "sheet-sync-token" in ok.stdout
    write_rules(tmp_path / "bad" / "x.yml", {**BASE, "threshold": "three"})
    bad = _check("files/rules.d", tmp_path / "bad")
    assert bad.returncode == 64
    assert "x.yml: rule 'r1': threshold: expected an integer of at least 1" in bad.stderr


def test_check_refuses_backtracking_syntax_with_a_message_naming_it(tmp_path: Path):
    write_rules(tmp_path / "bad" / "x.yml", {**BASE, "match": r"(?P<code>\w+) again \1"})
    bad = _check(tmp_path / "bad")
    assert bad.returncode == 64
    assert "x.yml: rule 'r1': match: expected a valid RE2 regular expression" in bad.stderr
    assert "a backreference" in bad.stderr and "not supported" in bad.stderr
    assert "Traceback" not in bad.stderr and "re2.cc" not in bad.stderr  # no RE2 log noise


def test_a_catastrophic_backtracking_pattern_matches_in_linear_time():
    # Python's re never finishes on this line (2^n ways to split the run); RE2 answers at once.
    from tests.unit.remediator.helpers import rule

    r = rule(match=r"^ERROR (?P<w>\w+\s?)+$")
    line = "ERROR " + "a" * 5000 + "!"  # exponential for a backtracking engine
    assert r.match.search(line) is None
    assert r.match.search("ERROR a b c").group("w") == "c"
