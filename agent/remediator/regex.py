r"""Rule regexes: compiled with RE2 (``google-re2``), and the literals every match must contain.

Matching time is linear in the line, so no pattern and no line can stall the service (a
backtracking ``re`` pattern such as ``(\w+\s?)+$`` pins a CPU on a 48-byte line). The syntax RE2
lacks -- backreferences, lookaround, atomic groups, possessive quantifiers, conditionals -- is
refused with a message naming the construct. ``required_literals`` derives, for each regex, the
strings one of which every match must contain: the matcher's prefilter (``fastpath``) finds those
in whole buffers so that lines which cannot match are never split or decoded.
"""

from __future__ import annotations

import re
import re._parser as sre_parse  # the stdlib's own regex parser; stable across 3.11+
from collections.abc import Sequence
from typing import Any

import re2


class Pattern:
    """A rule's compiled regex: RE2's pattern, with a faster ``search`` of ASCII text.

    google-re2 maps every str to UTF-8 and back to character offsets in Python; for ASCII text
    (nearly every log line) the offsets are the same, so the search goes to RE2 directly and
    builds google-re2's own match object (``group``, ``groupdict``, ``span``, ``re``).
    """

    __slots__ = ("_direct", "_last", "_rx", "groupindex", "groups", "pattern")

    def __init__(self, rx: Any):
        self._rx = rx
        self.pattern: str = rx.pattern
        self.groupindex: dict[str, int] = dict(rx.groupindex)
        self.groups: int = rx.groups
        raw = getattr(rx, "_regexp", None)
        self._direct = raw.Match if raw is not None and _DIRECT else None
        # (text, match) of the last whole-text search: the rules sharing a pattern (every
        # rule's "sync ok" resolve) ask it of the same line object one after the other.
        self._last: tuple[str, Any] | None = None

    def search(self, text: str, pos: int | None = None, endpos: int | None = None) -> Any:
        if pos is None and endpos is None:
            last = self._last  # one read: another thread may replace it, never half of it
            if last is not None and last[0] is text:
                return last[1]
        direct = self._direct
        if direct is not None and pos is None and endpos is None and text.isascii():
            spans = direct(UNANCHORED, text.encode("ascii"), 0, len(text))
            m = None if spans[0] == _NULL_SPAN else _Match(self._rx, text, 0, len(text), spans)
            self._last = (text, m)
            return m
        m = self._rx.search(text, pos, endpos)
        if pos is None and endpos is None:
            self._last = (text, m)
        return m

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rx, name)

    def __repr__(self) -> str:
        return f"Pattern({self.pattern!r})"


# google-re2's internals used by Pattern.search; without them it takes the public path.
# RE2's own unanchored search, without google-re2's match object (None if its internals moved):
# the fast path, replay and Pattern.search call it directly.
UNANCHORED = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
_NULL_SPAN = getattr(re2, "_NULL_SPAN", (-1, -1))
_Match: Any = getattr(re2, "_Match", None)
_DIRECT = UNANCHORED is not None and _Match is not None

# --------------------------------------------------------------------------- literals


def _seq_literals(items: Sequence[Any]) -> list[str] | None:
    """The best required-literal alternatives of a parsed regex sequence, or None."""
    best: list[str] | None = None

    def better(cand: list[str] | None) -> None:
        nonlocal best
        if not cand or any(not c for c in cand):
            return
        score = (min(len(c) for c in cand), -len(cand))
        if best is None or score > (min(len(c) for c in best), -len(best)):
            best = cand

    run: list[str] = []
    for op, arg in items:
        if op is sre_parse.LITERAL:
            run.append(chr(arg))
            continue
        better(["".join(run)] if run else None)
        run = []
        if op is sre_parse.SUBPATTERN:
            _group, add_flags, _del_flags, sub = arg
            if add_flags & re.IGNORECASE:
                continue
            better(_seq_literals(sub))
        elif op is sre_parse.BRANCH:
            alts: list[str] = []
            for branch in arg[1]:
                lit = _seq_literals(branch)
                if not lit:
                    alts = []
                    break
                alts.extend(lit)
            better(alts or None)
        elif op in (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT) and arg[0] >= 1:
            better(_seq_literals(arg[2]))
    better(["".join(run)] if run else None)
    return best


def required_literals(pattern: Any) -> tuple[bytes, ...] | None:
    """Byte strings one of which occurs in every line that ``pattern`` matches; None if unknown.

    ``pattern`` is a regex string or a compiled pattern (``re`` or RE2). Only derived when it is
    certainly right: not for case-insensitive patterns, and never with a newline inside (a
    prefilter hit is widened to its line).
    """
    text = pattern if isinstance(pattern, str) else pattern.pattern
    flags = pattern.flags if isinstance(pattern, re.Pattern) else 0
    if flags & re.IGNORECASE:
        return None
    try:
        parsed = sre_parse.parse(text, flags)
    except Exception:  # a private parser: if it ever disagrees, just do without the prefilter
        return None
    if parsed.state.flags & re.IGNORECASE:  # an inline (?i) for the whole pattern
        return None
    lits = _seq_literals(list(parsed))
    if not lits or any("\n" in x or len(x) < 2 for x in lits):
        return None
    return tuple(dict.fromkeys(x.encode("utf-8") for x in lits))


# --------------------------------------------------------------------------- first characters

_FIRST_MAX = 512  # a class wider than this is "any character": no key can be cut before it


def _first_of_items(items: Sequence[Any]) -> tuple[set[str] | None, bool]:
    """(characters a match of this sequence can begin with, whether it can match empty)."""
    out: set[str] = set()
    for op, arg in items:
        got, nullable = _first_of_item(op, arg)
        if got is None:
            return None, False
        out |= got
        if not nullable:
            return out, False
    return out, True


def _first_of_item(op: Any, arg: Any) -> tuple[set[str] | None, bool]:
    if op is sre_parse.LITERAL:
        return {chr(arg)}, False
    if op is sre_parse.IN:
        chars: set[str] = set()
        for kind, val in arg:
            if kind is sre_parse.LITERAL:
                chars.add(chr(val))
            elif kind is sre_parse.RANGE and val[1] - val[0] < _FIRST_MAX:
                chars.update(map(chr, range(val[0], val[1] + 1)))
            elif kind is sre_parse.CATEGORY and val is sre_parse.CATEGORY_DIGIT:
                chars.update("0123456789")  # RE2's \d is ASCII
            else:  # a negated class, \w, \s, a wide range: nearly anything
                return None, False
        return chars, False
    if op is sre_parse.SUBPATTERN:
        _group, add_flags, _del_flags, sub = arg
        if add_flags & re.IGNORECASE:
            return None, False
        return _first_of_items(sub)
    if op is sre_parse.BRANCH:
        chars, nullable = set(), False
        for branch in arg[1]:
            got, n = _first_of_items(branch)
            if got is None:
                return None, False
            chars |= got
            nullable = nullable or n
        return chars, nullable
    if op in (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT):
        got, n = _first_of_items(arg[2])
        return got, (arg[0] == 0 or n)
    return None, False  # ^, \b, ., a negated literal, anything else: where it starts is open


def first_chars(pattern: str) -> frozenset[str] | None:
    r"""The characters every match of ``pattern`` begins with; None when that is not known.

    A search of a line then finds the same match in the line cut just before the first of
    these characters (nothing can start before it): the matcher keys what it learnt of a line
    by that tail, so a flood of one message costs one search however often it is logged.
    None for a pattern that can match the empty string, begins with an assertion (``^``,
    ``\b``) or ``.``, or ignores case. The stdlib's parser reads RE2 syntax only where the two
    agree: what it refuses (``\pL``, ``\z``) gives None, and so does ``[:`` (RE2's POSIX
    classes, which it would read as a set of characters).
    """
    if "[:" in pattern:
        return None
    try:
        parsed = sre_parse.parse(pattern)
    except Exception:
        return None
    if parsed.state.flags & re.IGNORECASE:
        return None
    got, nullable = _first_of_items(list(parsed))
    if got is None or nullable or not got:
        return None
    return frozenset(got)


# --------------------------------------------------------------------------- reading


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error is raised to us; RE2 must not print it to stderr

# Constructs of Python's ``re`` that RE2 does not have, as the stdlib parser names them.
_UNSUPPORTED = {
    "GROUPREF": "a backreference (\\1, (?P=name))",
    "GROUPREF_EXISTS": "a conditional group ((?(1)...|...))",
    "ASSERT": "a lookahead or lookbehind ((?=...), (?<=...))",
    "ASSERT_NOT": "a negative lookahead or lookbehind ((?!...), (?<!...))",
    "ATOMIC_GROUP": "an atomic group ((?>...))",
    "POSSESSIVE_REPEAT": "a possessive quantifier (*+, ++, ?+)",
}


def _unsupported(pattern: str) -> str | None:
    """The first construct of ``pattern`` that RE2 lacks, in words; None if there is none."""
    try:
        parsed = sre_parse.parse(pattern)
    except Exception:
        return None
    stack: list[Any] = [parsed]
    while stack:
        items = stack.pop()
        for op, arg in items:
            name = str(op)
            if name in _UNSUPPORTED:
                return _UNSUPPORTED[name]
            for a in arg if isinstance(arg, tuple | list) else (arg,):
                if isinstance(a, sre_parse.SubPattern):
                    stack.append(a)
                elif isinstance(a, list):
                    stack.extend(x for x in a if isinstance(x, sre_parse.SubPattern))
    if "\\Z" in pattern.replace("\\\\", ""):
        return "\\Z (write \\z: the end of the line)"
    return None


def compile_regex(value: str) -> Pattern:
    """``value`` compiled with RE2 (linear-time); ``ValueError`` names what RE2 refuses.

    One Pattern per text (rules sharing a pattern share its last search)."""
    got = _COMPILED.get(value)
    if got is None:
        got = _compile_regex(value)
        if len(_COMPILED) >= 4096:
            _COMPILED.clear()
        _COMPILED[value] = got
    return got


_COMPILED: dict[str, Pattern] = {}


def _compile_regex(value: str) -> Pattern:
    try:
        return Pattern(re2.compile(value, _RE2_OPTIONS))
    except re2.error as exc:
        what = _unsupported(value)
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        if what is not None:
            raise ValueError(
                f"RE2 syntax: {what} is not supported (rules are matched in linear time, so"
                f" patterns that need backtracking are refused; rewrite it without) [{detail}]"
            ) from None
        raise ValueError(detail) from None
