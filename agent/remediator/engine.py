"""The rule engine: count-in-window per rule and group, cooldown, circuit breaker.

Pure decisions on explicit times (seconds since the epoch), so the live service, the offline
tester and the unit tests share one implementation and a test controls the clock. The
semantics, exactly:

- a line that matches ``match`` and no ``ignore`` pattern is a counted match at time t;
- the window holds the group's counted matches in (t − within, t];
- the rule fires at t when the window holds ≥ threshold, the group is not cooling down
  (t < last fire + cooldown) and its breaker is closed;
- firing empties the window and starts the cooldown; matches during a cooldown are still added
  to the window, so the first match after it ends fires if the window holds enough;
- a fire that would make more than ``breaker.max_runs`` fires within ``breaker.within`` is not
  made: the breaker opens and the group stays silent until ``reset``.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.remediator.regex import Pattern, compile_regex
from agent.remediator.rules import Rule
from agent.remediator.state import StateDB, group_key

log = logging.getLogger(__name__)

Outcome = Literal["nomatch", "ignored", "counted", "resolve"]


@dataclass
class Decision:
    """What one line did to one rule."""

    outcome: Outcome
    group: dict[str, str] = field(default_factory=dict)
    count: int = 0  # matches in the window after this line
    fired: bool = False
    breaker_opened: bool = False
    cooling: bool = False
    silenced: bool = False  # the breaker was already open


NOMATCH = Decision("nomatch")

GroupKey = tuple[str, str]  # (rule name, group key)


class Engine:
    """Feeds lines to rules; all state lives in a :class:`StateDB`."""

    def __init__(self, state: StateDB):
        self.state = state
        self._in_batch = False
        # Per-match costs kept off the path a flood takes (10 % of a log matching, nearly all
        # of it in cooldown): each rule's ignore patterns as one search, group keys by value.
        self._ignore: dict[int, tuple[Rule, Pattern | None]] = {}
        self._keys: dict[tuple[Any, ...], str] = {}
        # (rule, group) -> the decision of a counted match at the time of this batch, for a
        # group that cannot fire now and whose window is full of matches at that time: another
        # match then changes nothing (a flood during a cooldown costs a lookup a line).
        self.saturated: dict[GroupKey, tuple[float, Decision]] = {}

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """The state's transaction for one read. A person's reset recorded by another process
        is taken once, at its start -- a transaction sees no later commit anyway -- instead of
        a query per counted match."""
        with self.state.batch():
            if self._in_batch:
                yield
                return
            self._take_resets()
            self._in_batch = True
            self.saturated.clear()
            try:
                yield
            finally:
                self._in_batch = False
                self.saturated.clear()

    def _take_resets(self) -> None:
        # A `remediator reset` by a person, from another process, takes effect here.
        for reset in self.state.take_resets():
            log.info("rule %s reset: breaker closed, cooldown and windows cleared", reset)

    def observe(self, rule: Rule, line: str, t: float) -> Decision:
        """Apply one line at time ``t`` to ``rule``."""
        outcome, group = self.classify(rule, line)
        if outcome == "counted":
            return self.count(rule, group, t)
        if outcome == "nomatch":
            return NOMATCH
        return Decision(outcome, group=group)

    def classify_keyed(
        self, rule: Rule, line: str, may_match: bool = True
    ) -> tuple[Outcome, dict[str, str], GroupKey]:
        """:meth:`classify`, and the key of the group in :attr:`saturated` and :meth:`count`."""
        outcome, group = self.classify(rule, line, may_match)
        return outcome, group, (rule.name, self._key(group))

    def classify(
        self, rule: Rule, line: str, may_match: bool = True
    ) -> tuple[Outcome, dict[str, str]]:
        """What ``line`` is to ``rule``, whatever the time: ``counted`` (a match no ``ignore``
        vetoes), ``ignored``, ``resolve`` or ``nomatch``; with the group the line names. A
        function of the line alone, so the matcher may remember it for lines alike.

        ``may_match=False``: the matcher knows the line holds none of the literals a match
        needs, so only ``resolve`` is searched (a healthy log's "sync ok" lines, one per rule
        sharing that pattern)."""
        m = rule.match.search(line) if may_match else None
        if m is None:
            if rule.resolve is not None:
                r = rule.resolve.search(line)
                if r is not None:
                    return "resolve", _resolve_group(rule, r)
            return "nomatch", {}
        group = rule.group_of(m) if rule.group_by else {}
        if rule.ignore and self._ignored(rule, line):
            return "ignored", group
        return "counted", group

    def _ignored(self, rule: Rule, line: str) -> bool:
        cached = self._ignore.get(id(rule))
        if cached is None or cached[0] is not rule:
            any_of: Pattern | None = None
            if len(rule.ignore) > 1:
                with contextlib.suppress(ValueError):  # e.g. a group name in two of them
                    any_of = compile_regex("|".join(f"(?:{p.pattern})" for p in rule.ignore))
            cached = self._ignore[id(rule)] = (rule, any_of)
        if cached[1] is not None:
            return cached[1].search(line) is not None
        return any(p.search(line) for p in rule.ignore)

    def _key(self, group: dict[str, str]) -> str:
        k = tuple(group.items())
        g = self._keys.get(k)
        if g is None:
            if len(self._keys) >= 10_000:
                self._keys.clear()
            g = self._keys[k] = group_key(group)
        return g

    def count(
        self, rule: Rule, group: dict[str, str], t: float, key: GroupKey | None = None
    ) -> Decision:
        """Record a counted match of ``group`` at ``t`` and decide whether the rule fires.

        In a batch, a group that cannot fire and whose window is full at ``t`` is left in
        :attr:`saturated` (key -> (t, decision)): another match at ``t`` would change nothing,
        and the caller may skip it (or this returns that decision again, unchanged).
        """
        state = self.state
        if not self._in_batch:
            self._take_resets()
        g = key[1] if key is not None else self._key(group)
        sat = self.saturated.get((rule.name, g)) if self._in_batch else None
        if sat is not None and sat[0] == t:
            return sat[1]  # the same decision again (not to be changed by the caller)
        last_fire, breaker_open = state.group_state(rule.name, g)
        cooling = last_fire is not None and t < last_fire + rule.cooldown
        window = state.add_match(
            rule.name,
            g,
            t,
            t - rule.within,
            keep=rule.threshold,
            defer=cooling or breaker_open is not None,
        )
        # The window is sorted; a line from the future of another (replay of several logs) is
        # not in (t - within, t].
        n = len(window) if not window or window[-1] <= t else bisect.bisect_right(window, t)
        d = Decision("counted", group=group, count=n)
        if n < rule.threshold:
            return d
        if breaker_open is not None or cooling:
            d.silenced, d.cooling = breaker_open is not None, breaker_open is None
            if self._in_batch and n == len(window) and window[0] == t:
                self.saturated[(rule.name, g)] = (t, d)
            return d
        if rule.breaker is not None:
            since = t - rule.breaker.within
            if state.fires_since(rule.name, g, since) + 1 > rule.breaker.max_runs:
                state.open_breaker(rule.name, g, t)
                d.breaker_opened = True
                return d
        history_from = t - (rule.breaker.within if rule.breaker else 0.0)
        state.record_fire(rule.name, g, t, history_from)
        state.clear_window(rule.name, g)
        d.fired = True
        return d

    def reset(self, rule_name: str) -> int:
        """A person's reset: close the rule's breakers, end its cooldowns, empty its windows."""
        return self.state.reset(rule_name)


def _resolve_group(rule: Rule, m: re.Match[str]) -> dict[str, str]:
    # A resolve pattern that names the group_by fields closes only that group's incident.
    # By index, from the rule's Pattern: google-re2 rebuilds its name table on every lookup.
    index = rule.resolve.groupindex if rule.resolve is not None else {}
    return {k: (m.group(index[k]) or "") for k in rule.resolve_groups}
