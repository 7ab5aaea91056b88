"""Root's credential work in the service user's directory, done as the service user.

The secrets directory belongs to the service user, who can plant a symlink or a FIFO there at
any time. Root (``credentials install`` run by the remediator's playbooks) must never read or
write through such a path: a symlink to a root-only file would be read and copied into a backup
the service user owns. Rather than guarding every path component, :func:`as_service_user` runs the
whole file operation in a forked child that has dropped to the service user's uid, gid and no
supplementary groups first: it can read and write only what that user could anyway, so a planted
symlink gains the user nothing. The result (or the error) comes back over a pipe.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ChildFailed(Exception):
    """The unprivileged child died or raised something other than an OSError."""


def service_uid(service_user: str) -> tuple[int, int] | None:
    """(uid, gid) to drop to, or None when no drop applies (not root, no such user, or root)."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(service_user)
    except KeyError:
        return None
    if pw.pw_uid == 0:
        return None
    return pw.pw_uid, pw.pw_gid


def as_service_user(service_user: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """``fn(*args, **kw)`` as ``service_user`` when this process is root; directly otherwise.

    ``fn`` returns a JSON value (it crosses a pipe). An OSError in the child is raised again here with its errno, message and file name.
    """
    ids = service_uid(service_user)
    if ids is None:
        return fn(*args, **kw)
    uid, gid = ids
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            try:
                reply: tuple[Any, ...] = ("ok", fn(*args, **kw))
            except OSError as exc:
                reply = ("oserror", exc.errno, exc.strerror or str(exc), exc.filename)
            except BaseException as exc:  # reported to the parent, which raises it
                reply = ("error", f"{type(exc).__name__}: {exc}")
            data = json.dumps(reply).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(w, view) :]
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as f:
        while chunk := f.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not chunks or os.waitstatus_to_exitcode(status) != 0:
        raise ChildFailed(f"the unprivileged child ended with status {status}")
    # JSON, not pickle: the bytes come from a process running as the less-privileged user.
    reply = json.loads(b"".join(chunks))
    if reply[0] == "ok":
        return reply[1]
    if reply[0] == "oserror":
        raise OSError(reply[1], reply[2], reply[3])
    raise ChildFailed(reply[1])
