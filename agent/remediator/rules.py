"""Rule files: reading, validating and merging the YAML rule packs of ``rules.d`` directories.

A rule says which source to read (a file or a journal unit), which lines count (``match`` minus
``ignore``), how many inside which sliding window fire it (``threshold``/``within``, the window
keyed by ``group_by``), how long it then stays quiet (``cooldown``), which line closes its incident
(``resolve``), which playbook remediates it (``action``) and when to stop trying (``breaker``).

Directories are read in order, files in each directory by name; a later rule with the same
``name`` replaces an earlier one (packaged defaults first, local overrides after). Every error
names the file, the rule and the key. The regexes are compiled with RE2 by ``regex.py``, which
also derives the literals the matcher's prefilter looks for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent import yamlsafe
from agent.config import ConfigError, parse_duration
from agent.remediator.regex import Pattern, compile_regex, required_literals

RULE_KEYS = {
    "name",
    "description",
    "source",
    "match",
    "ignore",
    "threshold",
    "within",
    "group_by",
    "cooldown",
    "resolve",
    "action",
    "breaker",
    "enabled",
}
ACTION_KEYS = {"playbook", "extravars", "timeout"}
BREAKER_KEYS = {"max_runs", "within"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_UNIT = re.compile(r"^[A-Za-z0-9:_.@\\-]+\.(service|socket|timer|scope|mount|path|target)$")
_EXTRAVAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_EXTRAVARS = {
    "jada_incident_id",
    "jada_rule",
    "jada_group",
    "jada_result_file",
    "jada_lock_held",
}


class RuleError(ConfigError):
    """A rule file is wrong: names the file, the rule and the key."""

    def __init__(self, file: Any, rule: str | None, key: str, expected: str, got: Any = None):
        where = f"rule {rule!r}: {key}" if rule else key
        super().__init__(file, where, expected, got)
        self.rule = rule


@dataclass(frozen=True)
class Source:
    """Where a rule reads lines: a file path, or the journal entries of one systemd unit."""

    kind: str  # "file" or "journal"
    target: str  # the absolute path, or the unit name

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.target}"

    def describe(self) -> str:
        return self.target if self.kind == "file" else f"journal unit {self.target}"


@dataclass(frozen=True)
class Action:
    playbook: str
    extravars: dict[str, Any] = field(default_factory=dict)
    timeout: float = 600.0


@dataclass(frozen=True)
class Breaker:
    max_runs: int = 3
    within: float = 86400.0


@dataclass(frozen=True)
class Rule:
    name: str
    source: Source
    match: Pattern
    threshold: int
    within: float
    ignore: tuple[Pattern, ...] = ()
    group_by: tuple[str, ...] = ()
    cooldown: float = 0.0
    resolve: Pattern | None = None
    action: Action | None = None
    breaker: Breaker | None = None
    description: str = ""
    file: str = ""
    # Literals (UTF-8) one of which every ``match`` / ``resolve`` hit contains; None: no prefilter.
    match_literals: tuple[bytes, ...] | None = None
    resolve_literals: tuple[bytes, ...] | None = None

    @property
    def resolve_groups(self) -> tuple[str, ...]:
        """The ``group_by`` fields the resolve pattern names: it closes only that group's
        incident; none: it names the empty group and closes all of the rule's."""
        if self.resolve is None:
            return ()
        return tuple(k for k in self.group_by if k in self.resolve.groupindex)

    def group_of(self, m: Any) -> dict[str, str]:
        # By index, from the Pattern's cached names: google-re2 rebuilds its name table on
        # every lookup by name, the dearest step of a counted match.
        index = self.match.groupindex
        return {k: (m.group(index.get(k, k)) or "") for k in self.group_by}


@dataclass
class RuleSet:
    rules: list[Rule]
    files: list[str]

    def by_name(self) -> dict[str, Rule]:
        return {r.name: r for r in self.rules}

    def sources(self) -> dict[str, list[Rule]]:
        out: dict[str, list[Rule]] = {}
        for r in self.rules:
            out.setdefault(r.source.key, []).append(r)
        return out


def _regex(file: str, rule: str, key: str, value: Any) -> Pattern:
    if not isinstance(value, str) or not value:
        raise RuleError(file, rule, key, "a regular expression (a non-empty string)", value)
    try:
        return compile_regex(value)
    except ValueError as exc:
        raise RuleError(file, rule, key, f"a valid RE2 regular expression ({exc})", value) from None


def _duration(file: str, rule: str, key: str, value: Any, positive: bool = True) -> float:
    try:
        seconds = parse_duration(value, file=file, key=key)
    except ConfigError:
        raise RuleError(file, rule, key, "a duration such as 30s, 90m, 6h or 7d", value) from None
    if positive and seconds <= 0:
        raise RuleError(file, rule, key, "a duration greater than zero", value)
    return seconds


def _int(file: str, rule: str, key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RuleError(file, rule, key, f"an integer of at least {minimum}", value)
    return value


def _source(file: str, rule: str, value: Any) -> Source:
    expected = "{file: /absolute/path} or {journal: {unit: NAME.service}}"
    if not isinstance(value, dict) or len(value) != 1:
        raise RuleError(file, rule, "source", expected, value)
    ((kind, arg),) = value.items()
    if kind == "file":
        if not isinstance(arg, str) or not os.path.isabs(arg):
            raise RuleError(file, rule, "source.file", "an absolute file path", arg)
        return Source("file", os.path.normpath(arg))
    if kind == "journal":
        if isinstance(arg, dict) and set(arg) == {"unit"}:
            arg = arg["unit"]
        if not isinstance(arg, str) or not _UNIT.match(arg):
            raise RuleError(
                file, rule, "source.journal.unit", "a systemd unit name such as x.service", arg
            )
        return Source("journal", arg)
    raise RuleError(file, rule, "source", expected, value)


def _extravars(file: str, rule: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RuleError(
            file, rule, "action.extravars", "a mapping of variable names to values", value
        )
    for k, v in value.items():
        key = f"action.extravars.{k}"
        if not isinstance(k, str) or not _EXTRAVAR.match(k):
            raise RuleError(file, rule, key, "a variable name (letters, digits, _)", k)
        if k in _RESERVED_EXTRAVARS:
            raise RuleError(file, rule, key, "a name not set by the remediator itself", k)
        if not isinstance(v, str | int | float | bool | list | dict) or v is None:
            raise RuleError(file, rule, key, "a string, number, boolean, list or mapping", v)
    return dict(value)


def parse_rule(data: Any, file: str, index: int) -> Rule:
    """Validate one rule mapping (``rules[index]`` of ``file``)."""
    if not isinstance(data, dict):
        raise RuleError(
            file, None, f"rules[{index}]", "a mapping with name, source, match, ...", data
        )
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise RuleError(
            file, None, f"rules[{index}].name", "a name of letters, digits, '.', '_' or '-'", name
        )
    unknown = sorted(set(data) - RULE_KEYS)
    if unknown:
        raise RuleError(file, name, unknown[0], "one of " + ", ".join(sorted(RULE_KEYS)))
    for required in ("source", "match", "threshold", "within"):
        if required not in data:
            raise RuleError(file, name, required, "a value (this key is required)")
    source = _source(file, name, data["source"])
    match = _regex(file, name, "match", data["match"])
    ignore_raw = data.get("ignore", [])
    if isinstance(ignore_raw, str):
        ignore_raw = [ignore_raw]
    if not isinstance(ignore_raw, list):
        raise RuleError(file, name, "ignore", "a list of regular expressions", ignore_raw)
    ignore = tuple(_regex(file, name, f"ignore[{i}]", p) for i, p in enumerate(ignore_raw))
    group_by = data.get("group_by", [])
    if isinstance(group_by, str):
        group_by = [group_by]
    if not isinstance(group_by, list) or not all(isinstance(g, str) for g in group_by):
        raise RuleError(file, name, "group_by", "a list of named groups of match", group_by)
    for g in group_by:
        if g not in match.groupindex:
            raise RuleError(
                file,
                name,
                "group_by",
                f"names of groups in match (it has: {', '.join(match.groupindex) or 'none'})",
                g,
            )
    resolve = data.get("resolve")
    resolve_re = _regex(file, name, "resolve", resolve) if resolve is not None else None
    action = None
    if data.get("action") is not None:
        a = data["action"]
        if not isinstance(a, dict):
            raise RuleError(file, name, "action", "a mapping with playbook, extravars, timeout", a)
        bad = sorted(set(a) - ACTION_KEYS)
        if bad:
            raise RuleError(
                file, name, f"action.{bad[0]}", "one of " + ", ".join(sorted(ACTION_KEYS))
            )
        pb = a.get("playbook")
        if not isinstance(pb, str) or not re.match(r"^[A-Za-z0-9_./-]+\.ya?ml$", pb) or ".." in pb:
            raise RuleError(
                file, name, "action.playbook", "a playbook file name in the project dir (x.yml)", pb
            )
        action = Action(
            playbook=pb,
            extravars=_extravars(file, name, a.get("extravars", {})),
            timeout=_duration(file, name, "action.timeout", a.get("timeout", "10m")),
        )
    breaker = None
    if data.get("breaker") is not None:
        b = data["breaker"]
        if not isinstance(b, dict):
            raise RuleError(file, name, "breaker", "a mapping {max_runs: N, within: DURATION}", b)
        bad = sorted(set(b) - BREAKER_KEYS)
        if bad:
            raise RuleError(file, name, f"breaker.{bad[0]}", "one of max_runs, within")
        breaker = Breaker(
            max_runs=_int(file, name, "breaker.max_runs", b.get("max_runs", 3)),
            within=_duration(file, name, "breaker.within", b.get("within", "24h")),
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise RuleError(file, name, "description", "a string", description)
    return Rule(
        name=name,
        source=source,
        match=match,
        threshold=_int(file, name, "threshold", data["threshold"]),
        within=_duration(file, name, "within", data["within"]),
        ignore=ignore,
        group_by=tuple(group_by),
        cooldown=_duration(file, name, "cooldown", data.get("cooldown", 0), positive=False),
        resolve=resolve_re,
        action=action,
        breaker=breaker,
        description=description,
        file=file,
        match_literals=required_literals(match),
        resolve_literals=required_literals(resolve_re) if resolve_re is not None else None,
    )


def load_file(path: str | os.PathLike[str]) -> list[tuple[Rule, bool]]:
    """Rules of one file, each with its ``enabled`` flag."""
    file = str(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(
            file, None, "(file)", "a readable UTF-8 YAML file", type(exc).__name__
        ) from None
    try:
        doc = yamlsafe.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        raise RuleError(
            file, None, where, "valid YAML", getattr(exc, "problem", str(exc))
        ) from None
    if doc is None:
        return []
    if not isinstance(doc, dict) or set(doc) - {"rules"}:
        raise RuleError(file, None, "(top level)", "a mapping with one key: rules", doc)
    items = doc.get("rules") or []
    if not isinstance(items, list):
        raise RuleError(file, None, "rules", "a list of rules", items)
    out: list[tuple[Rule, bool]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if (
            isinstance(item, dict)
            and item.get("enabled") is False
            and set(item) <= {"name", "enabled"}
        ):
            # ``{name: X, enabled: false}``: a local file switching a packaged rule off.
            name = item.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise RuleError(file, None, f"rules[{i}].name", "a rule name", name)
            out.append(
                (Rule(name, Source("file", "/"), compile_regex("$^"), 1, 1.0, file=file), False)
            )
            continue
        rule = parse_rule(item, file, i)
        if rule.name in seen:
            raise RuleError(file, rule.name, "name", "a name used once per file", rule.name)
        seen.add(rule.name)
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            raise RuleError(file, rule.name, "enabled", "true or false", enabled)
        out.append((rule, enabled))
    return out


def rule_files(dirs: Iterable[str | os.PathLike[str]]) -> list[str]:
    files: list[str] = []
    for d in dirs:
        p = Path(d)
        if not p.is_dir():
            continue
        files.extend(str(f) for f in sorted(p.glob("*.yml")) + sorted(p.glob("*.yaml")))
    return files


def load_rules(
    dirs: Iterable[str | os.PathLike[str]] = (), files: Iterable[str | os.PathLike[str]] = ()
) -> RuleSet:
    """Merge the rules of ``dirs`` (in order, files by name) then ``files``: a later name wins.

    ``enabled: false`` in a later file switches a packaged rule off.
    """
    paths = rule_files(dirs) + [str(f) for f in files]
    merged: dict[str, Rule | None] = {}
    for path in paths:
        for rule, enabled in load_file(path):
            merged[rule.name] = rule if enabled else None
    return RuleSet(rules=[r for r in merged.values() if r is not None], files=paths)
