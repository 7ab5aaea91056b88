"""One event, one line: the escaping every log sink applies to outside text."""

from __future__ import annotations

import io
import logging

from agent.logline import OneLineFormatter, one_line


def test_line_breaks_controls_ansi_and_unicode_separators_are_escaped() -> None:
    text = "a\nb\rc\x1b[31md\x00e\x7ff\x85g\u2028h\u2029i\tj\\k é"
    assert one_line(text) == "a\\nb\\rc\\x1b[31md\\x00e\\x7ff\\x85g\\u2028h\\u2029i\tj\\k é"
    assert len(one_line(text).splitlines()) == 1


def test_the_log_formatter_keeps_each_record_on_one_line() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(OneLineFormatter("%(message)s"))
    log = logging.getLogger("test-one-line")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("rule %s: %s", "r1", "bad\n[port-sheet] sync ok")
    finally:
        log.removeHandler(handler)
    assert out.getvalue() == "rule r1: bad\\n[port-sheet] sync ok\n"
