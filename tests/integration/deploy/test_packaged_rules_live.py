"""The packaged rule pack on a real ``jada-agent remediator run``: the sync's log file, watched
through watchdog, fires on the third failure — once — with the rules the remediator role renders
(here for a log file in a temporary directory, the same override path a moved log file takes)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.deploy.test_rules_source import PACK, render
from tests.integration.remediator.conftest import Service, private_data_dir  # noqa: F401

pytestmark = pytest.mark.slow

LINE = (
    "2026-12-03T09:00:00+0000 web1 port-sheet-sync[42]: [port-sheet] token error: "
    "HTTP Error 400: invalid_grant: Token has been expired or revoked.\n"
)


def test_the_third_failure_appended_to_the_sync_log_opens_one_incident(
    tmp_path: Path,
    settings_factory,
    private_data_dir: Path,  # noqa: F811
):
    log = tmp_path / "log" / "port-sheet-sync.log"
    log.parent.mkdir()
    log.write_text(LINE * 4)  # before the start: never counted (the tail starts at the end)
    override = render(tmp_path, remediator_sync_log_file=str(log))
    assert override is not None
    s = settings_factory(
        remediator={"rules_dirs": [str(PACK), str(override.parent)],
                    "private_data_dir": str(private_data_dir)},
    )  # fmt: skip
    svc = Service(tmp_path, s).start()
    try:
        for _ in range(2):  # as ExecStopPost appends each run's lines
            with log.open("a") as fh:
                fh.write(LINE)
        time.sleep(1.0)
        assert svc.incidents() == []
        with log.open("a") as fh:
            fh.write(LINE)
        items = svc.wait_incident(lambda xs: bool(xs))
        time.sleep(1.0)
        items = svc.incidents()
        assert [(i.rule, i.group) for i in items] == [("sheet-sync-token", {"status": "400"})]
    finally:
        svc.stop()
