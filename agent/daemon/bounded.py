"""Running one confined command with bounded time and output (the ``run_command`` tool).

The command runs in its own process group, killed at the timeout or when its output passes the
cap; its output is streamed into a buffer that never grows past the cap. In the session
process (a child subreaper) what a command left running in the background is killed too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import subprocess
import time
from pathlib import Path

from agent.daemon import confine


class ToolError(Exception):
    """A refused or failed tool call; the model sees the message as an error result."""


def run_bounded(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    conf: confine.Confinement,
    output_max: int,
    name: str,
) -> str:
    """Run ``argv`` confined, in its own process group; keep at most ``output_max`` bytes.

    Output is read as it comes, in 64 KiB chunks, into a buffer that never grows past the cap:
    a command printing 300 MB costs the session no more than the cap. Past the cap, or at the
    timeout, the whole process group is killed; whatever the command left in the background is
    killed when it exits.
    """
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            # preexec_fn is safe here: the session process runs no other thread.
            preexec_fn=conf.apply,
        )
    except subprocess.SubprocessError as exc:
        raise ToolError(f"{name}: refused: the command could not be confined ({exc})") from None
    except OSError as exc:
        raise ToolError(f"{name}: cannot run: {exc.strerror}") from None
    # Both are pipes (PIPE above); typeshed types them Optional for the other cases.
    pipes = [p for p in (proc.stdout, proc.stderr) if p is not None]
    bufs = {p.fileno(): bytearray() for p in pipes}
    total = 0
    ended = ""
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    try:
        for pipe in pipes:
            sel.register(pipe, selectors.EVENT_READ)
        exited = False
        while sel.get_map() and not ended:
            left = deadline - time.monotonic()
            if left <= 0:
                ended = f"timed out after {timeout:g}s and was killed"
                break
            ready = sel.select(0 if exited else min(left, 0.25))
            if not ready and exited:
                # The command is gone and its output drained; what still holds the pipes open
                # is something it left in the background, killed below with its group.
                break
            if not exited and proc.poll() is not None:
                exited = True
            for key, _ in ready:
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = bufs[key.fd]
                buf += chunk[: max(0, output_max - total)]
                total += len(chunk)
                if total > output_max:
                    ended = f"output passed {output_max} bytes: cut off and killed"
                    break
        if not ended:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                ended = f"timed out after {timeout:g}s and was killed"
    finally:
        sel.close()
        _kill_group(proc.pid)
        proc.wait()
        if reap_orphans:
            _kill_orphans()
        for pipe in pipes:
            pipe.close()
    out, err = (buf.decode("utf-8", "replace") for buf in bufs.values())  # stdout, stderr
    text = f"--- stdout\n{out}--- stderr\n{err}"
    if ended:
        # An error result for the model, with what the command printed before it was killed.
        raise ToolError(f"{name}: {ended}\n{text}")
    return f"exit {proc.returncode}\n{text}"


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# Set by the session process (agent.daemon.session), which is a child subreaper and has no
# children but its commands: a command that left its process group (setsid) and outlived it is
# re-parented to the session, and killed here. Off elsewhere (a test process has other children).
reap_orphans = False


def become_subreaper() -> None:
    """Adopt the orphans of this process's commands (Linux PR_SET_CHILD_SUBREAPER)."""
    global reap_orphans
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(36, 1, 0, 0, 0) == 0:  # PR_SET_CHILD_SUBREAPER
            reap_orphans = True


def _kill_orphans() -> None:
    for _ in range(10):  # a dying orphan's own children are adopted next: a few rounds
        pids: set[int] = set()
        with contextlib.suppress(OSError):
            for tid in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{tid}/children") as f:
                    pids.update(int(p) for p in f.read().split())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
