"""The whole incident story on one machine: the scenario engine of ``make demo`` and the e2e test.

One sandbox host (a real systemd machine, ``tests/sandbox``), the loopback fakes bound to the host
end of its veth link so the guest reaches them (Google OAuth + Sheets, Anthropic, Lightsail, and
moto's server for Secrets Manager), ``ansible-playbook site.yml`` once, then the production
incident and two that heal without a human:

1. the daemon runs sessions from seeded tasks against the fake Anthropic server; one never stops
   calling tools and hits the 30-turn cap;
2. the fake revokes the refresh token: every sync fails with ``[port-sheet] token error: HTTP
   Error 400: invalid_grant: ...``;
3. the remediator fires on the third failure, runs ``credential_refresh.yml``: cause
   ``revoked_or_expired``, not machine-fixable, a needs-you task names the command to run;
4. the operator runs ``playbooks/reauth.yml`` (the "browser" is a headless fetch of the consent
   URL); the next sync succeeds and the incident is resolved;
5. the token file made world-readable (``permission_audit.yml`` restores 0600) and the OAuth
   client secret rotated (HTTP 401 ``invalid_client``; the new client is pulled from Secrets
   Manager) heal by themselves;
6. a timeline from ``jada-agent remediator incidents --json`` and the scenario's own events, and
   the health report fetched to ``reports/``.

The scenario starts ``port-sheet-sync.service`` itself rather than waiting for the timer, so the
run is fast and each failure is counted exactly; the timer is installed and listed, scheduled
far enough away that it cannot fire during the run.

The fakes run as background processes (``python -m tests.fakes.<name> --host H --port P``) with
pid files in ``run_dir``, so the demo can leave them running for the operator to look around;
:func:`stop_fakes` (``make demo-down``) stops them. Every step returns data (``Event``s and the
host's JSON); the demo prints it, the test asserts on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fakes import anthropic as fa
from tests.fakes import google as fg
from tests.sandbox import harness

ROOT = Path(__file__).resolve().parents[2]
JADA = "/opt/jada-agent/venv/bin/jada-agent"
SYNC_UNIT = "port-sheet-sync.service"
SPREADSHEET_ID = "1DemoPortSheet-jada"
SECRET_NAME = "jada/google-token"
REGION = "us-east-1"
# Dummy AWS credentials for moto (it accepts any); never a real account's.
AWS_KEY_ID, AWS_SECRET = "AKIAJADADEMO00000000", "jada-demo-moto-secret-not-real"
# The tasks seeded into the dashboard, and how the fake model answers each.
TASK_TIDY = "Tidy the port allocation notes"
TASK_SUMMARY = "Write the weekly deployment summary"
TASK_LOOP = "Chase a flaky integration test"
FAKES = ("google", "anthropic", "lightsail", "moto", "webhook", "heartbeat")
# The webhook's path carries its token, as a Slack incoming webhook's does (a secret).
HOOK_TOKEN = "T0KEN" + os.urandom(8).hex()
HEARTBEAT_CHECK = "jada-story-" + os.urandom(4).hex()
# After a failure that must not fire a rule yet: time for the remediator to read the journal.
SETTLE_S = 2.0


def _now() -> float:
    return time.time()


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Event:
    """One line of the timeline: what happened, when, which playbook, with what outcome."""

    at: float
    step: str
    what: str
    playbook: str = ""
    outcome: str = ""
    source: str = "scenario"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "at": iso(self.at)}


@dataclass
class SyncResult:
    at: float
    ok: bool
    line: str


class StoryError(AssertionError):
    """A step of the story did not happen as it must (the message says which and what was seen)."""


# --------------------------------------------------------------------------- the fakes


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_port(
    host: str, port: int, proc: subprocess.Popen, log: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise StoryError(f"a fake exited at start ({proc.args}): {tail}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.1)
    raise StoryError(f"a fake did not listen on {host}:{port} within {timeout} s")


@dataclass
class Fakes:
    """The four fakes as background processes on ``host``; their state lives in ``run_dir``."""

    host: str
    run_dir: Path
    urls: dict[str, str] = field(default_factory=dict)

    def start(self) -> Fakes:
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in FAKES:
            port = _free_port(self.host)
            if name == "moto":
                argv = [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(port)]
            else:
                argv = [sys.executable, "-m", f"tests.fakes.{name}", "--host", self.host]
                argv += ["--port", str(port)]
                if name == "anthropic":
                    argv += ["--key", "bootstrap-only"]
                if name == "webhook":
                    argv += ["--path", f"/hooks/{HOOK_TOKEN}"]
                if name == "heartbeat":
                    argv += ["--check", HEARTBEAT_CHECK]
            log = self.run_dir / f"{name}.log"
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # outlives the demo process; demo-down stops it
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            (self.run_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
            _wait_port(self.host, port, proc, log)
            self.urls[name] = f"http://{self.host}:{port}"
        (self.run_dir / "fakes.json").write_text(json.dumps(self.urls, indent=2) + "\n")
        return self

    def stop(self) -> list[str]:
        return stop_fakes(self.run_dir)

    # ---- control (over HTTP, as another process would)
    def google(self, name: str, **kwargs: Any) -> Any:
        return fg.control(self.urls["google"], name, **kwargs)

    def anthropic(self, name: str, **data: Any) -> Any:
        import urllib.request

        req = urllib.request.Request(  # noqa: S310 - the loopback/link-local fake
            self.urls["anthropic"] + "/_control/" + name,
            data=json.dumps(data).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return json.loads(resp.read())

    def _get(self, name: str, path: str) -> Any:
        import urllib.request

        with urllib.request.urlopen(self.urls[name] + path, timeout=10) as resp:  # noqa: S310
            return json.loads(resp.read())

    @property
    def webhook_url(self) -> str:
        return f"{self.urls['webhook']}/hooks/{HOOK_TOKEN}"

    @property
    def heartbeat_url(self) -> str:
        return f"{self.urls['heartbeat']}/ping/{HEARTBEAT_CHECK}"

    def messages(self) -> list[dict[str, Any]]:
        """What a person received on the webhook, in order."""
        return list(self._get("webhook", "/_control/received")["received"])

    def pings(self) -> list[dict[str, Any]]:
        return list(self._get("heartbeat", "/_control/pings")["pings"])

    def secrets_manager(self) -> Any:
        import boto3

        return boto3.client(
            "secretsmanager",
            region_name=REGION,
            endpoint_url=self.urls["moto"],
            aws_access_key_id=AWS_KEY_ID,
            aws_secret_access_key=AWS_SECRET,
        )


def stop_fakes(run_dir: Path) -> list[str]:
    """Stop the fakes whose pid files are in ``run_dir``; returns the names stopped."""
    stopped = []
    for name in FAKES:
        pid_file = run_dir / f"{name}.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)  # its own session: the fake and nothing else
            stopped.append(name)
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
    return stopped


# --------------------------------------------------------------------------- the story


class Story:
    """One run of the scenario. ``say`` receives progress lines (the demo prints them)."""

    def __init__(
        self,
        name: str,
        work_dir: Path,
        run_dir: Path,
        *,
        say: Callable[[str], None] | None = None,
        reports_dir: Path | None = None,
    ):
        self.name = name
        self.work_dir = work_dir
        self.run_dir = run_dir
        self.reports_dir = reports_dir or work_dir / "reports"
        self.say = say or (lambda _line: None)
        self.events: list[Event] = []
        self.syncs: list[SyncResult] = []
        self.machine: harness.Machine | None = None
        self.fakes: Fakes | None = None
        self.secrets: list[str] = []  # every secret value the scenario made; none may leak
        self.ansible_logs: list[Path] = []
        self.client: dict[str, str] = {}
        self.inventory = work_dir / "inventory.yml"
        self.api_key = ""
        self.results: dict[str, Any] = {}
        self.early_fires: list[
            str
        ] = []  # incidents opened before their rule's threshold  # what each step returned, for the test's assertions

    # ------------------------------------------------------------------ helpers
    def event(
        self, step: str, what: str, playbook: str = "", outcome: str = "", at: float | None = None
    ) -> Event:
        e = Event(at or _now(), step, what, playbook, outcome)
        self.events.append(e)
        self.say(f"  [{iso(e.at)[11:19]}] {what}" + (f" -> {outcome}" if outcome else ""))
        return e

    @property
    def m(self) -> harness.Machine:
        if self.machine is None:
            raise StoryError("no sandbox host: call boot() first")
        return self.machine

    @property
    def f(self) -> Fakes:
        if self.fakes is None:
            raise StoryError("no fakes: call boot() first")
        return self.fakes

    def host(self, cmd: str, *, check: bool = True, timeout: float = 120, input: str | None = None):
        r = self.m.run(cmd, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise StoryError(f"on {self.name}: {cmd!r} exited {r.returncode}: {r.stderr[-1500:]}")
        return r

    def jada(self, *args: str, check: bool = True, timeout: float = 120) -> Any:
        """``jada-agent ARGS --json`` on the host, parsed."""
        r = self.host(shlex.join([JADA, *args]), check=check, timeout=timeout)
        return json.loads(r.stdout) if r.stdout.strip() else None

    def incidents(self) -> list[dict[str, Any]]:
        return self.jada("remediator", "incidents", "--json")

    def wait(self, what: str, probe: Callable[[], Any], timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(1)
        raise StoryError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")

    def ansible(self, playbook: str, *args: str, env: dict[str, str] | None = None) -> str:
        """Run a playbook from the repository against the sandbox host; keep its output."""
        log = self.work_dir / f"ansible-{len(self.ansible_logs) + 1:02d}-{Path(playbook).stem}.log"
        venv_bin = str(Path(sys.executable).parent)
        full_env = {
            **os.environ,
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            **(env or {}),
        }
        argv = [
            f"{venv_bin}/ansible-playbook",
            "-i",
            str(self.inventory),
            str(ROOT / playbook),
            *args,
        ]
        started = time.monotonic()
        r = subprocess.run(
            argv,
            cwd=ROOT,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        log.write_text(r.stdout + r.stderr)
        self.ansible_logs.append(log)
        if r.returncode != 0:
            raise StoryError(
                f"ansible-playbook {playbook} exited {r.returncode} after "
                f"{time.monotonic() - started:.0f} s; see {log}:\n{(r.stdout + r.stderr)[-3000:]}"
            )
        return r.stdout

    # ------------------------------------------------------------------ 0. set the stage
    def boot(self) -> None:
        """Build/boot the sandbox host and start the fakes on the host end of its link."""
        self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.work_dir, 0o700)
        t0 = time.monotonic()
        harness.build()
        self.machine = harness.up(self.name)
        self.event("setup", f"sandbox host {self.name} up at {self.m.address}", outcome="booted")
        self.fakes = Fakes(self.m.host_address, self.run_dir).start()
        self.event(
            "setup",
            "fakes listening on " + ", ".join(f"{k} {v}" for k, v in self.f.urls.items()),
            outcome=f"{time.monotonic() - t0:.1f}s",
        )

    def seed(self) -> None:
        """The world before the incident: an OAuth client, a live token, the sheet, the secret."""
        f = self.f
        self.client = f.google("add_client")
        token = f.google("issue_refresh_token", client_id=self.client["client_id"])
        f.google("create_spreadsheet", spreadsheet_id=SPREADSHEET_ID)
        self.token = token
        self.api_key = "sk-ant-demo-" + os.urandom(12).hex()
        f.anthropic("keys", keys=[self.api_key])
        self.secrets += [
            HOOK_TOKEN,
            HEARTBEAT_CHECK,
            self.client["client_secret"],
            token["refresh_token"],
            self.api_key,
            AWS_SECRET,
        ]
        # The secret store holds the same token as the host: a stale copy is no fix for it.
        f.secrets_manager().create_secret(Name=SECRET_NAME, SecretString=json.dumps(token))
        # The operator's OAuth client file for the re-auth playbook (on this machine).
        client_file = self.work_dir / "client_secret.json"
        fd = os.open(client_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(
                {
                    "installed": {
                        "client_id": self.client["client_id"],
                        "client_secret": self.client["client_secret"],
                        "redirect_uris": ["http://127.0.0.1"],
                    }
                },
                fh,
            )
        self.client_file = client_file
        self.event(
            "setup", "seeded: OAuth client, refresh token, spreadsheet, Secrets Manager copy"
        )

    # ------------------------------------------------------------------ deploy
    def host_vars(self) -> dict[str, Any]:
        """Inventory variables that point the settings at the fakes (see the roles' defaults)."""
        from tests.e2e import inventory_vars

        return inventory_vars.for_story(self)

    def deploy(self) -> None:
        hv = self.host_vars()
        text = harness.inventory([self.name], fmt="yaml", group="jada")
        inv = json.loads(text)
        inv["jada"]["hosts"][self.name].update(hv["host"])
        inv["jada"]["vars"] = hv["group"]
        fd = os.open(self.inventory, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(inv, fh, indent=2)
        started = time.monotonic()
        self.ansible("site.yml")
        self.event("deploy", "AWS access for the remediator: endpoint moto, credentials file 0600")
        self.event(
            "deploy",
            f"ansible-playbook site.yml against {self.name}",
            "site.yml",
            f"ok in {time.monotonic() - started:.0f}s",
        )

    def check_units(self) -> None:
        """The timer is installed (and listed), the daemon and the remediator are running."""
        timers = self.host("systemctl list-timers --all --no-legend port-sheet-sync.timer").stdout
        if "port-sheet-sync.timer" not in timers:
            raise StoryError(f"port-sheet-sync.timer is not listed on the host: {timers!r}")
        self.timer_line = " ".join(timers.split())
        self.event("deploy", "timer listed: " + self.timer_line)
        for unit in ("jada-agent.service", "jada-remediator.service"):
            self.wait(f"{unit} active", lambda u=unit: self._active(u), timeout=60)
        self.event("deploy", "jada-agent.service and jada-remediator.service active")

    def _active(self, unit: str) -> bool:
        return self.host(f"systemctl is-active {unit}", check=False).stdout.strip() == "active"

    # ------------------------------------------------------------------ the sync, by hand
    def sync(self) -> SyncResult:
        """Start the sync once (as the timer would) and read the line it logged."""
        before = self._sync_lines()
        at = _now()
        self.host(f"systemctl start {SYNC_UNIT}", check=False, timeout=120)
        lines = self._sync_lines()
        new = lines[len(before) :] or lines[-1:]
        line = new[-1] if new else ""
        result = SyncResult(at, " sync ok" in line, line)
        self.syncs.append(result)
        return result

    def _sync_lines(self) -> list[str]:
        r = self.host(
            f"journalctl -q -u {SYNC_UNIT} -o cat --no-pager | grep -F '[port-sheet]' || true"
        )
        return [x for x in r.stdout.splitlines() if x.strip()]

    # ------------------------------------------------------------------ 1. sessions
    def sessions(self) -> dict[str, Any]:
        f = self.f
        done = lambda summary: fa.reply(fa.tool_use("complete_task", {"summary": summary}))  # noqa: E731
        f.anthropic(
            "route",
            match=TASK_TIDY,
            replies=[
                fa.reply(fa.text("Looking first."), fa.tool_use("list_files", {"path": "."})),
                fa.reply(fa.tool_use("update_progress", {"note": "notes sorted by port"})),
                done("port notes tidied"),
            ],
        )
        f.anthropic("route", match=TASK_SUMMARY, replies=[done("summary written")])
        # The flaky test is never pinned down: a tool call every turn until the cap (30); the
        # next session on the same task (it stays open) finishes it.
        f.anthropic(
            "route",
            match=TASK_LOOP,
            replies=[fa.reply(fa.tool_use("list_files", {"path": "."}))] * 30,
            then=done("flake traced to a shared port"),
        )
        for title in (TASK_TIDY, TASK_SUMMARY, TASK_LOOP):
            task = self.jada("tasks", "add", title, "--json")
            self.event("sessions", f"task {task['id']} added: {title}")
        report = self.wait(
            "the daemon to finish the seeded tasks",
            self._sessions_done,
            timeout=180,
        )
        self.event(
            "sessions",
            f"{report['sessions']} sessions: "
            + ", ".join(f"{k} {v}" for k, v in report["by_outcome"].items()),
            outcome=f"turn cap hit by {[t['title'] for t in report['tasks_hitting_cap']]}",
        )
        return report

    def _sessions_done(self) -> dict[str, Any] | None:
        tasks = self.jada("tasks", "list", "--status", "done", "--json")
        mine = [t for t in tasks if t["title"] in (TASK_TIDY, TASK_SUMMARY, TASK_LOOP)]
        if len(mine) == 3:
            return self.jada("sessions", "--json")
        return None

    # ------------------------------------------------------------------ 2-3. revoked token
    def first_sync_ok(self) -> SyncResult:
        r = self.sync()
        if not r.ok:
            raise StoryError(f"the first sync on a fresh host failed: {r.line!r}")
        self.event("baseline", "sync: " + r.line, outcome="ok", at=r.at)
        return r

    def _failing_syncs(self, phase: str, expect: str, group: str, threshold: int) -> set[int]:
        """Run the sync ``threshold`` times, each failing with ``expect``; the remediator must
        not open an incident before the last. Returns the ids of the incidents before."""
        before = {i["id"] for i in self.incidents()}
        for n in range(1, threshold + 1):
            r = self.sync()
            if r.ok or expect not in r.line:
                raise StoryError(f"sync {n} ({phase}) logged {r.line!r}, not {expect!r}")
            self.event(phase, f"sync failure {n}: {r.line}", outcome="failed", at=r.at)
            if n < threshold:
                # Give the remediator time to read the line: it must not fire yet.
                time.sleep(SETTLE_S)
                self._early(group, n, before)
        return before

    def revoke(self) -> dict[str, Any]:
        """Revoke the grant; fail the sync until the remediator fires; return that incident."""
        self.f.google("revoke_all")
        self.event("revoked", "Google revokes the refresh token (fake: revoke_all)")
        before = self._failing_syncs(
            "revoked", "token error: HTTP Error 400: invalid_grant", "sheet-sync-token/400", 3
        )
        incident = self.wait(
            "the remediator to finish credential_refresh.yml",
            lambda: self._finished_incident(before, "sheet-sync-token"),
            timeout=240,
        )
        rem = incident["remediations"][-1]
        self.event(
            "remediation",
            f"incident #{incident['id']} {incident['rule']} {incident['group']}: "
            f"cause {rem.get('cause')}, machine-fixable {rem.get('machine_fixable')}",
            rem.get("playbook", ""),
            rem.get("outcome") or rem.get("status", ""),
        )
        return incident

    def _early(self, what: str, failure: int, before: set[int]) -> None:
        """Record an incident opened before its rule's threshold (the test asserts none)."""
        for i in self.incidents():
            label = f"{what}: incident #{i['id']}"
            if i["id"] not in before and not any(e.startswith(label) for e in self.early_fires):
                self.early_fires.append(f"{label} open after failure {failure}")
                self.event("early", f"{label} already open", outcome="EARLY")

    def _finished_incident(self, before: set[int], rule: str) -> dict[str, Any] | None:
        for i in self.incidents():
            if i["id"] in before or i["rule"] != rule:
                continue
            if i["remediations"] and i["remediations"][-1].get("finished"):
                return i
        return None

    def needs_you(self) -> dict[str, Any]:
        tasks = self.jada("tasks", "list", "--status", "needs_you", "--json")
        if not tasks:
            raise StoryError("no needs-you task after the revoked-token remediation")
        task = self.jada("tasks", "show", str(tasks[-1]["id"]), "--json")
        self.event("needs-you", f"needs-you task {task['id']}: {task['title']}")
        return task

    # ------------------------------------------------------------------ 4. the operator
    def reauth(self, incident_id: int) -> dict[str, Any]:
        browser = self._headless_browser()
        out = self.ansible(
            "playbooks/reauth.yml",
            "-l",
            self.name,
            *self._reauth_args(),
            env={"BROWSER": str(browser), "OAUTHLIB_INSECURE_TRANSPORT": "1"},
        )
        self.reauth_output = out
        self.event(
            "operator", f"ansible-playbook playbooks/reauth.yml -l {self.name}", "reauth.yml"
        )
        # Record the new refresh token (the fake issued it) so the leak checks look for it too.
        self.secrets += self._issued_refresh_tokens()
        r = self.sync()
        if not r.ok:
            raise StoryError(f"the sync after re-authentication failed: {r.line!r}")
        self.event("operator", "next sync: " + r.line, outcome="ok", at=r.at)
        incident = self.wait(
            f"incident #{incident_id} to be resolved",
            lambda: self._resolved(incident_id),
            timeout=60,
        )
        self.event("operator", f"incident #{incident_id} resolved", outcome=incident["status"])
        return incident

    def _reauth_args(self) -> list[str]:
        from tests.e2e import inventory_vars

        return inventory_vars.reauth_args(self)

    def _headless_browser(self) -> Path:
        """An executable that plays the operator's browser: it GETs the consent URL and follows
        the redirect back to the login's loopback server (``BROWSER`` for Python's webbrowser)."""
        path = self.work_dir / "headless-browser"
        # webbrowser waits for a "generic" browser to exit, and the login only answers the
        # redirect after that: like a real browser, return at once and fetch in the background.
        path.write_text(
            f"#!{sys.executable}\n"
            "import os, sys, urllib.request\n"
            "if os.fork():\n"
            "    sys.exit(0)\n"
            "os.setsid()\n"
            "null = os.open(os.devnull, os.O_RDWR)\n"
            "for fd in (0, 1, 2):\n"
            "    os.dup2(null, fd)\n"
            "urllib.request.urlopen(sys.argv[1], timeout=30).read()\n"
        )
        path.chmod(0o700)
        return path

    def _issued_refresh_tokens(self) -> list[str]:
        # The fake's log holds no tokens; the secret store and the host's file do. Read the
        # host's current token through the same no-log path the check uses (stdin/stdout only).
        r = self.host("cat /var/lib/jada-agent/secrets/google-token.json")
        return [json.loads(r.stdout)["refresh_token"]]

    def _resolved(self, incident_id: int) -> dict[str, Any] | None:
        for i in self.incidents():
            if i["id"] == incident_id and i["status"] == "resolved":
                return i
        return None

    # ------------------------------------------------------------------ 5a. permissions
    def loosen_permissions(self) -> dict[str, Any]:
        token_file = "/var/lib/jada-agent/secrets/google-token.json"
        self.host(f"chmod 0644 {token_file}")
        self.event("permissions", f"someone runs chmod 0644 {token_file}")
        before = self._failing_syncs(
            "permissions", "permission error", "sheet-sync-token-permissions", 2
        )
        incident = self.wait(
            "the permission audit to run and resolve the incident",
            lambda: self._new_resolved(before, "sheet-sync-token-permissions"),
            timeout=240,
        )
        rem = incident["remediations"][-1]
        mode = self.host(f"stat -c %a {token_file}").stdout.strip()
        self.event(
            "permissions",
            f"incident #{incident['id']} {incident['rule']}: token file mode now {mode}",
            rem.get("playbook", ""),
            f"{rem.get('outcome') or rem.get('status')}, {incident['status']}",
        )
        return incident

    def _new_resolved(self, before: set[int], rule: str) -> dict[str, Any] | None:
        # The playbook's own verifying sync can resolve the incident before the run is recorded.
        for i in self.incidents():
            new = i["id"] not in before and i["rule"] == rule and i["status"] == "resolved"
            if new and i["remediations"] and i["remediations"][-1].get("finished"):
                return i
        return None

    # ------------------------------------------------------------------ 5b. rotated secret
    def rotate_client_secret(self) -> dict[str, Any]:
        f = self.f
        rotated = f.google("rotate_client_secret", client_id=self.client["client_id"])
        self.secrets.append(rotated["client_secret"])
        # The operator published the new client with the host's current refresh token.
        current = json.loads(self.host("cat /var/lib/jada-agent/secrets/google-token.json").stdout)
        current["client_secret"] = rotated["client_secret"]
        f.secrets_manager().put_secret_value(SecretId=SECRET_NAME, SecretString=json.dumps(current))
        self.event(
            "rotated",
            "the OAuth client secret is rotated; the new client is published in Secrets Manager",
        )
        before = self._failing_syncs(
            "rotated", "token error: HTTP Error 401", "sheet-sync-token/401", 3
        )
        incident = self.wait(
            "the remediator to install the rotated client and resolve the incident",
            lambda: self._new_resolved(before, "sheet-sync-token"),
            timeout=240,
        )
        rem = incident["remediations"][-1]
        self.event(
            "rotated",
            f"incident #{incident['id']} {incident['rule']} {incident['group']}: "
            f"cause {rem.get('cause')}",
            rem.get("playbook", ""),
            f"{rem.get('outcome') or rem.get('status')}, {incident['status']}",
        )
        return incident

    # ------------------------------------------------------------------ after: no loop
    def quiet_syncs(self, count: int = 3) -> list[SyncResult]:
        runs_before = sum(len(i["remediations"]) for i in self.incidents())
        out = [self.sync() for _ in range(count)]
        time.sleep(SETTLE_S)
        runs_after = sum(len(i["remediations"]) for i in self.incidents())
        self.event(
            "after",
            f"{count} more syncs: {sum(r.ok for r in out)} ok; remediations "
            f"{runs_before} -> {runs_after}",
            outcome="quiet" if runs_after == runs_before else "LOOP",
        )
        return out

    # ------------------------------------------------------------------ 6. timeline, report
    def timeline(self) -> list[Event]:
        """The scenario's events and the host's incident history, in time order."""
        merged = list(self.events)
        for i in self.incidents():
            group = ",".join(f"{k}={v}" for k, v in (i.get("group") or {}).items())
            label = f"#{i['id']} {i['rule']}" + (f"[{group}]" if group else "")
            merged.append(
                Event(_parse_iso(i["opened"]) or 0, "host", f"{label} opened", "", "", "remediator")
            )
            for rem in i["remediations"]:
                merged.append(
                    Event(
                        _parse_iso(rem.get("started")) or 0,
                        "host",
                        f"{label} remediation ran {rem.get('duration') or '?'} s"
                        + (f": cause {rem['cause']}" if rem.get("cause") else ""),
                        rem.get("playbook", ""),
                        str(rem.get("outcome") or rem.get("status") or ""),
                        "remediator",
                    )
                )
            if i.get("resolved"):
                merged.append(
                    Event(
                        _parse_iso(i["resolved"]) or 0,
                        "host",
                        f"{label} resolved",
                        "",
                        "resolved",
                        "remediator",
                    )
                )
        merged.sort(key=lambda e: e.at)
        return merged

    def report(self) -> dict[str, Path]:
        """``jada-agent health --json`` and ``--html`` on the host, fetched to ``reports_dir``."""
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        out = {}
        r = self.host(f"{JADA} health --json", timeout=180)
        json_path = self.reports_dir / "health.json"
        json_path.write_text(r.stdout)
        out["json"] = json_path
        self.host(f"{JADA} health --html /root/health.html", timeout=180)
        html = self.host("cat /root/health.html").stdout
        html_path = self.reports_dir / "health.html"
        html_path.write_text(html)
        out["html"] = html_path
        timeline_path = self.reports_dir / "timeline.json"
        timeline_path.write_text(
            json.dumps([e.to_json() for e in self.timeline()], indent=2) + "\n"
        )
        out["timeline"] = timeline_path
        return out

    # ------------------------------------------------------------------ evidence for the test
    def notifications(self, last_incident: int | None = None) -> list[dict[str, Any]]:
        """The messages a person received (the loopback webhook), once the last incident's
        resolution has arrived."""

        def arrived() -> list[dict[str, Any]] | None:
            msgs = self.f.messages()
            if last_incident is None or any(
                m.get("event") == "resolved" and m.get("incident") == last_incident for m in msgs
            ):
                return msgs
            return None

        return self.wait("the last incident's resolution message", arrived, timeout=90)

    def leaks(self) -> dict[str, list[str]]:
        """Where any secret value of the scenario shows up: journal, runner artifacts, ansible
        output. Secrets go to the host on stdin, never on a command line."""
        found: dict[str, list[str]] = {}
        needles = "\n".join(s for s in self.secrets if s) + "\n"
        journal = self.host(
            # The needles come on the session's stdin (fd 3 here): grep's own stdin is the pipe.
            "exec 3<&0; journalctl --merge -o cat --no-pager | grep -cFf /dev/fd/3 || true",
            input=needles,
        ).stdout.strip()
        if journal not in ("", "0"):
            found["journal"] = [f"{journal} lines"]
        artifacts = self.host(
            "grep -rlFf /dev/stdin /var/lib/jada-remediator/runner || true", input=needles
        ).stdout.split()
        if artifacts:
            found["runner artifacts"] = artifacts
        local = [
            str(log)
            for log in self.ansible_logs
            if any(s and s in log.read_text() for s in self.secrets)
        ]
        if local:
            found["ansible output"] = local
        return found

    def secret_modes(self) -> dict[str, str]:
        r = self.host("find /var/lib/jada-agent/secrets -maxdepth 1 -printf '%p %m %u\\n'").stdout
        return {line.split()[0]: " ".join(line.split()[1:]) for line in r.splitlines() if line}

    # ------------------------------------------------------------------ teardown
    def down(self) -> None:
        """Stop the fakes and remove the host. Our units are stopped first: stopped by hand they
        take well under a second, while a poweroff with them running took 15-30 s here."""
        if self.machine is not None:
            with contextlib.suppress(Exception):
                self.m.run(
                    "systemctl stop jada-remediator.service jada-agent.service port-sheet-sync.timer",
                    timeout=60,
                )
        with contextlib.suppress(Exception):
            stop_fakes(self.run_dir)
        with contextlib.suppress(Exception):
            harness.down(self.name)


def timer_schedule(now: datetime | None = None) -> str:
    """An ``OnCalendar=`` twelve hours away: the timer exists and is listed, but cannot fire
    during the run (the scenario starts the unit itself, so every failure is counted)."""
    at = (now or datetime.now(UTC)) + timedelta(hours=12)
    return f"*-*-* {at:%H}:{at:%M}:00 UTC"


def format_timeline(events: list[Event]) -> str:
    lines = []
    for e in events:
        cols = [iso(e.at)[11:19], f"{e.source:<10}", e.what]
        if e.playbook:
            cols.append(f"[{e.playbook}]")
        if e.outcome:
            cols.append(f"-> {e.outcome}")
        lines.append("  ".join(cols))
    return "\n".join(lines)


def format_messages(msgs: list[dict[str, Any]]) -> str:
    """The messages a person received, in order, as they would read them."""
    if not msgs:
        return "  (no message reached anybody)"
    lines: list[str] = []
    for n, m in enumerate(msgs, 1):
        lines.append(f"  {n}. {m.get('title', '')}")
        lines += [f"     | {line}" for line in str(m.get("text", "")).splitlines()]
    return "\n".join(lines)
