"""The prefilter's two engines (RE2, and the ``re`` twin a dense pass takes) find the same
lines, and the matcher skips a flood's lines in cooldown exactly when handling them would
change nothing."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agent.remediator.engine import Engine
from agent.remediator.fastpath import PLAN_SAMPLE, Prefilter
from agent.remediator.matcher import MAX_LINE, Matcher, Stats
from agent.remediator.rules import load_rules
from agent.remediator.state import StateDB
from tests.unit.remediator.helpers import rule

PACK = Path(__file__).parents[3] / "files" / "rules.d"

MESSAGES = [
    "[port-sheet] token error: HTTP Error 400: invalid_grant: Token has been expired",
    "[port-sheet] sync ok rows=12 requests=3 in 0.4s",
    "[port-sheet] api error: HTTP 429 Too Many Requests",
    "[port-sheet] permission error: /var/lib/jada-agent/secrets/t.json: Permission denied",
    "google.auth.exceptions.RefreshError: ('invalid_grant: Token has been expired', {})",
    "PermissionError: [Errno 13] Permission denied: '/var/lib/x'",
    "[port-sheet] collected tab=Sessions rows=5",
    "[port-sheet] deployed marker unchanged sha=6f03675a",
    "ken error: mission error: ync ok",  # the re-anchored parts of literals, not the literals
    "x [port-sheet] sync ok and [port-sheet] token error: twice in a line",
    "",
]


def _log(rnd: random.Random, n: int, dense: float) -> bytes:
    lines = []
    for i in range(n):
        msg = rnd.choice(MESSAGES if rnd.random() < dense else MESSAGES[6:8])
        pre = f"2026-05-14T08:{i // 60 % 60:02d}:{i % 60:02d}+0000 h port-sheet-sync[{812 + i // 500}]: "
        lines.append((pre + msg).encode())
    if rnd.random() < 0.5:
        lines.append(b"z" * (MAX_LINE + 10) + b" [port-sheet] token error: far beyond the cut")
    return b"\n".join(lines) + (b"\n" if rnd.random() < 0.5 else b"")


def _force(monkeypatch, engine: str) -> None:
    monkeypatch.setattr(Prefilter, "engine", engine)


@pytest.mark.parametrize("seed", range(6))
def test_the_twin_of_every_pass_finds_the_lines_re2_finds(seed: int) -> None:
    rnd = random.Random(seed)
    m = Matcher(load_rules([PACK]).rules)
    pf = m.prefilter
    buf = bytearray(_log(rnd, 6000, dense=rnd.choice((0.01, 0.3, 0.9))))
    assert len(buf) > PLAN_SAMPLE
    pf.plan(buf[:PLAN_SAMPLE])
    twins = [pf.twin(p, buf[:PLAN_SAMPLE]) for p in range(len(pf.passes))]
    assert any(t is not None for t in twins)
    for p, twin in enumerate(twins):
        if twin is None:
            continue
        for start, stop in ((0, len(buf)), (0, len(buf) - 7), (1000, len(buf))):
            want = pf._ends(pf.passes[p], buf, stop)
            got = pf._twin_ends(twin, buf, stop)
            if start:  # a search may begin inside a line too
                want = Prefilter._ends(pf.passes[p], buf[start:], stop - start)
                got = Prefilter._twin_ends(twin, buf[start:], stop - start)
            assert got == want and want


@pytest.mark.parametrize("engine", ["re2", "twin"])
def test_either_engine_gives_the_matcher_the_same_lines(monkeypatch, engine: str) -> None:
    rules = load_rules([PACK]).rules
    logs = [_log(random.Random(k), 5000, dense=d) for k, d in enumerate((0.02, 0.5))]
    reference = []
    for buf in logs:
        plain = Matcher(rules)  # the lines as the plain path finds them
        reference.append([(s, raw) for s, raw, idxs in plain.candidates(buf, len(buf), Stats())])
    _force(monkeypatch, engine)
    for buf, want in zip(logs, reference, strict=True):
        m = Matcher(rules)
        got = [(s, raw) for s, raw, idxs in m.candidates(buf, len(buf), Stats())]
        assert got == want and len(want) > 50
        built = [t for t in m.prefilter.twins if t is not None]
        assert bool(built) == (engine == "twin")  # the pack's passes of literals have twins


@pytest.mark.parametrize("engine", ["re2", "twin"])
@pytest.mark.parametrize("chunk", [PLAN_SAMPLE + 1, 1 << 20])
def test_a_flood_skipped_in_the_matcher_leaves_what_every_line_alone_leaves(
    monkeypatch, engine: str, chunk: int
) -> None:
    # A flood in cooldown is not handed over line by line (the matcher skips a line that is
    # one counted match of a saturated group). The fires, windows and breaker must be those
    # of observing every line alone, whatever the matches and resolves between them.
    _force(monkeypatch, engine)
    r = rule(
        match=r"\[port-sheet\] token error: (?:HTTP Error (?P<status>\d{3})\b)?",
        group_by=["status"],
        threshold=3,
        cooldown="1h",
        breaker={"max_runs": 2, "within": "24h"},
        resolve=r"\[port-sheet\] sync ok\b",
    )
    rnd = random.Random(5)
    rows = []
    for i in range(30000):
        k = rnd.random()
        if k < 0.1:
            msg = f"[port-sheet] token error: HTTP Error {rnd.choice((400, 400, 400, 401))}: x"
        elif k < 0.105:
            msg = "[port-sheet] sync ok rows=3"
        else:
            msg = f"[port-sheet] collected tab=Tasks rows={rnd.randrange(500)}"
        rows.append(
            f"2026-05-14T08:00:{i % 60:02d}+0000 h port-sheet-sync[{812 + i // 3000}]: {msg}"
        )
    buf = ("\n".join(rows) + "\n").encode()
    fast, slow = Engine(StateDB()), Engine(StateDB())
    m = Matcher([r])
    got, want = [], []
    skipped = 0
    for t in (0.0, 10.0, 4000.0, 4001.0, 9000.0):
        with fast.batch():
            a = 0
            while a < len(buf):  # buffers of whole lines, as the file source hands them over
                piece = buf[a : a + chunk]
                piece = piece[: piece.rfind(b"\n") + 1]
                a += len(piece)
                seen = 0
                for line, found in m.classified(
                    piece, len(piece), Stats(), fast.classify_keyed, fast.saturated, t
                ):
                    seen += 1
                    for _i, outcome, group, key in found:
                        if outcome == "counted":
                            d = fast.count(r, group, t, key)
                            if d.fired or d.breaker_opened:
                                got.append((t, line, d.fired, d.breaker_opened))
                        elif outcome == "resolve":
                            got.append((t, line, "resolve"))
                skipped += piece.count(b"token error") - seen
        for line in rows:
            d = slow.observe(r, line, t)
            if d.fired or d.breaker_opened:
                want.append((t, line, d.fired, d.breaker_opened))
            elif d.outcome == "resolve":
                want.append((t, line, "resolve"))
    assert got == want
    assert fast.state.windows == slow.state.windows
    assert fast.state.groups == slow.state.groups
    assert skipped > 10000  # most of the flood was never handed over


def test_a_line_skipped_in_one_batch_is_handed_over_in_the_next_even_at_the_same_time() -> None:
    # What the matcher learnt to skip holds for one batch: the next begins with the engine's
    # saturated groups emptied (a person's reset may have emptied the windows meanwhile), so
    # the same lines at the same time are handed over again.
    r = rule(threshold=3, cooldown="1h")
    line = b"2026-05-14T08:00:01+0000 h port-sheet-sync[812]: [port-sheet] token error: HTTP Error 400\n"
    buf = line * 50
    engine, m = Engine(StateDB()), Matcher([r])

    def handed(t: float) -> int:
        n = 0
        for _line, found in m.classified(
            buf, len(buf), Stats(), engine.classify_keyed, engine.saturated, t
        ):
            n += 1
            for _i, outcome, group, key in found:
                if outcome == "counted":
                    engine.count(r, group, t, key)
        return n

    with engine.batch():
        first = handed(5.0)
        again = handed(5.0)  # the same batch: every line now known to change nothing
    assert 3 <= first < 50 and again == 0
    with engine.batch():
        assert handed(5.0) >= 1  # a new batch: looked at again
