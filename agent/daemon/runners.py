"""Session runners: one Claude session on one task, reported as an outcome (data, not logs).

``anthropic``: the project's own loop over ``client.messages.create``. One turn is one request;
the turn cap holds exactly: the tools of turn ``max_turns`` run, and no request follows. The SDK
retries 429/529/5xx itself (``max_retries``); a 401/403 ends the session as ``auth_error``.

``command``: an external agent command line (``daemon.command``, with ``{prompt_file}``,
``{max_turns}`` and ``{workspace}`` substituted), run in the workspace in its own process group.
It gets ``ANTHROPIC_API_KEY`` in its environment (never on its command line) and
``JADA_RESULT_FILE``: a path where it may write JSON ``{"outcome": "completed" | "needs_you" |
"max_turns", "turns": N, "input_tokens": N, "output_tokens": N, "progress": "...",
"question": {"title": "...", "body": "..."}}``. Its exit code maps to an outcome:

==========================  ==================================================
exit code                   outcome
==========================  ==================================================
0                           ``completed`` (or ``needs_you`` if the result says so)
1                           ``max_turns`` (CLI agents exit 1 at ``--max-turns``)
77 (EX_NOPERM)              ``auth_error``
killed at session_timeout   ``timeout`` (exit 124)
daemon stopping (SIGTERM)   ``interrupted`` (exit 143)
anything else               ``error``
==========================  ==================================================

Both runners record ``exit_code`` with the same convention: 0 completed/needs_you, 1 max_turns
(an expected end: the task stays open), 2 error, 75 error because the API was unavailable
(EX_TEMPFAIL: the daemon backs off), 77 auth_error, 124 timeout, 143 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.daemon.tools import TOOL_SPECS, ToolBox, Workspace
from agent.exitcodes import EXIT_NOPERM, EXIT_TEMPFAIL, SESSION_EXIT
from agent.store import Session, Store, Task


class SessionInterrupted(BaseException):
    """Raised into a blocking model call or command wait when the daemon is stopping."""


@dataclass
class SessionResult:
    outcome: str
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    exit_code: int | None = None
    detail: str = ""
    summary: str = ""
    question_id: int | None = None
    question: dict[str, str] | None = None
    # The API was unavailable (5xx/429 after the SDK's retries, no connection): not the task's
    # fault, so the daemon backs off instead of spending the day's sessions on it.
    transient: bool = False

    def __post_init__(self) -> None:
        if self.exit_code is None:
            self.exit_code = EXIT_TEMPFAIL if self.transient else SESSION_EXIT.get(self.outcome, 2)


@dataclass
class SessionContext:
    """What a runner needs for one session, and the hooks back into the daemon."""

    settings: Settings
    store: Store
    task: Task
    session: Session
    workspace: Workspace
    api_key: str
    stop: threading.Event = field(default_factory=threading.Event)
    # Called after each turn with (turns, input_tokens, output_tokens).
    progress: Callable[[int, int, int], None] = lambda t, i, o: None
    # Context manager marking a blocking call that SIGTERM may interrupt.
    interruptible: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
    monotonic: Callable[[], float] = time.monotonic


def prompt_for(task: Task, max_turns: int, runner: str) -> str:
    notes = "\n".join(f"- {n['at']}: {n['text']}" for n in task.notes) or "(none yet)"
    how = (
        "Use the tools. Record progress with update_progress as you go (the next session starts"
        " from those notes). Call complete_task when the task is done, or create_needs_you_task"
        " when only a person can decide or act."
        if runner == "anthropic"
        else "Work in the current directory. Write your result to $JADA_RESULT_FILE as JSON."
    )
    return (
        f"You are working on task {task.id} of the jada-agent progress dashboard.\n\n"
        f"# {task.title}\n\n{task.body or '(no description)'}\n\n"
        f"## Progress notes from earlier sessions\n{notes}\n\n"
        f"## Rules\nYou have at most {max_turns} turns in this session. {how}\n"
    )


SYSTEM = (
    "You are an autonomous engineer run by the jada-agent orchestrator. Work only inside the"
    " task's workspace with the tools given. Be economical with turns."
)


class AnthropicRunner:
    name = "anthropic"

    def run(self, ctx: SessionContext) -> SessionResult:
        import anthropic

        d = ctx.settings.daemon
        client = anthropic.Anthropic(
            api_key=ctx.api_key,
            base_url=d.anthropic_base_url,
            max_retries=3,
            timeout=min(600.0, d.session_timeout),
        )
        box = ToolBox(
            ctx.store,
            ctx.task,
            ctx.workspace,
            d.allowed_commands,
            d.command_timeout,
            ctx.session.id,
            network_commands=d.network_commands,
            memory_max=d.command_memory_mb << 20,
            output_max=d.command_output_max,
        )
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": prompt_for(ctx.task, d.max_turns, self.name)}
        ]
        turns = tokens_in = tokens_out = 0
        deadline = ctx.monotonic() + d.session_timeout

        def result(outcome: str, detail: str, **kw: Any) -> SessionResult:
            return SessionResult(outcome, turns, tokens_in, tokens_out, detail=detail, **kw)

        try:
            while turns < d.max_turns:
                if ctx.stop.is_set():
                    return result("interrupted", "daemon stopping: task stays open")
                if ctx.monotonic() >= deadline:
                    return result("timeout", f"session_timeout {d.session_timeout:g}s reached")
                turns += 1
                with ctx.interruptible():
                    reply = client.messages.create(
                        model=d.model,
                        max_tokens=d.max_tokens,
                        system=SYSTEM,
                        tools=TOOL_SPECS,
                        messages=messages,  # type: ignore[arg-type]  # plain dicts in MessageParam's shape
                    )
                tokens_in += reply.usage.input_tokens or 0
                tokens_out += reply.usage.output_tokens or 0
                ctx.progress(turns, tokens_in, tokens_out)
                content = [_block(b) for b in reply.content] or [{"type": "text", "text": "…"}]
                messages.append({"role": "assistant", "content": content})
                uses = [b for b in reply.content if b.type == "tool_use"]
                if not uses:
                    messages.append(
                        {
                            "role": "user",
                            "content": "Continue with the tools. Call complete_task when the task"
                            " is done, or create_needs_you_task if only a person can go on.",
                        }
                    )
                    continue
                results = []
                for use in uses:
                    text, is_error = box.call(use.name, dict(use.input or {}))
                    block: dict[str, Any] = {
                        "type": "tool_result",
                        "tool_use_id": use.id,
                        "content": text,
                    }
                    if is_error:
                        block["is_error"] = True
                    results.append(block)
                if box.finish is not None:
                    return result(
                        box.finish.outcome,
                        box.finish.text,
                        summary=box.finish.text,
                        question_id=box.finish.question_id,
                    )
                messages.append({"role": "user", "content": results})
            return result("max_turns", "turn cap reached: expected, task stays open")
        except SessionInterrupted:
            return result("interrupted", "daemon stopping: task stays open")
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
            return result("auth_error", f"the API key was refused (HTTP {exc.status_code})")
        except anthropic.APIStatusError as exc:
            return result(
                "error",
                f"Anthropic API answered HTTP {exc.status_code}: {_api_message(exc)}",
                transient=exc.status_code >= 500 or exc.status_code in (408, 409, 429),
            )
        except anthropic.APIConnectionError as exc:
            return result(
                "error", f"cannot reach the Anthropic API: {type(exc).__name__}", transient=True
            )


def _block(b: Any) -> dict[str, Any]:
    # Send back only the fields the API accepts (the SDK's models carry extra None fields).
    if b.type == "text":
        return {"type": "text", "text": b.text}
    if b.type == "tool_use":
        return {"type": "tool_use", "id": b.id, "name": b.name, "input": b.input}
    return b.model_dump(exclude_none=True)


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"][:200]
    return type(exc).__name__


class CommandRunner:
    name = "command"

    def run(self, ctx: SessionContext) -> SessionResult:
        private = Path(tempfile.mkdtemp(prefix=f"session-{ctx.session.id}-"))
        try:
            return self._run(ctx, private)
        finally:
            for p in private.iterdir():
                p.unlink()
            private.rmdir()

    def _run(self, ctx: SessionContext, private: Path) -> SessionResult:
        d = ctx.settings.daemon
        prompt_file = private / "prompt.md"
        result_file = private / "result.json"
        fd = os.open(prompt_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(prompt_for(ctx.task, d.max_turns, self.name))
        fields = {
            "prompt_file": str(prompt_file),
            "max_turns": str(d.max_turns),
            "workspace": str(ctx.workspace.real),
        }
        argv = [arg.format(**fields) for arg in d.command]
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "TERM")}
        env.update(
            HOME=str(ctx.workspace.real),
            JADA_RESULT_FILE=str(result_file),
            JADA_TASK_ID=str(ctx.task.id),
            JADA_SESSION_ID=str(ctx.session.id),
        )
        if ctx.api_key:
            env["ANTHROPIC_API_KEY"] = ctx.api_key
        try:
            proc = subprocess.Popen(
                argv,
                cwd=ctx.workspace.real,
                env=env,
                stdin=subprocess.DEVNULL,
                # Its output goes to the journal, never into a pipe nobody drains.
                stdout=sys.stderr.fileno(),
                start_new_session=True,
            )
        except OSError as exc:
            return SessionResult("error", detail=f"cannot start {argv[0]}: {exc.strerror}")
        try:
            with ctx.interruptible():
                try:
                    code = proc.wait(timeout=d.session_timeout)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    return self._with_report(
                        SessionResult("timeout", detail=f"killed after {d.session_timeout:g}s"),
                        result_file,
                    )
        except SessionInterrupted:
            _kill_group(proc)
            return self._with_report(
                SessionResult("interrupted", detail="daemon stopping: task stays open"),
                result_file,
            )
        if code == 0:
            res = SessionResult("completed", exit_code=0, detail="agent command exited 0")
        elif code == 1:
            res = SessionResult(
                "max_turns", exit_code=1, detail="turn cap reached: expected, task stays open"
            )
        elif code == EXIT_NOPERM:
            res = SessionResult(
                "auth_error", exit_code=EXIT_NOPERM, detail="agent command: key refused"
            )
        else:
            res = SessionResult("error", exit_code=code, detail=f"agent command exited {code}")
        return self._with_report(res, result_file)

    @staticmethod
    def _with_report(res: SessionResult, result_file: Path) -> SessionResult:
        try:
            data = json.loads(result_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return res
        if not isinstance(data, dict):
            return res
        for key in ("turns", "input_tokens", "output_tokens"):
            value = data.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                setattr(res, key, value)
        claimed = data.get("outcome")
        if res.outcome in ("completed", "max_turns") and claimed in (
            "completed",
            "needs_you",
            "max_turns",
        ):
            res.outcome = claimed
        if isinstance(data.get("progress"), str) and data["progress"].strip():
            res.summary = data["progress"].strip()
        q = data.get("question")
        if res.outcome == "needs_you":
            if isinstance(q, dict) and isinstance(q.get("title"), str) and q["title"].strip():
                res.question = {"title": q["title"].strip(), "body": str(q.get("body") or "")}
            else:
                res.question = {"title": "The agent needs a person", "body": res.summary}
        return res


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def runner_for(settings: Settings) -> AnthropicRunner | CommandRunner:
    return CommandRunner() if settings.daemon.runner == "command" else AnthropicRunner()
