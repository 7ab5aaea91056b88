"""run_command as an attacker uses it: every known escape of an allowed command, shown harmless.

Each attack tries to read a secret outside the workspace (a stand-in for the API key file), to
write a file outside it, or to reach the network; the kernel (Landlock + seccomp) must stop it
whatever the arguments or the workspace's content. All of these succeed on argument filtering
alone.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from agent.daemon.confine import landlock_abi
from agent.daemon.tools import ToolError, Workspace

pytestmark = pytest.mark.skipif(landlock_abi() < 1, reason="the kernel has no Landlock")

ALLOWED = ["git", "cat", "grep", "ls"]
SECRET = "sk-ant-api03-confidential"


@pytest.fixture
def world(tmp_path):
    """A workspace, a secret beside it, an 'other task' workspace, and a place to write to."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "anthropic-api-key").write_text(SECRET)
    other = tmp_path / "ws-other"
    other.mkdir()
    (other / "notes.txt").write_text("other task's private notes")
    outside = tmp_path / "outside"
    outside.mkdir()
    ws = Workspace(tmp_path / "ws")
    subprocess.run(["git", "init", "-q", str(ws.real)], check=True)
    return ws, secrets / "anthropic-api-key", other, outside


def _run(ws: Workspace, argv: list[str], **kw) -> str:
    try:
        return ws.run_command(argv, ALLOWED, kw.pop("timeout", 10), **kw)
    except ToolError as exc:
        return str(exc)


def _shell(key: Path, outside: Path) -> str:
    return f"sh -c 'cat {key}; cat {key} > stolen; echo pwned > {outside}/w; id > {outside}/id'"


def _harmless(ws: Workspace, out: str, outside: Path) -> None:
    assert SECRET not in out
    assert not list(outside.iterdir()), "a file was written outside the workspace"
    stolen = ws.real / "stolen"
    assert not stolen.exists() or SECRET not in stolen.read_text()


def test_git_alias_shell_cannot_read_or_write_outside(world) -> None:
    ws, key, _, outside = world
    out = _run(ws, ["git", "-c", f"alias.x=!{_shell(key, outside)}", "x"])
    _harmless(ws, out, outside)


def test_a_gitconfig_written_into_the_workspace_is_not_read(world) -> None:
    ws, key, _, outside = world
    ws.write_file(".gitconfig", f'[alias]\n\tst = "!{_shell(key, outside)}"\n')
    out = _run(ws, ["git", "st"])
    _harmless(ws, out, outside)


def test_repository_config_pager_fsmonitor_and_hooks_stay_confined(world) -> None:
    ws, key, _, outside = world
    cfg = ws.real / ".git" / "config"
    cmd = _shell(key, outside).replace("'", '\\"')
    cfg.write_text(
        cfg.read_text()
        + f'[core]\n\tpager = "{cmd}"\n\tfsmonitor = "{cmd}"\n'
        + f'[alias]\n\tlg = "!{cmd}"\n'
    )
    hook = ws.real / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ncat {key} > stolen\necho pwned > {outside}/w\n")
    hook.chmod(0o755)
    ws.write_file("f.txt", "x")
    outs = [
        _run(ws, ["git", "-p", "log"]),
        _run(ws, ["git", "status"]),
        _run(ws, ["git", "lg"]),
        _run(ws, ["git", "add", "f.txt"]),
        _run(ws, ["git", "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "m"]),
        _run(ws, ["git", "-c", "core.hooksPath=.git/hooks", "commit", "--allow-empty", "-m", "m"]),
    ]
    for out in outs:
        _harmless(ws, out, outside)


def test_ssh_command_upload_pack_and_config_env_stay_confined(world) -> None:
    ws, key, _, outside = world
    shell = _shell(key, outside)
    outs = [
        _run(ws, ["git", "-c", f"core.sshCommand={shell}", "ls-remote", "ssh://h/r"]),
        _run(ws, ["git", "ls-remote", f"--upload-pack={shell}", "."]),
        _run(ws, ["git", "clone", "-q", f"--upload-pack={shell}", ".", "c"]),
        _run(ws, ["git", "--config-env=alias.k=ANTHROPIC_API_KEY", "k"]),
        _run(ws, ["git", "-c", f"alias.y=!{shell}", "--config-env=core.pager=PATH", "y"]),
    ]
    for out in outs:
        _harmless(ws, out, outside)


def test_git_variables_of_the_daemon_never_reach_git(world, monkeypatch) -> None:
    ws, key, _, outside = world
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'alias.st=!{_shell(key, outside)}'")
    monkeypatch.setenv("GIT_DIR", str(outside))
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    out = _run(ws, ["git", "st"])
    _harmless(ws, out, outside)
    out = _run(ws, ["git", "-c", "alias.e=!env", "e"])
    assert "GIT_CONFIG_NOSYSTEM=1" in out and "GIT_CONFIG_GLOBAL=/dev/null" in out
    assert "GIT_DIR" not in out and SECRET not in out and "HOME=/nonexistent" in out


PATCH = """\
diff --git a/k b/k
new file mode 120000
--- /dev/null
+++ b/k
@@ -0,0 +1 @@
+{target}
\\ No newline at end of file
"""


def test_a_symlink_out_of_the_workspace_is_unreadable_by_every_tool(world) -> None:
    ws, key, other, _ = world
    ws.write_file("p.diff", PATCH.format(target=key))
    assert _run(ws, ["git", "apply", "p.diff"]).startswith("exit 0")
    assert os.readlink(ws.real / "k") == str(key)
    os.symlink(other, ws.real / "other")
    for argv in (
        ["cat", "k"],
        ["grep", "-R", "sk-ant", "."],
        ["grep", "-r", "private", "other/"],
        ["ls", "other/"],
        ["git", "-c", "alias.c=!cat k other/notes.txt", "c"],
    ):
        out = _run(ws, argv)
        assert SECRET not in out and "private notes" not in out, argv
        assert "Permission denied" in out, argv
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.read_file("k")


def test_proc_of_the_session_and_other_processes_is_invisible(world) -> None:
    ws, *_ = world
    out = _run(ws, ["git", "-c", f"alias.p=!cat /proc/{os.getpid()}/environ /proc/1/cmdline", "p"])
    assert "Permission denied" in out and "PATH=" not in out
    out = _run(ws, ["git", "-c", "alias.p=!ls /proc", "p"])
    assert "Permission denied" in out


def test_the_rest_of_the_host_state_and_settings_are_invisible(world, tmp_path) -> None:
    ws, _, other, _ = world
    out = _run(ws, ["git", "-c", f"alias.l=!ls {tmp_path}; ls {other}", "l"])
    assert "secrets" not in out and "notes.txt" not in out
    assert out.count("Permission denied") == 2


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.2)
    hits: list[int] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            hits.append(1)
            conn.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1], hits
    stop.set()
    t.join(2)
    srv.close()


def test_no_network_unless_the_command_is_allowed_it(world, listener) -> None:
    ws, *_ = world
    port, hits = listener
    url = f"http://127.0.0.1:{port}/r.git"
    out = _run(ws, ["git", "ls-remote", url])
    assert not hits and "exit 0" not in out
    out = _run(ws, ["git", "-c", "alias.u=!python3 -c 'import socket; socket.socket(2, 2)'", "u"])
    assert "PermissionError" in out
    _run(ws, ["git", "ls-remote", url], network_commands=["git"])
    assert hits, "with network allowed, git reached the listener"


def test_the_timeout_kills_the_whole_process_group(world) -> None:
    ws, *_ = world
    marker = f"jada-bg-{os.getpid()}"
    sleeper = f"python3 -c 'import time; time.sleep(300)' {marker}"
    alias = f'alias.b=!sh -c "{sleeper} &" ; {sleeper}'
    with pytest.raises(ToolError, match=r"timed out after 0\.5s"):
        ws.run_command(["git", "-c", alias, "b"], ALLOWED, 0.5)
    time.sleep(0.2)
    left = [
        p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])
    ]
    assert not left


def test_a_command_is_held_to_its_memory_cap(world) -> None:
    ws, *_ = world
    alias = "alias.m=!python3 -c 'b = bytearray(400 << 20); print(len(b))'"
    out = _run(ws, ["git", "-c", alias, "m"], memory_max=200 << 20)
    assert "MemoryError" in out and "419430400" not in out


def test_output_past_the_cap_is_cut_off_and_the_command_killed(world) -> None:
    ws, *_ = world
    big = ws.real / "big"
    with big.open("wb") as f:
        f.truncate(300 << 20)
    start = time.monotonic()
    with pytest.raises(ToolError, match="output passed 20000 bytes: cut off and killed") as exc:
        ws.run_command(["cat", "big"], ALLOWED, 60)
    assert len(str(exc.value)) < 21_000
    assert time.monotonic() - start < 30
