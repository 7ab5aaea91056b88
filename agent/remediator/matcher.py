"""The matcher: which lines of a buffer each rule must look at, in one pass for all the rules.

Used by the live file source (``detection.Detection.read_file``) and by the offline tester
(``replay``), so both see exactly the same lines. The byte-level pass is the fast path
(:mod:`agent.remediator.fastpath`): one RE2 alternation of the rules' required literals, or of a
rule's whole pattern where it has none. A rule anchored to the whole text (``\\A``, ``\\z``)
searches every line. Lines are cut at ``MAX_LINE`` bytes before any pattern sees them.

For ``journalctl -o json`` exports (``form="json"``) the literals are looked for as the JSON
encoder writes them, and every entry whose MESSAGE is an array of bytes is a candidate.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import (
    Callable,
    Collection,
    Container,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from itertools import accumulate, compress, repeat
from operator import not_
from typing import Any, cast

from agent.remediator.fastpath import Prefilter
from agent.remediator.regex import first_chars
from agent.remediator.rules import Rule

MAX_LINE = 64 * 1024
MEMO_ENTRIES = 2048  # lines remembered per matcher (emptied when full)
MEMO_KEY_MAX = 512  # characters of a line's tail worth remembering

# What a line is to each rule it concerns: (rule index, outcome, group, the engine's key of
# the group), nomatch left out.
Classified = tuple[tuple[int, str, dict[str, str], Any], ...]
Classify = Callable[[Rule, str, bool], tuple[str, dict[str, str], Any]]
_BYTE_ARRAY = (b'"MESSAGE":[', b'"MESSAGE": [')  # a JSON MESSAGE that is not UTF-8


@dataclass
class Stats:
    lines: int = 0  # journal entries (file lines are not counted on the fast path)
    bytes: int = 0
    candidates: int = 0  # lines holding a rule's literal, decoded and searched
    cut: int = 0  # lines longer than MAX_LINE
    # decoded lines (candidates, journal messages) that were not UTF-8 (a flood's lines skipped
    # in cooldown are not decoded)
    invalid_utf8: int = 0
    rotations: int = 0
    truncations: int = 0
    bad_entries: int = 0  # journal lines that were not a JSON object: skipped

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


def _whole_text_anchored(pattern: str) -> bool:
    # \A and \z mean the whole text: inside a buffer of many lines they would not hold.
    p = pattern.replace("\\\\", "")
    return "\\A" in p or "\\z" in p


def _json_forms(lit: bytes) -> list[bytes]:
    """``lit`` as it appears inside a JSON string (raw UTF-8 and ``\\uXXXX`` escaped)."""
    text = lit.decode("utf-8")
    return list(
        dict.fromkeys(json.dumps(text, ensure_ascii=a)[1:-1].encode() for a in (False, True))
    )


class Matcher:
    """Finds, in buffers of complete lines, the lines each rule must look at."""

    def __init__(
        self,
        rules: Iterable[Rule],
        max_line: int = MAX_LINE,
        form: str = "text",
        resolvable: Callable[[], Collection[str]] | None = None,
        only: Callable[[Rule], bool] | None = None,
    ):
        """``resolvable()``: the names of the rules that may have something to resolve now; a
        line that holds only another rule's ``resolve`` literal (not its ``match``) is not
        handed to that rule. It is asked per line, as the lines are consumed, so an incident
        opened by one line is resolved by a later line of the same buffer. ``only``: the rules
        this matcher looks for (indexes stay those of ``rules``)."""
        self.rules = list(rules)
        self.max_line = max_line
        self.resolvable = resolvable
        alternatives: dict[bytes, set[int]] = {}
        may_match: dict[bytes, set[int]] = {}  # alternative -> rules whose match it may be
        literal_of: dict[bytes, bytes] = {}  # alternative -> the literal it looks for
        self.every_line: list[int] = []  # rules searched on every line
        for i, r in enumerate(self.rules):
            if only is not None and not only(r):
                continue
            parts = [(r.match, r.match_literals)]
            if r.resolve is not None:
                parts.append((r.resolve, r.resolve_literals))
            if any(
                lits is None and (form == "json" or _whole_text_anchored(p.pattern))
                for p, lits in parts
            ):
                self.every_line.append(i)
                continue
            for part, (p, lits) in enumerate(parts):
                found: list[tuple[bytes, bytes | None]] = []
                if lits is None:
                    found.append((p.pattern.encode("utf-8"), None))
                for lit in lits or ():
                    for form_lit in _json_forms(lit) if form == "json" else [lit]:
                        found.append((re.escape(form_lit), form_lit))
                if form == "json":  # MESSAGE that is not UTF-8: an array of byte values
                    found += [(re.escape(x), x) for x in _BYTE_ARRAY]
                for alt, alt_lit in found:
                    alternatives.setdefault(alt, set()).add(i)
                    # A resolve literal alone never makes a match (a byte array may hide one).
                    if part == 0 or alt_lit in _BYTE_ARRAY:
                        may_match.setdefault(alt, set()).add(i)
                    if alt_lit is not None:
                        literal_of[alt] = alt_lit
        self.targets: list[list[int]] = [sorted(v) for v in alternatives.values()]
        self.match_targets: list[set[int]] = [may_match.get(a, set()) for a in alternatives]
        self.prefilter = Prefilter(
            list(alternatives), [literal_of.get(a) for a in alternatives], max_line
        )
        self._memo: dict[bytes, tuple[Classified, frozenset[int], Any]] = {}
        self._quiet: set[bytes] = set()  # keys of lines that change nothing at _quiet_at
        self._quiet_at: tuple[int, float] | None = None
        self._target_sets = [frozenset(t) for t in self.targets]
        self._match_sets = [frozenset(t) for t in self.match_targets]
        self._by_name: dict[str, list[int]] = {}
        for i, r in enumerate(self.rules):
            self._by_name.setdefault(r.name, []).append(i)
        self._key_at = self._memo_key(form, only)

    def _memo_key(self, form: str, only: Callable[[Rule], bool] | None) -> re.Pattern[bytes] | None:
        """The search for where a line's tail that decides everything begins, or None.

        Every pattern of these rules (match, ignore, resolve) and every literal the prefilter
        looks for begins with one of a known set of characters: no match and no literal can
        start before the first of them in a line, so the line from there on decides which rules
        it concerns and what it is to each (:meth:`classified`). A flood logs one message with
        a new timestamp each time: all its lines share that tail.

        The search runs over the bytes, for the characters' first bytes, and its group 1 is
        the tail itself (to the end of the line or the cut): a tail that starts
        earlier than the first of the characters (at another character sharing its first byte)
        decides as well, and lines whose tails are equal are decided alike.
        """
        if form != "text" or self.every_line:
            return None
        chars: set[str] = set()
        for r in self.rules:
            if only is not None and not only(r):
                continue
            for p in (r.match, r.resolve, *r.ignore):
                if p is None:
                    continue
                got = first_chars(p.pattern)
                if got is None:
                    return None
                chars |= got
            for lit in (*(r.match_literals or ()), *(r.resolve_literals or ())):
                chars.add(lit.decode("utf-8", "replace")[:1])
        if not chars or "\ufffd" in chars or "" in chars:
            return None
        first = b"".join(re.escape(b) for b in sorted({c.encode("utf-8")[:1] for c in chars}))
        # Matched at the newline before a line (or at 0) and ending where the line (or its
        # cut) ends: its group 1 is the tail, empty in a line with none of the characters
        # (``.*`` to the end costs nothing: the engine jumps there).
        return re.compile(b"(?s)\n?[^\n" + first + b"]*(.*)")

    def candidates(
        self, buf: bytes | bytearray, end: int, stats: Stats
    ) -> Iterator[tuple[int, bytes, set[int]]]:
        """``(start, line cut to MAX_LINE, rule indexes)`` of the lines that matter.

        Counts the bytes, the cut lines and the candidates into ``stats``.
        """
        self._measure(buf, end, stats)
        cap = self.max_line
        if not self.rules:
            return
        targets, match_targets = self.targets, self.match_targets
        resolvable, rules = self.resolvable, self.rules
        hits = self.prefilter.lines(buf, end)
        if self.every_line:
            found = {s: (line, alts) for s, line, alts in hits}
            s = 0
            for raw in bytes(buf[:end]).split(b"\n")[:-1]:
                if s not in found:
                    found[s] = (raw[:cap], [])
                s += len(raw) + 1
            hits = ((s, line, alts) for s, (line, alts) in sorted(found.items()))
        for s, line, alts in hits:
            stats.candidates += 1
            if resolvable is not None and not any(match_targets[a] for a in alts):
                # A line that can only resolve (a healthy log's "sync ok"): with nothing open
                # it concerns no rule, however many rules share that resolve pattern.
                names = resolvable()
                if not names and not self.every_line:
                    continue
            idxs = {x for a in alts for x in targets[a]}
            if resolvable is not None:
                matching = {x for a in alts for x in match_targets[a]}
                if len(matching) < len(idxs):
                    names = resolvable()
                    idxs = {i for i in idxs if i in matching or rules[i].name in names}
            if self.every_line:
                idxs.update(self.every_line)
            yield s, line, idxs

    def _measure(self, buf: bytes | bytearray, end: int, stats: Stats) -> None:
        """Count the bytes and the lines longer than the cap into ``stats``."""
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

    def classified(
        self,
        buf: bytes | bytearray,
        end: int,
        stats: Stats,
        classify: Classify,
        saturated: Mapping[Any, tuple[float, Any]] | None = None,
        now: float = 0.0,
    ) -> Iterator[tuple[str, Classified]]:
        """``(line, ((rule index, outcome, group, key), ...))`` of each line that concerns a
        rule, in line order and rule order; ``classify(rule, line)`` is the engine's
        (``classify_keyed``).

        What a line is to the rules depends on the line alone, so it is remembered by the
        line's tail (see :meth:`_memo_key`): the lines of a flood cost a lookup each, not a
        set match and a search per rule. The dynamic part (is there anything to resolve) is
        left to the caller. Counts into ``stats`` as :meth:`candidates` does.

        ``saturated`` (the engine's, at time ``now``): a line that is one counted match of a
        group it maps to ``(now, ...)`` changes nothing and is not yielded -- the lines of a
        flood in cooldown cost a lookup each, not a decode and a trip through the caller.
        """
        if self._key_at is None:
            for _s, raw, idxs in self.candidates(buf, end, stats):
                if idxs:
                    text = decode(raw, stats)
                    found = self._classify(text, sorted(idxs), classify)
                    if found:
                        yield text, found
            return
        cut_before = stats.cut
        self._measure(buf, end, stats)
        key_at, memo = self._key_at.match, self._memo
        resolvable, by_name = self.resolvable, self._by_name
        target_sets, match_sets = self._target_sets, self._match_sets
        pf = self.prefilter
        pf_set, cap = pf.set, self.max_line
        quiet = (saturated if saturated is not None else {}).get
        ends = pf.ends(buf, end)
        stats.candidates += len(ends)
        # The lines' keys and what is remembered of them, each step one C loop over all the
        # lines (``map``): a flood's line then costs a few C calls, not a Python statement
        # each. The key regex is matched at the newline before each line (-1 for the first:
        # from 0).
        nls = list(map(buf.rfind, repeat(b"\n"), repeat(0), ends))
        if stats.cut == cut_before:
            keys = list(map(_group, map(key_at, repeat(buf), nls, ends), repeat(1)))
        else:  # a line here is longer than the cap: keys of the lines as cut
            keys = [
                _group(key_at(buf, nl, e if e - nl - 1 <= cap else nl + 1 + cap), 1)
                for nl, e in zip(nls, ends, strict=True)
            ]
        # The keys of lines found to change nothing at this time (a flood in cooldown) are
        # passed over by a C loop too (``compress``): saturation lasts for the whole read
        # (the engine's batch, one ``now``), so they stay known for the rest of it. A new
        # batch empties ``saturated`` (a person's reset may have emptied the windows since):
        # what was known then is forgotten, even at the same ``now``.
        if not saturated or self._quiet_at != (id(saturated), now):
            self._quiet.clear()
            self._quiet_at = (id(saturated), now) if saturated is not None else None
        quiet_keys = self._quiet
        lines: Iterable[tuple[int, int, bytes]] = zip(ends, nls, keys, strict=True)
        if quiet_keys:
            lines = compress(lines, map(not_, map(quiet_keys.__contains__, keys)))
        for e, nl, key in lines:
            s = nl + 1
            c = e if e - s <= cap else s + cap  # lines are cut at the cap
            line: str | None = None
            known = memo.get(key)
            if known is None:
                raw = bytes(buf[s:c])
                if pf_set is not None:
                    alts = pf_set.Match(raw)
                else:
                    alts = [] if pf.beyond_cut(raw, e - s) else [0]
                if not alts:
                    continue
                if len(alts) == 1:
                    may_match, concerned = match_sets[alts[0]], target_sets[alts[0]]
                else:
                    may_match = frozenset().union(*(match_sets[a] for a in alts))
                    concerned = frozenset().union(*(target_sets[a] for a in alts))
                if resolvable is not None and not may_match and not resolvable():
                    continue  # only resolve literals, and nothing to resolve: not kept
                line = decode(raw, stats)
                if resolvable is None:  # no one to ask: what the line is to every rule
                    got = self._classify(line, sorted(concerned), classify, may_match)
                    rest: frozenset[int] = frozenset()
                else:
                    # The rules the line can only resolve are asked at each use, and only
                    # those with something to resolve (a "sync ok" line concerns every rule
                    # sharing that pattern, a hundred perhaps, and nearly always none of them).
                    got = self._classify(line, sorted(may_match), classify)
                    rest = concerned - may_match
                # A line that is one counted match and nothing else is skipped whenever its
                # group is saturated: the key of that group.
                alone = got[0][3] if len(got) == 1 and got[0][1] == "counted" and not rest else None
                known = (got, rest, alone)
                if len(key) <= MEMO_KEY_MAX:
                    if len(memo) >= MEMO_ENTRIES:
                        memo.clear()
                    memo[key] = known
            got, rest, alone = known
            if alone is not None:
                sat = quiet(alone)
                if sat is not None and sat[0] == now:
                    quiet_keys.add(key)
                    continue  # a flood in cooldown: this line changes nothing
            if line is None:
                line = decode(bytes(buf[s:c]), stats)
            if rest and resolvable is not None:
                # by the (few) names with something to resolve, not the (many) rules
                asked = [i for n in resolvable() for i in by_name.get(n, ()) if i in rest]
                extra = tuple(
                    x
                    for x in ((i, *classify(self.rules[i], line, False)) for i in asked)
                    if x[1] != "nomatch"
                )
                if extra:
                    got = tuple(sorted(got + extra, key=_first))
            if got:
                yield line, got

    def _classify(
        self,
        line: str,
        idxs: Iterable[int],
        classify: Classify,
        matching: Container[int] | None = None,
    ) -> Classified:
        """``matching``: the rules whose match literals the line holds (None: all may match);
        the others are only asked whether the line resolves."""
        out = []
        for i in idxs:
            outcome, group, key = classify(self.rules[i], line, matching is None or i in matching)
            if outcome != "nomatch":
                out.append((i, outcome, group, key))
        return tuple(out)

    def texts_to_look_at(self, texts: Sequence[str]) -> list[int]:
        """Indexes of the ``texts`` (journal messages, in order) that may concern a rule.

        One prefilter pass over all of them joined, instead of a set match per text: in a batch
        of a thousand entries only the few holding a rule's literal are found, each then given
        to :meth:`rules_for` as it is consumed (which asks ``resolvable`` then). A text holding
        a newline is always looked at (a literal spanning its lines is not seen line by line).
        """
        if not texts or (not self.every_line and not self.prefilter.passes):
            return []
        if self.every_line:
            return list(range(len(texts)))
        joined = "\n".join(texts)
        if joined.count("\n") != len(texts) - 1:
            multi = [i for i, x in enumerate(texts) if "\n" in x]
            found = set(multi)
            texts = [x.replace("\n", " ") if i in found else x for i, x in enumerate(texts)]
            joined = "\n".join(texts)
        else:
            found = set()
        if joined.isascii():
            buf = joined.encode("ascii")
            lengths: Iterable[int] = map(len, texts)
        else:
            parts = [x.encode("utf-8", "surrogatepass") for x in texts]
            buf = b"\n".join(parts)
            lengths = map(len, parts)
        starts = [0, *accumulate(n + 1 for n in lengths)]
        for s, _line, _alts in self.prefilter.lines(buf, len(buf)):
            found.add(bisect_right(starts, s) - 1)
        return sorted(found)

    def rules_for(self, text: str) -> list[Rule]:
        """The rules that must look at one line of text (a journal message), in rule order."""
        raw = text.encode("utf-8", "surrogatepass")[: self.max_line]
        pf = self.prefilter
        if pf.set is not None:
            alts = pf.set.Match(raw) or []
        elif pf.passes and pf.passes[0].search(raw) is not None:
            alts = [0]
        else:
            alts = []
        idxs = {x for a in alts for x in self.targets[a]}
        if self.resolvable is not None and idxs:
            matching = {x for a in alts for x in self.match_targets[a]}
            if len(matching) < len(idxs):
                names = self.resolvable()
                idxs = {i for i in idxs if i in matching or self.rules[i].name in names}
        idxs.update(self.every_line)
        return [self.rules[i] for i in sorted(idxs)]

    def scan(
        self, buf: bytes | bytearray, stats: Stats, end: int | None = None
    ) -> Iterator[tuple[Rule, str]]:
        """``(rule, line)`` pairs in line order, as they are consumed; ``buf[:end]`` holds
        complete lines."""
        end = len(buf) if end is None else end
        rules = self.rules
        for _s, raw, idxs in self.candidates(buf, end, stats):
            if not idxs:
                continue
            line = decode(raw, stats)
            if len(idxs) == 1:
                yield rules[next(iter(idxs))], line
            else:
                for i in sorted(idxs):
                    yield rules[i], line


def _first(x: tuple[Any, ...]) -> Any:
    return x[0]


# The key regex always matches; the method itself, called from C by ``map``.
_group = cast(Callable[[re.Match[bytes] | None, int], bytes], re.Match.group)


def decode(raw: bytes, stats: Stats) -> str:
    """A candidate line as text; one that is not UTF-8 is decoded with U+FFFD and counted."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.invalid_utf8 += 1
        return raw.decode("utf-8", "replace")
