"""The daemon as a process: nudges, SIGTERM, the lease between two daemons, sd_notify, secrets."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from agent import config
from agent.store import open_store
from tests.fakes.anthropic import reply, tool_use
from tests.integration.daemon.conftest import KEY, cli

DONE = reply(tool_use("complete_task", {"summary": "ok"}))


def _blocking_fake(fake, release: threading.Event, entered: threading.Event) -> None:
    """The model 'thinks' until released: the session sits inside messages.create."""

    def handler(body):
        entered.set()
        release.wait(60)
        return DONE

    fake.set_handler(handler)


def _store(cfg):
    return open_store(config.load(cfg))


def test_a_task_added_while_idle_is_started_by_the_nudge(config_file, daemons) -> None:
    cfg = config_file(command_runner=True)
    d = daemons(cfg)
    d.wait_for("no ready task: waiting")
    # poll_interval is an hour: only the nudge from `tasks add` can wake the daemon now.
    tid = cli(cfg, "tasks", "add", "nudged").strip()
    d.wait_for(rf"session 1 task {tid} started", timeout=60)
    d.wait_for(rf"session 1 task {tid} ended outcome=completed turns=0 exit=0")
    assert d.stop() == 0
    with _store(cfg) as store:
        assert store.get_task(int(tid)).status == "done"
        assert store.get_lease("sessions") is None  # released on a clean stop


def test_sigterm_mid_session_records_interrupted_and_exits_cleanly(
    config_file, daemons, fake
) -> None:
    cfg = config_file()
    release, entered = threading.Event(), threading.Event()
    _blocking_fake(fake, release, entered)
    cli(cfg, "tasks", "add", "long think")
    d = daemons(cfg)
    d.wait_for("session 1 task 1 started")
    assert entered.wait(60)
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=60) == 0
    release.set()
    assert any("session 1 task 1 ended outcome=interrupted" in line for line in d.lines)
    with _store(cfg) as store:
        (s,) = store.list_sessions()
        assert (s.outcome, s.exit_code) == ("interrupted", 143)
        assert store.get_task(1).status == "ready"


def _held(workspace_root, task_id: int):
    return workspace_root / f"task-{task_id}"


def _wait_file(path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.slow
def test_two_daemons_on_one_store_only_one_runs_sessions_and_the_other_takes_over(
    config_file, daemons, tmp_path
) -> None:
    cfg = config_file(command_runner=True)
    a = daemons(cfg)
    a.wait_for("session lease taken")
    b = daemons(cfg)
    b.wait_for("standing by")
    for i in range(2):
        cli(cfg, "tasks", "add", f"t{i}")
    a.wait_for("session 2 task 2 ended outcome=completed")
    with _store(cfg) as store:
        owners = {s.owner.split(":")[1] for s in store.list_sessions()}
    assert owners == {str(a.pid)}
    assert not any("started" in line for line in b.lines)
    # The holder dies mid-session: the standby sees its pid gone, takes over, and records the
    # dead daemon's session as interrupted (it counts against the day).
    cli(cfg, "tasks", "add", "in flight", "--body", "HOLD")
    a.wait_for("session 3 task 3 started")
    _wait_file(_held(tmp_path / "ws", 3) / "entered")
    a.kill()
    b.wait_for("session lease taken", timeout=60)
    b.wait_for("session 3 task 3 ended outcome=interrupted")
    b.wait_for("session 4 task 3 started")
    (_held(tmp_path / "ws", 3) / "release").touch()
    b.wait_for(r"session 4 task 3 ended outcome=completed")
    with _store(cfg) as store:
        assert [s.outcome for s in store.list_sessions()][-2:] == ["interrupted", "completed"]


def test_systemd_hears_ready_at_once_then_watchdog_pings_during_a_session_and_stopping(
    config_file, daemons, tmp_path
) -> None:
    cfg = config_file(command_runner=True)
    cli(cfg, "tasks", "add", "long from the start", "--body", "HOLD")
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(1)
    d = daemons(cfg, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ({"READY=1", "WATCHDOG=1"} <= set(seen)):
        with contextlib.suppress(TimeoutError):
            seen += sock.recv(4096).decode().splitlines()
    # Ready and alive while the first session is still running (it waits for "release").
    assert "READY=1" in seen and "WATCHDOG=1" in seen
    d.wait_for("session 1 task 1 started")
    assert not any("ended" in line for line in d.lines)
    (_held(tmp_path / "ws", 1) / "release").touch()
    d.wait_for("session 1 task 1 ended outcome=completed")
    d.stop()
    rest = []
    sock.settimeout(0.5)
    with contextlib.suppress(TimeoutError):
        while True:
            rest += sock.recv(4096).decode().splitlines()
    assert "STOPPING=1" in rest
    sock.close()


def test_the_api_key_never_shows_in_the_process_list_or_the_log(config_file, daemons, fake) -> None:
    cfg = config_file()
    release, entered = threading.Event(), threading.Event()
    _blocking_fake(fake, release, entered)
    cli(cfg, "tasks", "add", "secretive")
    d = daemons(cfg)
    assert entered.wait(60)
    tree = [psutil.Process(d.pid), *psutil.Process(d.pid).children(recursive=True)]
    assert len(tree) >= 2  # the daemon and its session process
    for p in tree:
        assert KEY not in " ".join(p.cmdline())
        assert KEY not in " ".join(f"{k}={v}" for k, v in p.environ().items())
    release.set()
    d.wait_for("ended outcome=completed")
    d.stop()
    assert KEY not in "\n".join(d.lines)
    assert fake.requests[0]["key"] == KEY  # yet the session did use it


@pytest.mark.slow
def test_a_refused_key_pauses_sessions_until_the_question_is_answered(
    config_file, daemons, fake
) -> None:
    cfg = config_file()
    fake.set_keys(["rotated-elsewhere"])
    cli(cfg, "tasks", "add", "work")
    d = daemons(cfg)
    d.wait_for("session 1 task 1 ended outcome=auth_error")
    line = d.wait_for(r"needs-you task \d+ created: Replace the Anthropic API key")
    qid = re.search(r"needs-you task (\d+)", line).group(1)
    d.wait_for("sessions paused")
    assert "Replace the Anthropic API key" in cli(cfg, "tasks", "list", "--status", "needs_you")
    fake.set_keys([KEY])
    fake.set_default(DONE)
    cli(cfg, "tasks", "done", qid)  # the person answered: `tasks done` nudges the daemon
    d.wait_for("session 2 task 1 ended outcome=completed", timeout=60)
    os.kill(d.pid, signal.SIGTERM)
    assert d.proc.wait(timeout=60) == 0


@pytest.mark.slow
def test_two_daemons_on_a_dynamodb_store_share_one_lease(
    config_file, daemons, moto_url, aws_env, tmp_path
) -> None:
    cfg = config_file(
        command_runner=True,
        store={
            "backend": "dynamodb",
            "dynamodb": {"table_prefix": f"itest-{tmp_path.name[-20:]}", "endpoint_url": moto_url},
        },
    )
    a = daemons(cfg)
    a.wait_for("session lease taken", timeout=60)
    b = daemons(cfg)
    b.wait_for("standing by", timeout=60)
    tid = cli(cfg, "tasks", "add", "fleet task").strip()
    a.wait_for(rf"session 1 task {tid} ended outcome=completed", timeout=60)
    a.kill()
    b.wait_for("session lease taken", timeout=60)
    tid2 = cli(cfg, "tasks", "add", "after failover").strip()
    b.wait_for(rf"session 2 task {tid2} ended outcome=completed", timeout=60)
    with _store(cfg) as store:
        owners = [s.owner.split(":")[1] for s in store.list_sessions()]
    assert owners == [str(a.pid), str(b.pid)]
    assert b.stop() == 0


DRIVER = """
import signal, sys, threading, time
from agent import config
from agent.daemon.loop import Daemon

d = Daemon(config.load(sys.argv[1]), isolate=True)

def aim():
    # Wait for the idle wait (an hour: only a signal can end it), then signal the heartbeat
    # thread, not the main one: the kernel may pick any thread for a process-directed SIGTERM.
    while d._heartbeat is None or "waiting" not in (d._last_said or ""):
        time.sleep(0.02)
    time.sleep(0.3)
    print("aimed", flush=True)
    signal.pthread_kill(d._heartbeat.ident, signal.SIGTERM)

threading.Thread(target=aim, daemon=True).start()
sys.exit(d.run())
"""


def test_sigterm_taken_by_another_thread_still_ends_the_idle_wait_at_once(
    config_file, tmp_path
) -> None:
    cfg = config_file(command_runner=True)
    # Not beside the fixture's stand-in agent.py, which would shadow the package.
    (tmp_path / "drv").mkdir()
    driver = tmp_path / "drv" / "driver.py"
    driver.write_text(DRIVER)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(driver), str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "aimed" in proc.stdout, proc.stdout + proc.stderr
    assert "jada-agent daemon stopped" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 0
    # The wait was an hour long; stopping took about the start-up time, not the poll interval.
    assert time.monotonic() - t0 < 30


def test_a_task_at_the_turn_cap_cannot_take_every_session_of_the_day(
    config_file, daemons, fake
) -> None:
    # The audited failure: one task hit the 30-turn cap in all 5 sessions of the day while 6
    # others waited. Now each capped session hands the next turn to the other ready tasks.
    fake.route("ENDLESS", [], then=reply(tool_use("list_files", {})))
    fake.set_default(DONE)
    cfg = config_file(sessions_per_day=5, max_turns=3)
    with _store(cfg) as store:
        endless = store.add_task("endless refactor", body="ENDLESS")
        others = [store.add_task(f"small fix {i}") for i in range(6)]
    d = daemons(cfg)
    d.wait_for(r"budget spent: 5/5 sessions today", timeout=180)
    assert d.stop() == 0
    with _store(cfg) as store:
        ran = [s.task_id for s in store.list_sessions()]
        outcomes = [s.outcome for s in store.list_sessions()]
    assert ran == [endless.id, *(t.id for t in others[:4])]
    assert outcomes == ["max_turns", "completed", "completed", "completed", "completed"]
    shown = cli(cfg, "sessions")
    assert (
        f"hit the cap: task {endless.id} (endless refactor): 1 of 1 sessions;"
        f" yielded its turn to task {others[0].id}" in shown
    )
