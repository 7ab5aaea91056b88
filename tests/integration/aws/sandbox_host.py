"""Make a sandbox host look like a jada-agent host for the health audit.

Ships this checkout's ``agent`` package (plus PyYAML, the one dependency the audit needs on a
host) to ``/opt/jada-health``, installs the three units with a sync that fails with the token error
every few seconds (the production pattern, sped up), and optionally makes sshd trust the fake
Lightsail's certificate authority, as a Lightsail instance trusts Lightsail's.
"""

from __future__ import annotations

import io
import shlex
import subprocess
import tarfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
REMOTE_LIB = "/opt/jada-health"
# The guest has PyYAML but not the other parts' dependencies: `jada-agent health` needs no more.
HEALTH_COMMAND = ["env", f"PYTHONPATH={REMOTE_LIB}", "python3", "-m", "agent"]
SYNC_PERIOD_S = 3

UNITS = {
    "jada-agent.service": """[Unit]
Description=jada-agent orchestrator (sandbox stand-in)
[Service]
Type=simple
ExecStart=/bin/sh -c 'while :; do echo "poll: queue depth=0 ready=0 running=0"; sleep 2; done'
[Install]
WantedBy=multi-user.target
""",
    "jada-remediator.service": """[Unit]
Description=jada-agent remediator (sandbox stand-in)
[Service]
Type=simple
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
""",
    "port-sheet-sync.service": """[Unit]
Description=Port sheet sync
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "[port-sheet] token error: HTTP Error 400: invalid_grant: Token has been expired or revoked."; exit 2'
""",
    "port-sheet-sync.timer": f"""[Unit]
Description=Port sheet sync (sped up: every {SYNC_PERIOD_S} s)
[Timer]
OnActiveSec=1s
OnUnitActiveSec={SYNC_PERIOD_S}s
AccuracySec=50ms
[Install]
WantedBy=timers.target
""",
}


def _payload(ca_public_key: str | None) -> bytes:
    buf = io.BytesIO()

    def skip_cache(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if "__pycache__" in ti.name else ti

    def add_text(tar: tarfile.TarFile, name: str, text: str) -> None:
        data = text.encode()
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(ROOT / "agent", "agent", filter=skip_cache)
        tar.add(Path(yaml.__file__).parent, "yaml", filter=skip_cache)
        for name, text in UNITS.items():
            add_text(tar, f"units/{name}", text)
        if ca_public_key:
            add_text(tar, "lightsail_ca.pub", ca_public_key + "\n")
    return buf.getvalue()


_SETUP = f"""set -e
mkdir -p {REMOTE_LIB} && tar -xz -C {REMOTE_LIB}
cp {REMOTE_LIB}/units/* /etc/systemd/system/
systemctl daemon-reload
systemctl enable --now jada-agent.service jada-remediator.service port-sheet-sync.timer
if [ -f {REMOTE_LIB}/lightsail_ca.pub ]; then
  install -m 0644 {REMOTE_LIB}/lightsail_ca.pub /etc/ssh/lightsail_ca.pub
  echo 'TrustedUserCAKeys /etc/ssh/lightsail_ca.pub' >> /etc/ssh/sshd_config
  systemctl reload ssh
fi
"""


def prepare(machine, ca_public_key: str | None = None) -> None:
    """Ship the agent, install and start the units, trust the CA (if given): one SSH call."""
    payload = _payload(ca_public_key)
    script = _SETUP.replace("tar -xz -C", "base64 -d | tar -xz -C")
    import base64

    subprocess.run(
        [*machine.ssh_argv(), "--", "sh", "-c", shlex.quote(script)],
        input=base64.b64encode(payload), capture_output=True, timeout=120, check=True,
    )  # fmt: skip


def wait_for_failures(machine, count: int, timeout: float = 60) -> int:
    """Wait until the sync has failed ``count`` times; returns how many it has."""
    deadline = time.time() + timeout
    seen = 0
    while time.time() < deadline:
        r = subprocess.run(
            [*machine.ssh_argv(), "--",
             "journalctl -q -u port-sheet-sync.service --grep 'token error' -o cat | wc -l"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        seen = int(r.stdout.strip() or 0)
        if seen >= count:
            return seen
        time.sleep(1)
    raise TimeoutError(f"only {seen} sync failures after {timeout} s")


def host_key(machine) -> str:
    """The guest's host public key ("algorithm base64"), as pinned by the harness."""
    line = Path(machine.known_hosts_file).read_text().split("\n")[0]
    return " ".join(line.split()[1:3])
