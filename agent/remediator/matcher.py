"""The matcher: which lines of a buffer each rule must look at, in one pass for all the rules.

Used by the live file source (``service.Remediator.read_file``) and by the offline tester
(``replay``), so both see exactly the same lines. The byte-level pass is the fast path
(:mod:`agent.remediator.fastpath`); a rule whose pattern could not be reduced to literals or
pattern alternatives (one anchored with ``\\A``/``\\z``) searches every line. Lines are cut at
``MAX_LINE`` bytes before any pattern sees them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.remediator.fastpath import Prefilter
from agent.remediator.rules import Rule

MAX_LINE = 64 * 1024


@dataclass
class Stats:
    lines: int = 0  # journal entries (file lines are not counted on the fast path)
    bytes: int = 0
    candidates: int = 0  # lines holding a rule's literal, decoded and searched
    cut: int = 0  # lines longer than MAX_LINE
    invalid_utf8: int = 0  # decoded lines (candidates, journal messages) that were not UTF-8
    rotations: int = 0
    truncations: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


def _line_anchored(pattern: str) -> bool:
    # \A and \z mean the whole text: inside a buffer of many lines they would not hold.
    p = pattern.replace("\\\\", "")
    return "\\A" in p or "\\z" in p


class Matcher:
    """Finds, in buffers of complete lines, the lines each rule must look at."""

    def __init__(self, rules: Iterable[Rule], max_line: int = MAX_LINE):
        self.rules = list(rules)
        self.max_line = max_line
        literals: dict[bytes, set[int]] = {}
        patterns: dict[str, set[int]] = {}
        self.every_line: list[int] = []  # rules searched on every line
        for i, r in enumerate(self.rules):
            parts = [(r.match, r.match_literals)]
            if r.resolve is not None:
                parts.append((r.resolve, r.resolve_literals))
            if any(lits is None and _line_anchored(p.pattern) for p, lits in parts):
                self.every_line.append(i)
                continue
            for p, lits in parts:
                if lits is None:
                    patterns.setdefault(p.pattern, set()).add(i)
                else:
                    for lit in lits:
                        literals.setdefault(lit, set()).add(i)
        self.targets: list[list[int]] = [sorted(v) for v in literals.values()]
        self.targets += [sorted(v) for v in patterns.values()]
        self.prefilter = Prefilter(list(literals), list(patterns), max_line)

    def scan(
        self, buf: bytes | bytearray, stats: Stats, end: int | None = None
    ) -> list[tuple[Rule, str]]:
        """``(rule, line)`` pairs in line order; ``buf[:end]`` holds complete lines."""
        end = len(buf) if end is None else end
        stats.bytes += end
        cap = self.max_line
        # A line longer than the cap contains a whole aligned half-size block with no newline:
        # one memchr per half block finds the candidates, only those are measured exactly.
        if end > cap:
            half = cap // 2
            last_s = -1
            i = 0
            while i < end:
                if buf.find(b"\n", i, min(i + half, end)) < 0:
                    s = buf.rfind(b"\n", 0, i) + 1
                    e = buf.find(b"\n", i, end)
                    if e < 0:
                        e = end
                    if e - s > cap and s != last_s:
                        stats.cut += 1
                        last_s = s
                    i = max(e + 1, i + half)
                else:
                    i += half
        if not self.rules:
            return []
        hits: dict[int, tuple[bytes, set[int]]] = {}
        targets = self.targets
        for s, line, alts in self.prefilter.lines(buf, end):
            idxs = {x for a in alts for x in targets[a]}
            hits[s] = (line, idxs)
        if self.every_line:
            s = 0
            data = bytes(buf[:end])
            for raw in data.split(b"\n")[:-1]:
                if s in hits:
                    hits[s][1].update(self.every_line)
                else:
                    hits[s] = (raw[:cap], set(self.every_line))
                s += len(raw) + 1
        out: list[tuple[Rule, str]] = []
        stats.candidates += len(hits)
        rules = self.rules
        for s in sorted(hits) if self.every_line else hits:
            raw, idxs = hits[s]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                # Only lines a rule looks at are ever decoded; those are counted.
                stats.invalid_utf8 += 1
                line = raw.decode("utf-8", "replace")
            if len(idxs) == 1:
                out.append((rules[next(iter(idxs))], line))
            else:
                out.extend((rules[i], line) for i in sorted(idxs))
        return out
