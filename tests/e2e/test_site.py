"""``site.yml`` on a fresh sandbox host: converge, idempotence, check mode, units, hardening,
the daemon and the remediator at work, and the roles' verify playbooks failing on a broken host.

One sandbox host for the module (a few minutes: the first run installs the virtualenv).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.deploy import PROBE_RULE, VERIFY, Run, exposure, playbook, write_inventory
from tests.sandbox import harness

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

JADA = "/opt/jada-agent/venv/bin/jada-agent"
UNITS = [
    "jada-agent.service",
    "port-sheet-sync.service",
    "port-sheet-sync.timer",
    "jada-remediator.service",
]


@dataclass
class Site:
    machine: harness.Machine
    inventory: Path
    first: Run


@pytest.fixture(scope="module")
def site(sandbox_factory, tmp_path_factory) -> Site:
    machine = sandbox_factory("roles-site")
    inventory = write_inventory([machine], tmp_path_factory.mktemp("site") / "inventory.json")
    first = playbook(inventory, "site.yml")
    print(f"\nsite.yml on a fresh host: {first.seconds:.1f}s, recap {first.recap}")
    return Site(machine, inventory, first)


def _run(site: Site, cmd: list[str], check: bool = True):
    res = site.machine.run(cmd)
    if check:
        assert res.returncode == 0, f"{cmd}: rc={res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def test_site_converges_a_fresh_host(site: Site):
    assert site.first.rc == 0, site.first.tail()
    assert site.first.failed() == 0
    assert site.first.changed() > 0


def test_a_second_run_changes_nothing(site: Site):
    second = playbook(site.inventory, "site.yml")
    print(f"\nsite.yml again: {second.seconds:.1f}s, recap {second.recap}")
    assert second.rc == 0, second.tail()
    assert second.changed() == 0, second.tail(120)


def test_check_mode_with_diff_is_clean_on_a_converged_host(site: Site):
    check = playbook(site.inventory, "site.yml", "--check", "--diff")
    assert check.rc == 0, check.tail()
    assert check.changed() == 0, check.tail(120)
    assert "--- before" not in check.out  # no diff shown: nothing would change


def test_every_unit_file_passes_systemd_analyze_verify(site: Site):
    res = _run(site, ["systemd-analyze", "verify", *(f"/etc/systemd/system/{u}" for u in UNITS)])
    assert res.stderr.strip() == ""


def test_exposure_of_the_services_is_printed_and_within_bounds(site: Site):
    figures = {u: exposure(site.machine, u) for u in UNITS if u.endswith(".service")}
    print()
    for _unit, (_value, line) in figures.items():
        print(f"  {line}")
    # Issue 12: the session commands' confinement (Landlock) must not cost exposure.
    assert figures["jada-agent.service"][0] <= 2.0
    assert figures["port-sheet-sync.service"][0] <= 3.0
    # Root with the capabilities its playbooks need; the reasons are in the unit.
    assert figures["jada-remediator.service"][0] <= 3.0


def test_the_daemon_is_active_and_runs_a_queued_task(site: Site):
    assert _run(site, ["systemctl", "is-active", "jada-agent.service"]).stdout.strip() == "active"
    added = json.loads(
        _run(site, [JADA, "tasks", "add", "e2e: a harmless session", "--json"]).stdout
    )
    assert added["daemon_nudged"] is True
    deadline = time.monotonic() + 60
    task = added
    while time.monotonic() < deadline:
        task = json.loads(_run(site, [JADA, "tasks", "show", str(added["id"]), "--json"]).stdout)
        if task["status"] in ("done", "failed"):
            break
        time.sleep(1)
    journal = _run(
        site, ["journalctl", "--no-pager", "-o", "cat", "-u", "jada-agent.service"]
    ).stdout
    assert task["status"] == "done", f"{task}\n{journal[-3000:]}"
    assert f"task {added['id']} ended outcome=completed" in journal


# A session command under the deployed unit's own hardening (a oneshot copy of jada-agent.service
# whose ExecStart runs the real run_command): Landlock and seccomp work under NoNewPrivileges=,
# RestrictNamespaces=, SystemCallFilter= and PrivateUsers=, and hold.
CONFINE_PROBE = r"""
import json, os
from agent.daemon.tools import ToolError, Workspace
ws = Workspace("/var/lib/jada-agent/workspaces/confine-probe")
key = "/var/lib/jada-agent/secrets/confine-probe"
if not os.path.lexists(ws.real / "k"):
    os.symlink(key, ws.real / "k")
def run(argv, **kw):
    try:
        return ws.run_command(argv, ["cat", "grep", "python3"], 20, **kw)
    except ToolError as exc:
        return "ToolError: " + str(exc)
def py(code, **kw):
    return run(["python3", "-c", code], **kw)
out = {
    "cat": run(["cat", "k"]),
    "grep": run(["grep", "-R", "probe-secret", "."]),
    "read": py(f"print(open({key!r}).read())"),
    "write": py("open('/var/lib/jada-agent/owned', 'w').write('x')"),
    "proc": py("print(open('/proc/self/status').read())"),
    "proc_parent": py("import os; print(open(f'/proc/{os.getppid()}/environ').read())"),
    "net": py("import socket; socket.socket()"),
    "mem": py("bytearray(900 << 20)", memory_max=256 << 20),
    "ok": py("open('inside', 'w').write('x'); print(open('inside').read())"),
    "owned": os.path.exists("/var/lib/jada-agent/owned"),
}
print("PROBE " + json.dumps(out))
"""


def test_session_commands_are_confined_under_the_deployed_hardening(site: Site):
    _run(
        site, "install -o jada -g jada -m 0600 /dev/null /var/lib/jada-agent/secrets/confine-probe"
    )
    _run(site, "echo probe-secret-42 > /var/lib/jada-agent/secrets/confine-probe")
    unit = _run(site, ["cat", "/etc/systemd/system/jada-agent.service"]).stdout
    keep = ("Type=", "NotifyAccess=", "WatchdogSec=", "Restart", "ExecStart=", "LoadCredential")
    lines = [ln for ln in unit.splitlines() if not ln.startswith(keep)]
    service = lines.index("[Service]")
    python = JADA.replace("bin/jada-agent", "bin/python")
    lines[service + 1 : service + 1] = [
        "Type=oneshot",
        f"ExecStart={python} -c {json.dumps(CONFINE_PROBE)}",
    ]
    site.machine.run(
        "cat > /run/systemd/system/jada-confine-probe.service", input="\n".join(lines) + "\n"
    )
    _run(site, ["systemctl", "daemon-reload"])
    res = _run(site, ["systemctl", "start", "jada-confine-probe.service"], check=False)
    journal = _run(
        site, ["journalctl", "--no-pager", "-o", "cat", "-u", "jada-confine-probe.service"]
    ).stdout
    assert res.returncode == 0, journal[-3000:]
    probe = json.loads(journal.split("PROBE ", 1)[1].splitlines()[0])
    print(f"\n{json.dumps(probe, indent=1)}")
    assert probe["ok"].startswith("exit 0"), probe
    for name in ("cat", "grep", "read", "write", "proc"):
        assert "probe-secret-42" not in probe[name] and "Permission denied" in probe[name], probe
    # The session's own process (it holds the API key) is out of reach either way.
    assert "PATH=" not in probe["proc_parent"] and "Error" in probe["proc_parent"], probe
    assert "PermissionError" in probe["net"] and "MemoryError" in probe["mem"], probe
    assert probe["owned"] is False


def test_a_line_of_the_sync_reaches_the_remediator(site: Site):
    t0 = _run(site, ["date", "-u", "+%Y-%m-%dT%H:%M:%S.%6NZ"]).stdout.strip()
    _run(site, ["systemctl", "start", "port-sheet-sync.service"], check=False)
    sync = _run(
        site,
        [
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            "-u",
            "port-sheet-sync.service",
            f"--since={t0[:19].replace('T', ' ')}",
        ],
    ).stdout
    assert "[port-sheet] " in sync
    deadline = time.monotonic() + 20
    probe = []
    while time.monotonic() < deadline:
        incidents = json.loads(_run(site, [JADA, "remediator", "incidents", "--json"]).stdout)
        probe = [i for i in incidents if i["rule"] == PROBE_RULE and i["updated"] >= t0]
        if probe:
            break
        time.sleep(0.5)
    assert probe, f"no incident of {PROBE_RULE} updated since {t0}; sync journal:\n{sync}"
    assert probe[0]["summary"].startswith("[port-sheet] ")


# The roles' verify playbooks pass on the converged host, each fails once the host is broken in
# the way it checks, and they pass again once it is repaired: the negative control of the
# Molecule verify step.
@pytest.mark.parametrize("role", sorted(VERIFY))
def test_verify_passes_on_the_converged_host(site: Site, role: str):
    run = playbook(site.inventory, VERIFY[role])
    assert run.rc == 0, run.tail()


def _stopped(role: str, unit: str, id: str) -> Any:
    """A break of ``role``'s host: ``unit`` stopped (repaired by starting it)."""
    return pytest.param(
        role, ["systemctl", "stop", unit], ["systemctl", "start", unit], unit, id=id
    )


def _world_readable(role: str, path: str, id: str) -> Any:
    """A break of ``role``'s host: the secret ``path`` made 0644 (repaired by 0600)."""
    name = path.rsplit("/", 1)[-1]
    return pytest.param(role, ["chmod", "0644", path], ["chmod", "0600", path], name, id=id)


BREAKS = [
    _stopped("jada_agent", "jada-agent.service", "daemon-stopped"),
    _world_readable(
        "jada_agent", "/var/lib/jada-agent/secrets/anthropic-api-key", "api-key-world-readable"
    ),
    _world_readable(
        "port_sheet_sync", "/var/lib/jada-agent/secrets/google-token.json", "token-world-readable"
    ),
    _stopped("port_sheet_sync", "port-sheet-sync.timer", "timer-stopped"),
    _stopped("remediator", "jada-remediator.service", "remediator-stopped"),
]


@pytest.mark.parametrize(("role", "break_cmd", "fix_cmd", "named"), BREAKS)
def test_verify_fails_on_a_broken_host(
    site: Site, role: str, break_cmd: list[str], fix_cmd: list[str], named: str
):
    _run(site, break_cmd)
    try:
        broken = playbook(site.inventory, VERIFY[role])
    finally:
        _run(site, fix_cmd)
    assert broken.rc != 0 and broken.failed() == 1, broken.tail()
    failure = broken.out.split("fatal:", 1)[-1]
    assert named in failure, broken.tail()


@pytest.mark.parametrize("role", sorted(VERIFY))
def test_verify_passes_again_once_repaired(site: Site, role: str):
    run = playbook(site.inventory, VERIFY[role])
    assert run.rc == 0, run.tail()
