"""The rules for changing tasks by hand or by a machine: add, raise a needs-you task, close, reopen.

The CLI (``jada-agent tasks add|done|reopen``, which the playbooks run) and the daemon apply the
same rules through these functions; the CLI only parses and prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from agent.config import Settings
from agent.dashboard.wake import nudge, socket_path
from agent.store import Store, StoreError, Task

# A task that ended (failed, or done and wanted again) is what a person may put back in the queue.
REOPENABLE = ("failed", "done")


class Refused(StoreError):
    """The dashboard's rules refuse the change; the message says why and what would do."""


def raise_needs_you(
    store: Store,
    title: str,
    body: str = "",
    *,
    priority: int = 0,
    depends_on: Sequence[int] = (),
    workspace: str | None = None,
    now: datetime | None = None,
) -> tuple[Task, bool]:
    """Ask a person, once: returns (the needs-you task, whether it is new).

    An open needs-you task of the same title is reused (a remediation or a daemon that runs
    into the same problem again must not flood the person): it gets a note ``raised again``,
    with the new body when that differs, and keeps its id. Once answered (done), the next
    occurrence is a new task.
    """
    for open_task in store.list_tasks(["needs_you"]):
        if open_task.kind == "needs_you" and open_task.title == title:
            note = "raised again" + (f": {body}" if body and body != open_task.body else "")
            store.add_note(open_task.id, note, now=now)
            return _get(store, open_task.id), False
    task = store.add_task(
        title,
        body=body,
        priority=priority,
        depends_on=depends_on,
        workspace=workspace,
        kind="needs_you",
        status="needs_you",
        now=now,
    )
    return task, True


def add_task(
    store: Store,
    settings: Settings,
    title: str,
    *,
    body: str = "",
    priority: int = 0,
    depends_on: Sequence[int] = (),
    workspace: str | None = None,
    needs_you: bool = False,
) -> tuple[Task, bool]:
    """Add a task and nudge a local daemon; returns (task, whether a daemon was nudged).

    A needs-you task follows :func:`raise_needs_you`: an open one of the same title is reused
    (noted, same id, nobody nudged).
    """
    if needs_you:
        task, new = raise_needs_you(
            store, title, body, priority=priority, depends_on=depends_on, workspace=workspace
        )
        if not new:
            return task, False
    else:
        task = store.add_task(
            title, body=body, priority=priority, depends_on=depends_on, workspace=workspace
        )
    return task, nudge(socket_path(settings))


def mark_done(store: Store, settings: Settings, task_id: int, note: str | None = None) -> Task:
    """Close a task (or answer a needs-you question); tasks waiting for it may resume."""
    task = store.set_task_status(task_id, "done", note=note or "marked done by hand")
    nudge(socket_path(settings))
    return task


def reopen(store: Store, settings: Settings, task_id: int, note: str | None = None) -> Task:
    """Put a failed (or done) task back in the queue.

    Anything else is refused: an open task is already queued, and a needs-you task belongs to a
    person (reopened, a session would take it).
    """
    task = _get(store, task_id)
    if task.kind == "needs_you" or task.status not in REOPENABLE:
        what = "a needs-you task" if task.kind == "needs_you" else task.status
        raise Refused(f"task {task_id} is {what}: only a failed or done task reopens")
    task = store.set_task_status(task_id, "ready", note=note or "reopened by hand")
    nudge(socket_path(settings))
    return task


def _get(store: Store, task_id: int) -> Task:
    task = store.get_task(task_id)
    if task is None:
        raise Refused(f"no task {task_id}")
    return task
