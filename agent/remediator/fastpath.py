"""The matcher's fast path: RE2 over whole buffers of lines finds the lines any rule may match.

The bulk of a log matches no rule, and splitting it into Python strings is what costs. So the
buffer is searched as bytes with RE2, never line by line in Python. The alternatives the
matcher hands in are the rules' required literals (``regex.required_literals``) and, for a rule
that has none (``(?i)...``), its whole pattern, line-anchored with ``(?m)``.

How the buffer is searched is planned from the first large buffer (a sample of the log itself):

- one RE2 alternation of everything: one DFA pass, whose cost does not grow with the number of
  rules (~0.7 GB/s here);
- or, when the log makes it cheaper, the literals re-anchored at their rarest byte in this log
  (any part of a required literal is required too) and grouped by that byte: each group is one
  RE2 pass that skips with ``memchr`` to the byte (several GB/s when it is rare). A log whose
  every line starts with ``[port-sheet] `` makes ``[`` a poor anchor and ``R`` of
  ``RefreshError`` a good one.

Each hit is widened to its line, cut at ``max_line`` bytes, and an ``re2.Set`` of the original
alternatives names which of them the line holds; the caller runs only those rules' full
patterns on it. No line that holds an alternative is missed: a match inside a line is also a
match in the buffer, and each pass resumes at the start of the next line after a hit.

A call into RE2 costs about a microsecond, which a flood pays on every line it logs (10 % of a
log matching: 100 k calls for 1 M lines). A pass of literals therefore has a twin in Python's
``re``, one C loop over the whole buffer that hands back every hit at a tenth of that cost but
scans slower where the hits are rare. Each buffer takes the engine that is cheaper for the hits
its pass found in the previous buffer, as costed when the twin is built (both engines timed on
the buffer that first made the pass dense).
The two find the same lines: both look for the same literals, and a hit stands for its line.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial

import re2

from agent.remediator.regex import UNANCHORED

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False

PLAN_SAMPLE = 256 * 1024  # a buffer at least this large is a sample worth planning from
DFA_BYTES_PER_S = 0.7e9  # measured: RE2's DFA over an alternation that cannot be accelerated
MEMCHR_BYTES_PER_S = 8e9  # an RE2 pass with a literal first byte (memchr)
HIT_COST_S = 25e-9  # each occurrence of that byte restarts RE2's DFA for a few bytes
FRONT_HIT_COST_S = 10e-9  # each occurrence of a prefix's first byte restarts memchr
MIN_ANCHOR = 4  # a re-anchored literal keeps at least this many bytes
PREFIX_MIN = 8  # literals sharing this many leading bytes may share one prefix-accelerated pass
RE2_HIT_S = 0.9e-6  # measured: one call into RE2 (pybind11, a search set up) and its line
TWIN_HIT_S = 0.1e-6  # measured: one hit of a finditer in Python's re, and its line
# Hits per byte from which a pass's twin may pay: RE2's per-hit cost saved then outweighs a
# slower scan by some 0.1 ns a byte (a line in 10 kB; a healthy log has one in 100 kB or less).
DENSE = 1e-4


def _compile(alternatives: Sequence[bytes]) -> re2._Regexp:
    return re2.compile(b"(?m)" + b"|".join(b"(?:" + a + b")" for a in alternatives), _OPTIONS)


def _twin(literals: Sequence[bytes]) -> re.Pattern[bytes]:
    """The literals as one ``re`` pattern whose match runs to the end of the line (a line is
    found once). The stdlib factors a prefix the literals share out of the alternation and
    skips to it: ``[port-sheet] (?:token error: |sync ok)``."""
    return re.compile(b"(?:" + b"|".join(re.escape(x) for x in literals) + b")[^\n]*")


def _best_of(fn: Callable[[], object], times: int = 3) -> float:
    best = float("inf")
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


class Prefilter:
    """Candidate lines of a buffer and the alternatives (by index) each one holds."""

    # Which engine a pass of literals takes: "auto" (the cheaper, as costed), "re2" or "twin"
    # (the tests and the benchmark compare them).
    engine = "auto"

    def __init__(
        self,
        alternatives: Sequence[bytes],
        literals: Sequence[bytes | None] | None = None,
        max_line: int = 0,
    ):
        self.alternatives = list(alternatives)
        self.literals = list(literals) if literals is not None else [None] * len(alternatives)
        self.count = len(self.alternatives)
        self.max_line = max_line
        self.planned = False
        # One pass of everything until a sample says otherwise.
        self.passes: list[re2._Regexp] = [_compile(self.alternatives)] if self.count else []
        self._new_passes([None] * len(self.passes))
        self.set: re2.Set | None = None
        if self.count > 1:
            self.set = re2.Set.SearchSet(_OPTIONS)
            for alt in self.alternatives:
                self.set.Add(b"(?m)(?:" + alt + b")")
            self.set.Compile()

    def _new_passes(self, groups: list[list[bytes] | None]) -> None:
        """Per pass: the literals of a pass of literals (its twin in ``re`` is built from them
        once the pass is dense), the twin, the seconds per byte of a scan by RE2 and by the
        twin (timed when it is built), and the hits per byte in the last buffer."""
        self.groups = groups
        self.twins: list[re.Pattern[bytes] | None] = [None] * len(groups)
        self._per_byte: list[tuple[float, float]] = [(0.0, 0.0)] * len(groups)
        self._density: list[float] = [0.0] * len(groups)

    def plan(self, sample: bytes | bytearray) -> str:
        """Choose the passes for logs like ``sample``; returns a description of the plan.

        Three candidates, costed per byte of log from the sample: one DFA pass of everything;
        every literal re-anchored at its rarest byte, one memchr pass per anchor byte; and
        literals sharing a long prefix (``[port-sheet] token error: ``, ``[port-sheet] sync
        ok``) as one pass each, which RE2 accelerates on the prefix, the others re-anchored.
        """
        self.planned = True
        n = max(len(sample), 1)
        freq: dict[bytes, float] = {}

        def f(s: bytes) -> float:
            if s not in freq:
                freq[s] = sample.count(s) / n
            return freq[s]

        def rarity(lit: bytes, i: int) -> tuple[float, int]:
            return (f(lit[i : i + 1]), i)  # the rarer the byte at i, the fewer hits

        def anchored(lits: list[bytes]) -> dict[bytes, list[bytes]]:
            # Each literal at its rarest byte; then fewer passes where a literal also holds
            # another group's byte: a group whose literals all fit elsewhere is dropped when
            # the pass it saves costs more than the extra hits (greedy, rarest groups kept).
            at = {lit: min(range(max(len(lit) - MIN_ANCHOR, 0) + 1), key=partial(rarity, lit))
                  for lit in lits}  # fmt: skip
            keys = {lit[p : p + 1] for lit, p in at.items()}
            for k in sorted(keys, key=f, reverse=True):
                moved = {}
                for lit, p in at.items():
                    if lit[p : p + 1] != k:
                        continue
                    others = [
                        i
                        for i in range(max(len(lit) - MIN_ANCHOR, 0) + 1)
                        if lit[i : i + 1] in keys and lit[i : i + 1] != k
                    ]
                    if not others:
                        break
                    moved[lit] = min(others, key=partial(rarity, lit))
                else:
                    extra = sum(f(lit[i : i + 1]) - f(k) for lit, i in moved.items())
                    if max(extra, 0.0) * HIT_COST_S < 1 / MEMCHR_BYTES_PER_S:
                        at.update(moved)
                        keys.discard(k)
            groups: dict[bytes, list[bytes]] = {}
            for lit, p in at.items():
                groups.setdefault(lit[p : p + 1], []).append(lit[p:])
            return groups

        def cost(groups: dict[bytes, list[bytes]]) -> float:
            # Per byte of log: a memchr-speed pass per group, and per hit of its key a DFA
            # restart. RE2 accelerates a longer shared prefix with memchr on its first byte
            # (then a look at its last): every occurrence of that byte costs a memchr restart
            # -- a prefix starting with '"' in JSON is one every ten bytes.
            return sum(
                1 / MEMCHR_BYTES_PER_S
                + f(k) * HIT_COST_S
                + (f(k[:1]) * FRONT_HIT_COST_S if len(k) > 1 else 0.0)
                for k in groups
            )

        rest = [a for a, lit in zip(self.alternatives, self.literals, strict=True) if lit is None]
        lits = sorted(
            {lit for lit in self.literals if lit is not None and len(lit) >= 2}, key=bytes
        )
        dfa = 1 / DFA_BYTES_PER_S
        extra = dfa if rest else 0.0
        # Literals sharing a prefix of PREFIX_MIN bytes or more, keyed by that prefix.
        by_prefix: dict[bytes, list[bytes]] = {}
        for lit in lits:
            by_prefix.setdefault(lit[:PREFIX_MIN], []).append(lit)
        shared = {k: v for k, v in by_prefix.items() if len(v) > 1 and len(k) == PREFIX_MIN}
        alone = [lit for lit in lits if lit[:PREFIX_MIN] not in shared]
        plans = {
            "anchored": (cost(anchored(lits)) + extra, anchored(lits)),
            "prefixed": (
                cost(shared) + cost(anchored(alone)) + extra,
                {**shared, **anchored(alone)},
            ),
        }
        name, (best, groups) = min(plans.items(), key=lambda kv: kv[1][0])
        if not lits or best >= dfa:
            if not rest and lits:  # one pass of the literals themselves: it may have a twin
                self._new_passes([list(dict.fromkeys(x for x in self.literals if x))])
            return f"one DFA pass over {self.count} alternatives"
        literal_groups = [list(dict.fromkeys(g)) for g in groups.values()]
        self.passes = [_compile([re.escape(x) for x in g]) for g in literal_groups]
        if rest:
            self.passes.append(_compile(rest))
        self._new_passes([*literal_groups, *([None] if rest else [])])
        keys = ", ".join(repr(k.decode("utf-8", "replace")) for k in groups)
        return f"{len(self.passes)} passes, {name} ({keys}{' + DFA' if rest else ''})"

    def twin(self, p: int, sample: bytes | bytearray) -> re.Pattern[bytes] | None:
        """Pass ``p``'s twin in ``re`` (None for a pass that is not of literals), built and
        timed against RE2 on ``sample`` the first time: the seconds per byte each engine takes
        beside its hits (the best of three, so a moment's wait for a core does not count)."""
        if self.twins[p] is None and self.groups[p]:
            twin = _twin(self.groups[p] or [])
            rx = self.passes[p]
            n = max(len(sample), 1)
            hits = len(self._ends(rx, sample, len(sample)))
            t_re2 = _best_of(partial(self._ends, rx, sample, len(sample)))
            t_twin = _best_of(partial(self._twin_ends, twin, sample, len(sample)))
            self._per_byte[p] = (
                max(t_re2 - hits * RE2_HIT_S, 0.0) / n,
                max(t_twin - hits * TWIN_HIT_S, 0.0) / n,
            )
            self.twins[p] = twin
        return self.twins[p]

    def _pass_ends(self, p: int, buf: bytes | bytearray, end: int) -> list[int]:
        """Pass ``p`` over ``buf[:end]`` by the engine cheaper for as many hits as the last
        buffer had; this buffer's hits are the next one's estimate. A pass gets its twin once
        a buffer is dense enough that the twin may be cheaper (a sparse log never pays for
        building and timing it)."""
        rx, twin = self.passes[p], self.twins[p]
        if not self.groups[p] or self.engine == "re2":
            return self._ends(rx, buf, end)
        if twin is None:
            if self.engine == "auto":
                out = self._ends(rx, buf, end)
                if len(out) >= DENSE * end:  # dense: timed on this buffer, taken from the next
                    self.twin(p, buf[: min(end, PLAN_SAMPLE)])
                    self._density[p] = len(out) / max(end, 1)
                return out
            twin = self.twin(p, buf[: min(end, PLAN_SAMPLE)])
            assert twin is not None
        re2_per_byte, twin_per_byte = self._per_byte[p]
        hits = self._density[p]
        if self.engine == "auto" and (
            re2_per_byte + hits * RE2_HIT_S <= twin_per_byte + hits * TWIN_HIT_S
        ):
            out = self._ends(rx, buf, end)
        else:
            out = self._twin_ends(twin, buf, end)
        self._density[p] = len(out) / max(end, 1)
        return out

    def ends(self, buf: bytes | bytearray, end: int) -> list[int]:
        """The end of each line in ``buf[:end]`` where a pass hits (its newline, or ``end``),
        in order, each line once (a hit of a re-anchored literal is not yet a line holding an
        alternative: the ``Set`` says)."""
        if not self.passes:
            return []
        if not self.planned and end >= PLAN_SAMPLE:
            self.plan(buf[:PLAN_SAMPLE])
        if len(self.passes) == 1:
            return self._pass_ends(0, buf, end)
        runs = [r for r in (self._pass_ends(p, buf, end) for p in range(len(self.passes))) if r]
        if len(runs) <= 1:
            return runs[0] if runs else []
        return sorted(set().union(*runs))

    def spans(self, buf: bytes | bytearray, end: int) -> Iterator[tuple[int, bytes]]:
        """``(start, line cut at max_line)`` of each line of ``buf[:end]`` where a pass hits.

        With one alternative (no ``Set`` to ask later) a line whose only hit lay beyond the cut
        is left out here."""
        rfind = buf.rfind
        cap = self.max_line
        for e in self.ends(buf, end):
            s = rfind(b"\n", 0, e) + 1
            line = bytes(buf[s : min(e, s + cap)] if cap else buf[s:e])
            if self.beyond_cut(line, e - s):
                continue
            yield s, line

    def beyond_cut(self, line: bytes, length: int) -> bool:
        """A line cut from ``length`` bytes whose only hit lay beyond the cut (one pass, no
        ``Set`` to ask later)."""
        return (
            self.set is None
            and bool(self.max_line)
            and length > self.max_line
            and self.passes[0].search(line) is None
        )

    def lines(self, buf: bytes | bytearray, end: int) -> Iterator[tuple[int, bytes, list[int]]]:
        """``(start, line, alternatives)`` of each line in ``buf[:end]`` that holds one."""
        for s, line in self.spans(buf, end):
            if self.set is None:
                yield s, line, [0]
                continue
            ids = self.set.Match(line)
            if ids:
                yield s, line, ids

    @staticmethod
    def _twin_ends(twin: re.Pattern[bytes], buf: bytes | bytearray, end: int) -> list[int]:
        # A match runs to the end of its line: the next search starts at the next line.
        return list(map(re.Match.end, twin.finditer(buf, 0, end)))

    @staticmethod
    def _ends(rx: re2._Regexp, buf: bytes | bytearray, end: int) -> list[int]:
        find = buf.find
        out: list[int] = []
        add = out.append
        raw = getattr(rx, "_regexp", None)
        pos = 0
        if raw is not None and UNANCHORED is not None:
            match = raw.Match  # RE2 itself: only the span is needed, not a match object
            while pos < end:
                i = match(UNANCHORED, buf, pos, end)[0][0]
                if i < 0:
                    break
                e = find(b"\n", i, end)
                if e < 0:
                    e = end
                add(e)
                pos = e + 1
            return out
        while pos < end:
            m = rx.search(buf, pos, end)
            if m is None:
                break
            e = find(b"\n", m.start(), end)
            if e < 0:
                e = end
            add(e)
            pos = e + 1
        return out
