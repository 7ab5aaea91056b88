"""``make demo``: the whole incident story on this machine, no cloud account needed.

    python -m tests.demo            # run the story; leave the host and the fakes up to look around
    python -m tests.demo --down     # at the end, take everything down instead
    python -m tests.demo down       # stop the fakes and the sandbox host (``make demo-down``)

Needs root (the sandbox host is a systemd-nspawn machine). The fakes run as background processes
with pid files in ``/run/jada-demo`` (``JADA_DEMO_RUN`` to move it); the inventory, the operator's
OAuth client file and every ansible-playbook output are kept there too (0700). The health report
and the timeline go to ``reports/demo/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.story import (
    JADA,
    ROOT,
    Story,
    StoryError,
    format_messages,
    format_timeline,
    stop_fakes,
)
from tests.sandbox import harness

RUN_DIR = Path(os.environ.get("JADA_DEMO_RUN", "/run/jada-demo"))
NAME = os.environ.get("JADA_DEMO_NAME", "demo")


def say(line: str = "") -> None:
    print(line, flush=True)


def step(title: str) -> None:
    say()
    say(f"== {title}")


def down() -> int:
    state = RUN_DIR / "demo.json"
    name = NAME
    with contextlib.suppress(OSError, ValueError, KeyError):
        name = json.loads(state.read_text())["name"]
    with contextlib.suppress(harness.SandboxError, OSError, subprocess.SubprocessError):
        # Stopped by hand our units take well under a second; a poweroff with them running
        # takes much longer in the sandbox.
        harness.get(name).run(
            "systemctl stop jada-remediator.service jada-agent.service port-sheet-sync.timer",
            timeout=60,
        )
    stopped = stop_fakes(RUN_DIR)
    removed = harness.down(name)
    say(f"fakes stopped: {', '.join(stopped) or 'none running'}")
    say(f"sandbox host {name}: {'removed' if removed else 'not running'}")
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(RUN_DIR)
    # The harness's own directories, once no sandbox host (of any checkout) is left in them:
    # what stays is the documented caches (README "Caches") and, in /run (memory), the
    # harness's lock file, which other checkouts may hold.
    for d in (harness.DATA_DIR / "machines", harness.DATA_DIR, harness.RUN_DIR / "_addr"):
        with contextlib.suppress(OSError):
            d.rmdir()  # only when empty
    return 0


def run(keep: bool) -> int:
    if os.geteuid() != 0:
        say("make demo needs root: the sandbox host is a systemd-nspawn machine")
        return 1
    reason = harness.preflight()
    if reason is not None:
        say(f"cannot boot a sandbox host here: {reason}")
        return 1
    if (RUN_DIR / "demo.json").exists():
        say("a previous demo is still up; taking it down first")
        down()
    RUN_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    story = Story(
        NAME,
        RUN_DIR / "work",
        RUN_DIR,
        say=say,
        reports_dir=ROOT / "reports" / "demo",
    )
    (RUN_DIR / "demo.json").write_text(json.dumps({"name": NAME}) + "\n")
    started = time.monotonic()
    try:
        step(
            "0. A sandbox host and the fakes (Google, Anthropic, Lightsail, Secrets Manager,"
            " a webhook and a heartbeat endpoint)"
        )
        story.boot()
        story.seed()
        step("   ansible-playbook site.yml against the host (first run builds the wheelhouse)")
        story.deploy()
        step("1. The daemon runs Claude sessions from three seeded tasks (fake Anthropic)")
        story.sessions()
        step("2. The sync works, then Google revokes the refresh token")
        story.first_sync_ok()
        incident = story.revoke()
        step("3. The remediator fired on the third failure; a person is needed")
        task = story.needs_you()
        say("  needs-you task body:")
        for line in task.get("body", "").splitlines():
            say("    | " + line)
        step("4. The operator re-authorizes (playbooks/reauth.yml, headless browser consent)")
        story.reauth(incident["id"])
        step("5a. Someone makes the token file world-readable")
        story.loosen_permissions()
        step("5b. The OAuth client secret is rotated (new client published in Secrets Manager)")
        story.rotate_client_secret()
        step("   A few more syncs: nothing left to heal, no remediation loop")
        story.quiet_syncs(3)
        step("6. Timeline")
        messages = story.notifications(story.incidents()[-1]["id"])
        say(format_timeline(story.timeline()))
        files = story.report()
        say()
        verdict = json.loads(files["json"].read_text()).get("verdict", "unknown")
        say(f"health verdict: {verdict.upper()}")
        say("health report: " + ", ".join(str(p.relative_to(ROOT)) for p in files.values()))
        step("7. What a person received (the loopback webhook), in order")
        say(format_messages(messages))
        pings = story.f.pings()
        say(
            f"  heartbeat endpoint: {len(pings)} pings"
            + (f", last {pings[-1]['body'].splitlines()[0]!r}" if pings else "")
        )
    except (StoryError, harness.SandboxError, KeyboardInterrupt) as exc:
        say()
        say(f"the demo stopped: {exc or 'interrupted'}")
        say(f"outputs kept in {story.work_dir}; take it down with: make demo-down")
        return 1
    say(f"\ndone in {time.monotonic() - started:.0f} s")
    if not keep:
        down()
        return 0
    py = sys.executable
    if py.startswith(str(ROOT) + os.sep):
        py = os.path.relpath(py, ROOT)
    ssh = f"{py} -m tests.sandbox ssh {NAME}"
    say(
        f"""
The host and the fakes are still up. Look around (from {ROOT}):

  {ssh} -- {JADA} remediator incidents
  {ssh} -- {JADA} tasks list --status needs_you --status done
  {ssh} -- {JADA} status
  {ssh} -- journalctl -u port-sheet-sync.service -u jada-remediator.service
  {ssh}          # a shell on the host
  or plain ssh:  {shlex.join(story.m.ssh_argv())}

  fakes: {", ".join(f"{k} {v}" for k, v in story.f.urls.items())} (pid files in {RUN_DIR})
  inventory and every ansible-playbook output: {story.work_dir}
  health report and timeline: {story.reports_dir}

Tear it all down with:  make demo-down"""
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.demo", description=__doc__.splitlines()[0])
    p.add_argument("action", nargs="?", choices=("run", "down"), default="run")
    p.add_argument("--down", action="store_true", help="take everything down at the end")
    args = p.parse_args(argv)
    if args.action == "down":
        return down()
    return run(keep=not args.down)


if __name__ == "__main__":
    raise SystemExit(main())
