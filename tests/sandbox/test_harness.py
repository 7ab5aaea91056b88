"""End-to-end tests of the sandbox harness: real nspawn machines, SSH, systemd, networking."""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.sandbox import harness
from tests.sandbox.pytest_plugin import SandboxFactory

pytestmark = pytest.mark.sandbox

REPO_ROOT = Path(__file__).resolve().parents[2]

ONESHOT_UNIT = """\
[Unit]
Description=sandbox test oneshot

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo sandbox-oneshot-ran as $(id -un)'
"""


def _leftovers(machine: harness.Machine) -> list[str]:
    """Everything a machine may leave on the host, that still exists."""
    found = []
    if Path(f"/run/netns/{machine.netns}").exists():
        found.append(f"netns {machine.netns}")
    if Path(f"/sys/class/net/{harness.IFACE_PREFIX}{machine.slot}").exists():
        found.append(f"veth {harness.IFACE_PREFIX}{machine.slot}")
    mounts = Path("/proc/self/mountinfo").read_text()
    if f"/machines/{machine.name}/" in mounts:
        found.append("overlay mount")
    for path in (
        Path(machine.state_dir),
        harness.DATA_DIR / "machines" / machine.name,
        harness.PROPAGATE_DIR / machine.name,
        *(root / f"machine-{machine.name}" for root in harness.CGROUP_ROOTS),
    ):
        if path.exists():
            found.append(str(path))
    if machine.pid and harness._pid_alive(machine.pid):
        found.append(f"nspawn pid {machine.pid}")
    return found


def test_two_machines_boot_concurrently(sandbox_factory: SandboxFactory) -> None:
    machines = sandbox_factory.many(2, prefix="pair")
    try:
        assert len({m.address for m in machines}) == 2
        assert len({m.host_address for m in machines}) == 2
        for m in machines:
            out = m.run("hostname; systemctl is-system-running", check=True).stdout.split()
            assert out[0] == m.name
            assert out[1] in ("running", "degraded")
            sudo = m.run("sudo -n id -u", user=m.admin_user, check=True)
            assert sudo.stdout.strip() == "0"
            # The pinned known_hosts holds exactly the key the guest presents.
            assert Path(m.known_hosts_file).read_text().startswith(f"{m.address} ssh-ed25519 ")
    finally:
        for m in machines:
            sandbox_factory.destroy(m)
    for m in machines:
        assert _leftovers(m) == []


def test_oneshot_unit_runs_and_journal_is_readable(sandbox_host: harness.Machine) -> None:
    m = sandbox_host
    m.run("cat > /etc/systemd/system/sandbox-test.service", input=ONESHOT_UNIT, check=True)
    m.run("systemctl daemon-reload && systemctl start sandbox-test.service", check=True)
    journal = m.run("journalctl -u sandbox-test.service --no-pager -o cat", check=True).stdout
    assert "sandbox-oneshot-ran as root" in journal
    result = m.run("systemctl show -P Result sandbox-test.service", check=True)
    assert result.stdout.strip() == "success"


def test_nsenter_reaches_the_guest_without_ssh(sandbox_host: harness.Machine) -> None:
    proc = sandbox_host.nsenter(["hostname"], check=True)
    assert proc.stdout.strip() == sandbox_host.name


def test_guest_reaches_a_server_on_the_host_end_of_its_veth(sandbox_host: harness.Machine) -> None:
    m = sandbox_host
    server = socket.create_server((m.host_address, 0))
    port = server.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            received.append(conn.recv(100))
            conn.sendall(b"pong from host")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    script = (
        "import socket\n"
        f"s = socket.create_connection(('{m.host_address}', {port}), 5)\n"
        "s.sendall(b'ping from guest')\n"
        "print(s.recv(100).decode())\n"
    )
    try:
        proc = m.run("python3 -", input=script, check=True)
    finally:
        thread.join(5)
        server.close()
    assert proc.stdout.strip() == "pong from host"
    assert received == [b"ping from guest"]


def test_guest_has_no_route_off_the_link(sandbox_host: harness.Machine) -> None:
    routes = sandbox_host.run("ip -4 route", check=True).stdout
    assert f"default via {sandbox_host.host_address}" in routes
    assert "169.254." in sandbox_host.address


def test_ansible_reaches_it_through_the_generated_inventory(
    sandbox_host: harness.Machine, tmp_path: Path
) -> None:
    ansible = shutil.which("ansible", path=str(Path(sys.executable).parent)) or shutil.which(
        "ansible"
    )
    if ansible is None:
        pytest.skip("ansible not installed")
    inv = tmp_path / "hosts.ini"
    harness.inventory([sandbox_host.name], inv, become_user=sandbox_host.admin_user)
    proc = subprocess.run(
        [ansible, "all", "-i", str(inv), "-m", "ansible.builtin.command", "-a", "id -u", "-o"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "PATH": f"{Path(ansible).parent}:/usr/bin:/bin",
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "HOME": str(tmp_path),
        },
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(stdout) 0" in proc.stdout


def test_cli_up_list_down() -> None:
    if harness.preflight():
        pytest.skip(harness.preflight() or "")
    name = f"cli-{secrets.token_hex(3)}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tests.sandbox", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    up = cli("up", name)
    try:
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        assert {
            "name",
            "address",
            "host_address",
            "user",
            "port",
            "identity_file",
            "admin_user",
            "state_dir",
        } <= info.keys()
        assert name in [entry["name"] for entry in json.loads(cli("list").stdout)]
        ssh = cli("ssh", name, "--", "echo", "hi")
        assert ssh.stdout.strip() == "hi", ssh.stderr
    finally:
        down = cli("down", name)
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout) == {"removed": [name]}
    assert _leftovers(harness.Machine.from_json(info)) == []


def test_down_cleans_up_after_a_failed_up() -> None:
    if harness.preflight():
        pytest.skip(harness.preflight() or "")
    name = "fail-" + secrets.token_hex(3)
    with pytest.raises(harness.SandboxError):
        harness.up(name, timeout=0.05)  # gives up mid-boot
    assert not Path(harness.RUN_DIR / name).exists()
    assert not Path(f"/run/netns/{harness.NETNS_PREFIX}{name}").exists()
    assert not (harness.DATA_DIR / "machines" / name).exists()
    assert harness.down(name) is False  # idempotent


def test_machine_context_manager_tears_down() -> None:
    if harness.preflight():
        pytest.skip(harness.preflight() or "")
    name = "ctx-" + secrets.token_hex(3)
    with harness.machine(name) as m:
        assert m.run("true").returncode == 0
    assert _leftovers(m) == []


def test_guest_reboot_boots_again(sandbox_factory: SandboxFactory) -> None:
    m = sandbox_factory("reboot")
    try:
        old_leader = m.leader_pid
        m.run("systemctl reboot")  # may or may not return before the connection drops
        deadline = time.monotonic() + 30
        while harness._find_leader(m.pid) in (0, old_leader):
            assert time.monotonic() < deadline, "guest never came back from reboot"
            time.sleep(0.1)
        m.wait_ready()
        assert m.nsenter(["systemctl", "is-system-running"]).stdout.strip() in (
            "running",
            "degraded",
        )
        assert m.run("hostname", check=True).stdout.strip() == m.name
    finally:
        sandbox_factory.destroy(m)
    assert _leftovers(m) == []
