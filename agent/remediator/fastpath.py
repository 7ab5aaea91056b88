"""The matcher's fast path: one RE2 pass over a buffer of lines finds the lines any rule may match.

The bulk of a log matches no rule, and splitting it into Python strings is what costs. So the
buffer is searched as bytes, once, with one RE2 alternation of every alternative the matcher
hands in: the rules' required literals (``rules.required_literals``) and, for a rule that has
none (``(?i)...``), its whole pattern, line-anchored with ``(?m)``. RE2 runs the alternation as
one DFA, so the cost of the pass does not grow with the number of rules. Each hit is widened to
its line, cut at ``max_line`` bytes, and an ``re2.Set`` of the same alternatives names which of
them the line holds; the caller then runs only those rules' full patterns on it.

No line that holds an alternative is missed: a match inside a line is also a match of the
alternation in the buffer, and after each hit the scan resumes at the start of the next line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


class Prefilter:
    """Candidate lines of a buffer and the alternatives (by index) each one holds."""

    def __init__(self, alternatives: Sequence[bytes], max_line: int = 0):
        self.count = len(alternatives)
        self.max_line = max_line
        self.scan = (
            re2.compile(b"(?m)" + b"|".join(b"(?:" + a + b")" for a in alternatives), _OPTIONS)
            if alternatives
            else None
        )
        self.set: re2.Set | None = None
        if self.count > 1:
            self.set = re2.Set.SearchSet(_OPTIONS)
            for alt in alternatives:
                self.set.Add(b"(?m)(?:" + alt + b")")
            self.set.Compile()

    def lines(self, buf: bytes | bytearray, end: int) -> Iterator[tuple[int, bytes, list[int]]]:
        """``(start, line, alternatives)`` of each line in ``buf[:end]`` that holds one."""
        if self.scan is None:
            return
        search, find, rfind = self.scan.search, buf.find, buf.rfind
        one = [0] if self.count == 1 else None
        cap = self.max_line
        pos = 0
        while pos < end:
            m = search(buf, pos, end)
            if m is None:
                return
            i = m.start()
            s = rfind(b"\n", 0, i) + 1
            e = find(b"\n", i, end)
            if e < 0:
                e = end
            line = bytes(buf[s : min(e, s + cap)] if cap else buf[s:e])
            pos = e + 1
            if one is not None:
                # A hit beyond the cut counts only if the cut line still holds it.
                if cap and i - s >= cap and self.scan.search(line) is None:
                    continue
                yield s, line, one
                continue
            assert self.set is not None
            ids = self.set.Match(line)
            if ids:
                yield s, line, ids
