"""The flood path: what a line is to the rules, remembered by the line's tail, and the engine's
saturated groups. Both must give exactly what classifying every line alone gives."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agent.remediator import matcher as matcher_mod
from agent.remediator.engine import Engine
from agent.remediator.matcher import MAX_LINE, Matcher, Stats, decode
from agent.remediator.regex import first_chars
from agent.remediator.rules import load_rules
from agent.remediator.state import StateDB
from tests.unit.remediator.helpers import rule

PACK = Path(__file__).parents[3] / "files" / "rules.d"


@pytest.mark.parametrize(
    ("pattern", "chars"),
    [
        (r"\[port-sheet\] token error: (?:HTTP Error (?P<status>\d{3})\b)?", "["),
        (r"temporarily_unavailable|server_error", "ts"),
        (r"(?:a|b)*c", "abc"),  # a repeat that may be empty: what follows may begin it
        (r"a?b", "ab"),
        (r"\d+ failures", "0123456789"),
        (r"[x-z]!", "xyz"),
        (r"^token", None),  # an assertion first: a match may begin anywhere it holds
        (r"\btoken", None),
        (r".oken", None),
        (r"[^a]oken", None),
        (r"\w+ error", None),
        (r"(?i)token", None),  # either case
        (r"a*", None),  # matches the empty string
        (r"[[:alpha:]]+ error", None),  # RE2's POSIX class, not a set of characters
        (r"\pL error", None),  # syntax the stdlib's parser does not read
    ],
)
def test_first_chars_of_a_pattern(pattern: str, chars: str | None) -> None:
    got = first_chars(pattern)
    assert got == (frozenset(chars) if chars is not None else None)


def _rules(which: str):
    pack = load_rules([PACK]).rules
    who = rule(  # the group is captured before the literal (a match may begin at any letter)
        name="who-failed",
        match=r"(?P<who>[a-z]+)\[\d+\]: \[port-sheet\] token error: HTTP Error (?P<status>\d+)",
        group_by=["who", "status"],
    )
    quota = rule(  # an ignore that may match before the match's literal, a resolve's group
        name="quota",
        match=r"quota exceeded for (?P<tab>\w+)",
        ignore=[r"dry-run|\[test\]"],
        group_by=["tab"],
        resolve=r"quota restored for (?P<tab>\w+)",
    )
    return {"pack": pack, "pack+quota": [*pack, quota], "pack+who": [*pack, who]}[which]


def _lines(rnd: random.Random, n: int) -> list[bytes]:
    messages = [
        "[port-sheet] token error: HTTP Error 400: invalid_grant: Token has been expired",
        "[port-sheet] token error: HTTP Error 503: temporarily_unavailable",
        "[port-sheet] token error: credential file missing",
        "[port-sheet] sync ok rows=12 requests=3 in 0.4s",
        "[port-sheet] api error: HTTP 403 forbidden",
        "[port-sheet] api error: HTTP 429 Too Many Requests",
        "[port-sheet] permission error: /var/lib/jada-agent/secrets/t.json: Permission denied",
        "google.auth.exceptions.RefreshError: ('invalid_grant: Token has been expired', {})",
        "quota exceeded for Sessions",
        "quota exceeded for Ports",
        "quota restored for Ports",
        "[port-sheet] collected tab=Sessions rows=5",
    ]
    prefixes = [
        "",
        "2026-05-14T08:00:{s:02d}+0000 jada-host port-sheet-sync[{pid}]: ",
        "2026-05-14T08:00:{s:02d}+0000 jada-host sheets[{pid}]: ",
        "dry-run {s} ",  # an ignore word before the literal
        "[test] ",
        "timed out {s}: ",  # the token rule's ignore, before its literal ...
        "dimed out {s}: ",  # ... and a line that differs from it only there
    ]
    out = []
    for _ in range(n):
        pre = rnd.choice(prefixes).format(s=rnd.randrange(60), pid=rnd.choice((812, 813, 9)))
        line = (pre + rnd.choice(messages)).encode()
        k = rnd.random()
        if k < 0.02:
            line = line[:10] + b"\xff\xfe" + line[10:]  # not UTF-8
        elif k < 0.03:
            line = line + b" " + b"z" * MAX_LINE  # cut at MAX_LINE
        out.append(line)
    return out


def _alone(rules, engine: Engine, lines: list[bytes]) -> list[tuple[str, tuple]]:
    """Every line on its own, every rule on it (what the matcher must agree with)."""
    want = []
    for raw in lines:
        line = decode(raw[:MAX_LINE], Stats())
        found = tuple(
            (i, *engine.classify_keyed(r, line))
            for i, r in enumerate(rules)
            if engine.classify(r, line)[0] != "nomatch"
        )
        if found:
            want.append((line, found))
    return want


def _resolving(found, rules, names):
    # What the service acts on: every count and ignore, a resolve only for a rule with
    # something to resolve (the matcher leaves the others out when it is told which).
    return [
        (line, tuple(x for x in got if x[1] != "resolve" or rules[x[0]].name in names))
        for line, got in found
    ]


@pytest.mark.parametrize("names", [None, set(), {"sheet-sync-token", "quota"}])
@pytest.mark.parametrize("which", ["pack", "pack+quota", "pack+who"])
@pytest.mark.parametrize("memo_entries", [2048, 3])
def test_classified_equals_every_line_classified_alone(
    monkeypatch, memo_entries: int, which: str, names: set[str] | None
) -> None:
    monkeypatch.setattr(matcher_mod, "MEMO_ENTRIES", memo_entries)
    rules = _rules(which)
    engine = Engine(StateDB())
    m = Matcher(rules, resolvable=None if names is None else lambda: names)
    assert m._key_at is not None  # the pack and these rules all have known first characters
    lines = _lines(random.Random(11), 4000)
    buf = b"\n".join(lines) + b"\n"
    want = _alone(rules, engine, lines)
    assert len(want) > 1000
    if names is not None:
        want = [(line, got) for line, got in _resolving(want, rules, names) if got]
    for _ in range(2):  # the second time every tail is remembered (unless the memo is tiny)
        stats = Stats()
        got = list(m.classified(buf, len(buf), stats, engine.classify_keyed))
        if names is not None:
            got = [(line, g) for line, g in _resolving(got, rules, names) if g]
        assert got == want
        assert stats.bytes == len(buf) and stats.cut > 0 and stats.invalid_utf8 > 0


def test_rules_without_known_first_characters_take_the_plain_path() -> None:
    rules = [rule(match=r"\btoken error: HTTP Error (?P<status>\d+)")]
    engine = Engine(StateDB())
    m = Matcher(rules)
    assert m._key_at is None
    lines = [b"x token error: HTTP Error 400", b"xtoken error: HTTP Error 401", b"token error: x"]
    buf = b"\n".join(lines) + b"\n"
    got = list(m.classified(buf, len(buf), Stats(), engine.classify_keyed))
    assert got == _alone(rules, engine, lines)
    assert [line for line, _ in got] == ["x token error: HTTP Error 400"]


def test_a_flood_in_one_batch_leaves_the_state_a_line_by_line_reading_leaves() -> None:
    # The saturated shortcut (a full window in cooldown at the batch's time) must change
    # nothing: same fires, same windows, same breaker as feeding every line alone.
    r = rule(threshold=3, cooldown="1h", breaker={"max_runs": 2, "within": "24h"})
    line = "[port-sheet] token error: HTTP Error 400"
    fast, slow = Engine(StateDB()), Engine(StateDB())
    fired_fast, fired_slow = [], []
    for t in (0.0, 10.0, 4000.0, 4001.0, 9000.0):  # fire, cooldown, fire, cooldown, breaker
        with fast.batch():
            for k in range(500):
                outcome, group, key = fast.classify_keyed(r, line)
                assert outcome == "counted"
                sat = fast.saturated.get(key)
                if sat is not None and sat[0] == t:
                    continue
                d = fast.count(r, group, t, key)
                if d.fired or d.breaker_opened:
                    fired_fast.append((t, k, d.fired, d.breaker_opened))
        for k in range(500):
            d = slow.observe(r, line, t)
            if d.fired or d.breaker_opened:
                fired_slow.append((t, k, d.fired, d.breaker_opened))
    assert fired_fast == fired_slow, (fired_fast, fired_slow)
    # the matches of a cooldown stay in the window: the first after it ends fires at once
    assert fired_slow == [
        (0.0, 2, True, False),
        (4000.0, 0, True, False),
        (9000.0, 0, False, True),
    ]
    assert fast.state.windows == slow.state.windows
    assert fast.state.groups == slow.state.groups
