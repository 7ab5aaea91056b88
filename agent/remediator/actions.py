"""Remediation actions: one playbook run through ``ansible_runner`` with a real timeout.

``run_playbook`` is the one entry point. It runs ``project/<playbook>`` of the private data dir
on the host itself (connection local) and returns a :class:`Remediation` — outcomes are data,
like ansible-runner's own ``status``/``rc``/``stats``. What it guarantees:

- **Incident data is data.** Extravars are written to a file in the run's artifact dir with
  every string tagged ``!unsafe``, and passed as ``-e @file``: Ansible never templates them (a
  log line holding ``{{ lookup('pipe', ...) }}`` stays text) and they are not on the command
  line, so not in the process list.
- **Minimal environment.** ansible-runner seeds the child's environment (and its ``command``
  artifact) with the whole process environment; here only what Ansible needs is kept.
- **The timeout kills the whole tree.** ansible-runner's own timeout kills only
  ``ansible-playbook``; its forked worker is a session leader of its own and would survive, as
  would a module's children. Every process of a run carries ``JADA_REMEDIATION=<ident>`` in
  its environment, so after the run (and by a watchdog thread if the runner itself hangs) every
  process with that mark, and every descendant of one, is killed.
- **Bounded, private artifacts.** ``rotate_artifacts`` keeps the newest N runs; every artifact
  file is made 0600 and every directory 0700.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

log = logging.getLogger(__name__)

MARK = "JADA_REMEDIATION"
OUTCOMES = ("recovered", "needs_human", "failed")


@dataclass
class Remediation:
    """One playbook run, as recorded in the incident."""

    ident: str
    playbook: str
    started: float
    finished: float | None = None
    status: str = "running"  # ansible-runner's: successful | failed | timeout | canceled
    rc: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    artifact_dir: str = ""
    outcome: str = "failed"  # recovered | needs_human | failed
    cause: str = ""
    machine_fixable: bool | None = None
    next_step: str = ""
    actions: list[str] = field(default_factory=list)
    error: str = ""
    killed: int = 0  # processes left behind that had to be killed

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else round(self.finished - self.started, 3)

    def to_json(self) -> dict[str, Any]:
        from agent.store import iso

        data = asdict(self)
        data["duration"] = self.duration
        for k in ("started", "finished"):
            v = data[k]
            data[k] = None if v is None else iso(_dt(v))
        return data


def _dt(t: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC)


# --------------------------------------------------------------------------- extravars


def unsafe_yaml(data: dict[str, Any]) -> str:
    """The extravars file: the whole mapping tagged ``!unsafe``.

    Tagging the top-level mapping makes ansible-core mark every string inside it as unsafe
    (never templated) while keeping each value's type; tagging each string scalar instead would
    make ansible-core re-resolve ``"400"`` as the integer 400.
    """
    return "!unsafe\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------- process sweep


def _proc_table() -> dict[int, tuple[int, bytes]]:
    """pid → (ppid, environ) of the processes we may read."""
    table: dict[int, tuple[int, bytes]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except (OSError, ValueError, IndexError):
            continue
        table[pid] = (ppid, env)
    return table


def marked_processes(ident: str) -> list[int]:
    """Processes carrying ``JADA_REMEDIATION=<ident>`` and all their descendants."""
    needle = f"{MARK}={ident}".encode()
    table = _proc_table()
    me = os.getpid()
    found = {
        pid
        for pid, (_pp, env) in table.items()
        if pid != me and (env.startswith(needle + b"\0") or b"\0" + needle + b"\0" in env)
    }
    changed = True
    while changed:  # descendants that dropped the mark (exec with a clean environment)
        changed = False
        for pid, (ppid, _env) in table.items():
            if ppid in found and pid not in found and pid != me:
                found.add(pid)
                changed = True
    return sorted(found)


def kill_marked(ident: str, rounds: int = 5) -> int:
    """SIGSTOP then SIGKILL every process of the run until none is left; the number killed."""
    killed: set[int] = set()
    for _ in range(rounds):
        pids = marked_processes(ident)
        if not pids:
            break
        # Freeze first so nobody forks a new child between the listing and the kill.
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        killed.update(pids)
        time.sleep(0.05)
    return len(killed)


# --------------------------------------------------------------------------- running


def _safe_ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:80]


def _private_tree(path: Path) -> None:
    """Artifacts may hold task output: 0700 directories, 0600 files."""
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o700)
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o700)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                os.chmod(p, 0o600)


AWS_CONFIG_VARS = frozenset(
    {
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CA_BUNDLE",
    }
)


def minimal_env(private_data_dir: str, ident: str, config_file: str | None) -> dict[str, str]:
    venv_bin = os.path.dirname(sys.executable)
    env = {
        "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", private_data_dir),
        "LANG": "C.UTF-8",
        "ANSIBLE_LOCAL_TEMP": os.path.join(private_data_dir, "tmp"),
        "ANSIBLE_REMOTE_TEMP": os.path.join(private_data_dir, "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        # Modules run on this host would log "Invoked with <args>" to the journal under the
        # remediator's unit: noise for the health audit, and arguments are nobody's business.
        "ANSIBLE_NO_TARGET_SYSLOG": "True",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        MARK: ident,
    }
    if config_file:
        env["JADA_AGENT_CONFIG"] = config_file
    # Where AWS is and which profile to use (the playbooks pull newer credentials from Secrets
    # Manager / SSM): configuration, not secrets. Keys themselves stay in the credentials file
    # or the instance role, never in the environment that ansible-runner records.
    for key, value in os.environ.items():
        if key == "AWS_ENDPOINT_URL" or key.startswith("AWS_ENDPOINT_URL_"):
            # An endpoint may carry user:password (a proxy's); runner artifacts record the env.
            env[key] = strip_userinfo(value)
        elif key in AWS_CONFIG_VARS:
            env[key] = value
    return env


def strip_userinfo(url: str) -> str:
    """``url`` without any ``user:password@`` part (left as it is when it does not parse)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return url.rsplit("@", 1)[-1] if "@" in url else url
    if "@" not in parts.netloc or host is None:
        return url
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def run_playbook(
    *,
    private_data_dir: str,
    playbook: str,
    extravars: dict[str, Any],
    incident_id: int,
    rule_name: str,
    group: dict[str, str],
    timeout: float,
    artifacts_keep: int = 20,
    cancel: threading.Event | None = None,
    config_file: str | None = None,
    ident: str | None = None,
    on_start: Any = None,
) -> Remediation:
    """Run ``project/<playbook>`` for an incident; never raises for a failed run."""
    import ansible_runner

    pdd = Path(private_data_dir)
    started = time.time()
    ident = ident or _safe_ident(f"{incident_id}-{rule_name}-{int(started * 1000)}")
    rem = Remediation(ident=ident, playbook=playbook, started=started)
    project_playbook = pdd / "project" / playbook
    if not project_playbook.is_file():
        rem.finished = time.time()
        rem.status = "failed"
        rem.error = f"{project_playbook}: no such playbook"
        rem.cause = "the remediation playbook is not installed"
        return rem
    artifacts = pdd / "artifacts"
    artifact_dir = artifacts / ident
    artifact_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(artifacts, 0o700)
    (pdd / "tmp").mkdir(mode=0o700, exist_ok=True)
    rem.artifact_dir = str(artifact_dir)
    result_file = artifact_dir / "jada-result.json"
    vars_file = artifact_dir / "jada-extravars.yml"
    data = {
        **extravars,
        "jada_incident_id": int(incident_id),
        "jada_rule": rule_name,
        "jada_group": dict(group),
        "jada_result_file": str(result_file),
        "jada_lock_held": True,
    }
    fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(unsafe_yaml(data))
    inventory = pdd / "inventory"
    inv_arg: str | None = None
    if not inventory.exists():
        inv_file = artifact_dir / "jada-inventory.ini"
        inv_file.write_text(
            f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        )
        inv_arg = str(inv_file)
    envvars = minimal_env(str(pdd), ident, config_file)
    canceled = cancel or threading.Event()
    kwargs: dict[str, Any] = {
        "private_data_dir": str(pdd),
        "playbook": playbook,
        "ident": ident,
        "rotate_artifacts": artifacts_keep,
        "suppress_env_files": True,
        "envvars": envvars,
        "cmdline": f"-e @{shlex.quote(str(vars_file))}",
        "quiet": True,
        "timeout": max(1, int(timeout)),
        "cancel_callback": canceled.is_set,
    }
    if inv_arg:
        kwargs["inventory"] = inv_arg
    try:
        runner = ansible_runner.interface.init_runner(**kwargs)
    except Exception as exc:  # a broken private data dir must not kill the service
        rem.finished = time.time()
        rem.status = "failed"
        rem.error = f"ansible-runner could not start: {type(exc).__name__}: {exc}"[:500]
        return rem
    # Drop the inherited environment: keep what ansible-runner itself added and our own.
    inherited = os.environ
    runner.config.env = {
        k: v
        for k, v in runner.config.env.items()
        if k in envvars or inherited.get(k) != v or k in ("PYTHONPATH",)
    }
    runner.config.env.update(envvars)
    # The runner checks its timeout and cancel callback once per pexpect wait.
    runner.config.pexpect_timeout = 0.2
    hard_stop = threading.Event()

    def watchdog() -> None:
        # If the runner does not come back after its own timeout, force the tree down.
        if not hard_stop.wait(timeout + 30):
            log.error("remediation %s: runner overran its timeout; killing its processes", ident)
            kill_marked(ident)

    guard = threading.Thread(target=watchdog, name=f"guard-{ident}", daemon=True)
    guard.start()
    if on_start is not None:
        on_start(rem)
    try:
        status, rc = runner.run()
    except Exception as exc:
        status, rc = "failed", None
        rem.error = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        hard_stop.set()
        rem.killed = kill_marked(ident)
    if rem.killed:
        log.warning("remediation %s: killed %d leftover process(es)", ident, rem.killed)
    rem.finished = time.time()
    rem.status = str(status)
    rem.rc = rc
    try:
        rem.stats = runner.stats or {}
    except Exception:
        rem.stats = {}
    _read_result(rem, result_file)
    if artifact_dir.exists():
        _private_tree(artifact_dir)
    return rem


def _read_result(rem: Remediation, path: Path) -> None:
    result: dict[str, Any] | None = None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        rem.error = rem.error or f"{path.name}: unreadable result: {exc}"[:300]
    if isinstance(result, dict):
        outcome = result.get("outcome")
        rem.cause = str(result.get("cause") or "")
        mf = result.get("machine_fixable")
        rem.machine_fixable = mf if isinstance(mf, bool) else None
        rem.next_step = str(result.get("next_step") or "")
        acts = result.get("actions")
        rem.actions = [str(a) for a in acts] if isinstance(acts, list) else []
        if outcome not in OUTCOMES:
            rem.error = rem.error or f"result outcome {outcome!r} is not one of {OUTCOMES}"
            outcome = "failed"
    else:
        outcome = "failed"
        if not rem.error:
            rem.error = "the playbook wrote no result"
    if rem.status == "timeout":
        rem.outcome = "failed"
        rem.error = rem.error if rem.error != "the playbook wrote no result" else ""
        rem.error = (rem.error + "; " if rem.error else "") + "timed out"
    elif rem.status == "canceled":
        rem.outcome = "failed"
    elif rem.status == "successful":
        rem.outcome = outcome
    else:
        # A failed run counts as failed unless it decided, before failing, that a human must act.
        rem.outcome = "needs_human" if outcome == "needs_human" else "failed"
