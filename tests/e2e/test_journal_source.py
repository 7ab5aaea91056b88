"""The remediator's journal source against a real journald: a sandbox host's (Debian 12,
systemd 252), the remediator run as a transient systemd service with the project's code copied
in (``tests/e2e/inhost.py``), no deploy.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time
from collections.abc import Iterator

import pytest
import yaml

from tests.e2e import inhost
from tests.sandbox import harness

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

LINE = "[port-sheet] token error: HTTP Error 400: invalid_grant: Token has been expired or revoked."


def _host(m: harness.Machine, script: str) -> str:
    done = m.nsenter(["sh", "-ec", script], timeout=60)
    assert done.returncode == 0, f"{script}\n{done.stderr}"
    return done.stdout


def _incidents(m: harness.Machine, store: str) -> list[list[str]]:
    code = (
        "import json, sqlite3, sys; db = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True);"
        " print(json.dumps(db.execute('SELECT rule, status FROM incidents').fetchall()))"
    )
    return json.loads(inhost.python(m, ["-c", code, store], timeout=60).stdout)


def _newest_and_saved(m: harness.Machine, unit: str, state_db: str) -> tuple[str, str]:
    """What the stall check asks the real journal (the unit's newest entry, through the
    source's own query) beside the cursor the remediator saved."""
    code = (
        "import sqlite3, sys; from agent.remediator.state import StateDB;"
        " from agent.remediator.sources.journald import JournalSource;"
        " got = JournalSource([sys.argv[2]], StateDB(), emit=print).newest();"
        " db = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True);"
        " row = db.execute(\"SELECT cursor FROM cursor WHERE key = 'journal'\").fetchone();"
        " print(got[0] if got else '-'); print(row[0] if row else '-')"
    )
    newest, saved = inhost.python(m, ["-c", code, state_db, unit], timeout=60).stdout.split()
    return newest, saved


@pytest.fixture
def remediator(sandbox_host: harness.Machine) -> Iterator[tuple[harness.Machine, str, str]]:
    """A remediator following a unit that has never logged on this host (its first start: no
    saved cursor), as the transient service ``jada-remediator-probe-*``; yields the machine,
    that unit and the store's path in the host."""
    m = sandbox_host
    tag = secrets.token_hex(3)
    unit = f"jada-probe-sync-{tag}.service"
    service = f"jada-remediator-probe-{tag}.service"
    inhost.install(m)
    work = f"/var/tmp/jada-probe-{tag}"
    doc = {
        "host_name": "probe",
        "state_dir": f"{work}/state",
        "store": {"path": f"{work}/state/store.db"},
        "remediator": {
            "rules_dirs": [f"{work}/rules.d"],
            "state_db": f"{work}/state/remediator.db",
            "private_data_dir": f"{work}/runner",
            "lock_file": f"{work}/run/remediation.lock",
        },
    }
    rule = {
        "name": "probe-token",
        "source": {"journal": {"unit": unit}},
        "match": r"\[port-sheet\] token error: HTTP Error (?P<status>\d{3})",
        "threshold": 3,
        "within": "90m",
        "cooldown": "3h",
    }
    root = harness._data_dir(m.name) / "merged"  # the host's / seen from here
    (root / work.lstrip("/") / "rules.d").mkdir(parents=True)
    (root / work.lstrip("/") / "agent.yml").write_text(yaml.safe_dump(doc))
    (root / work.lstrip("/") / "rules.d" / "50-probe.yml").write_text(
        yaml.safe_dump({"rules": [rule]})
    )
    argv = inhost.python_argv(["-m", "agent", "-c", f"{work}/agent.yml", "remediator", "run"])
    _host(m, f"systemd-run --quiet --unit={service} -- {shlex.join(argv)}")
    try:
        deadline = time.monotonic() + 30
        # Ready, and its journalctl child started (it then seeks to the journal's end).
        while True:
            log = _host(m, f"journalctl -u {service} -o cat --no-pager")
            # ([j]ada...: the pattern must not match the shell running pgrep)
            child = _host(m, f"pgrep -f -- '--unit=[{unit[0]}]{unit[1:]}' || true").strip()
            if "remediator ready" in log and child:
                break
            assert time.monotonic() < deadline, f"the remediator never got ready:\n{log}"
            time.sleep(0.1)
        time.sleep(1.0)
        yield m, unit, doc["store"]["path"]
    finally:
        print(_host(m, f"journalctl -u {service} -o cat --no-pager | tail -20"))
        _host(m, f"systemctl stop {service} || true")


def test_a_unit_that_never_logged_before_the_first_start_is_read_from_its_first_line(
    remediator: tuple[harness.Machine, str, str],
) -> None:
    # journalctl 252 told to follow a unit with no entry yet from the journal's tail
    # (--lines=0) loses that unit's first entries (systemd#25649): here the first start on a
    # fresh host, the sync's first failing run, three lines at once.
    m, unit, store = remediator
    _host(
        m,
        f"systemd-run --quiet --wait --unit={unit} -- sh -c"
        f" 'for i in 1 2 3; do echo \"{LINE}\"; done'",
    )
    deadline = time.monotonic() + 15
    while not (found := _incidents(m, store)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [rule for rule, _status in found] == ["probe-token"], (
        found,
        _host(m, f"journalctl -u {unit} -o cat --no-pager"),
    )
    # The stall check's question, asked of journalctl 252 with the follower's filters: once
    # the remediator has caught up, the unit's newest entry is the last one it read.
    state_db = store.rsplit("/", 1)[0] + "/remediator.db"
    while (pair := _newest_and_saved(m, unit, state_db))[0] != pair[1]:
        assert time.monotonic() < deadline + 15, pair
        time.sleep(0.5)
    assert pair[0].startswith("s=") and ";i=" in pair[0], pair
