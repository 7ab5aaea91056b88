"""Builders shared by the remediator's integration tests: the token-error rule they all watch."""

from __future__ import annotations

from typing import Any

# The sheet sync's token error, its status captured (tests narrow it where they need to).
TOKEN_ERROR = r"\[port-sheet\] token error: HTTP Error (?P<status>\d+)"
TOKEN_3DIGIT = r"\[port-sheet\] token error: HTTP Error (?P<status>\d{3})"
TOKEN_4XX = r"\[port-sheet\] token error: HTTP Error (?P<status>4\d\d)"
SYNC_OK = r"\[port-sheet\] sync ok"
SYNC_OK_WORD = r"\[port-sheet\] sync ok\b"
# The sync unit's journal, as a rule's source.
SYNC_JOURNAL = {"journal": {"unit": "port-sheet-sync.service"}}


def token_rule(source: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The ``sheet-sync-token`` rule (3 matches within 90m) on ``source``, with ``overrides``."""
    r: dict[str, Any] = {
        "name": "sheet-sync-token",
        "source": source,
        "match": TOKEN_ERROR,
        "threshold": 3,
        "within": "90m",
    }
    r.update(overrides)
    return r
