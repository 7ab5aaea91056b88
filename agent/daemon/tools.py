"""The tools a Claude session may call, confined to its task's workspace.

File tools accept paths relative to the workspace (or absolute paths inside it). A path with a
``..`` component is refused outright; every other path is resolved (following symlinks) and must
land inside the resolved workspace, so a symlink pointing out of it is refused too. Writes open
the final component with ``O_NOFOLLOW``. ``run_command`` runs an allow-listed program by name,
without a shell, in the workspace, with a minimal environment (never the API key), confined by
the kernel (:mod:`agent.daemon.confine`: only the workspace writable, the system read-only, the
secrets, the store, other workspaces and /proc unreachable, no network unless allowed), in its own
process group killed at the timeout, its output streamed into a bounded buffer. Argument checks
(no absolute path out of the workspace) remain as a clear early refusal, not as the boundary.

The dashboard tools (``update_progress``, ``create_needs_you_task``, ``complete_task``) write to
the store through :class:`ToolBox`; the two last ones end the session.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from agent.daemon import confine
from agent.daemon.bounded import ToolError, run_bounded
from agent.store import Store, Task

if TYPE_CHECKING:  # anthropic is imported only by the session that talks to it
    from anthropic.types import ToolParam

MAX_READ = 100_000
MAX_OUTPUT = 20_000
MAX_LIST = 1000
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# git ignores the system and global configuration, never prompts, never pages.
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "GIT_OPTIONAL_LOCKS": "0",
}
GIT_SAFE_OPTIONS = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.pager=cat",
    "-c",
    "core.sshCommand=false",
    "-c",
    "credential.helper=",
    "-c",
    "protocol.ext.allow=never",
)

TOOL_SPECS: list[ToolParam] = [
    {
        "name": "read_file",
        "description": "Read a UTF-8 text file of the task's workspace (path relative to it).",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
    },
    {
        "name": "write_file",
        "description": "Create or replace a text file in the workspace (parents are created).",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
    {
        "name": "list_files",
        "description": "List a directory of the workspace; directories end with '/'.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string", "default": "."}},
        },
    },
    {
        "name": "run_command",
        "description": "Run an allowed program (no shell) in the workspace; argv[0] is its name.",
        "input_schema": {
            "type": "object",
            "properties": {"argv": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
            "required": ["argv"],
        },
    },
    {
        "name": "update_progress",
        "description": "Record progress on the dashboard; the next session starts from these notes.",
        "input_schema": {
            "type": "object",
            "properties": {"note": {"type": "string"}},
            "required": ["note"],
        },
    },
    {
        "name": "create_needs_you_task",
        "description": (
            "Ask a person something you cannot decide or do yourself. The task waits until they"
            " answer; this ends the session."
        ),
        "input_schema": {
            "type": "object",
            "properties": {"title": {"type": "string"}, "body": {"type": "string"}},
            "required": ["title", "body"],
        },
    },
    {
        "name": "complete_task",
        "description": "The task is done: say what was done. This ends the session.",
        "input_schema": {
            "type": "object",
            "properties": {"summary": {"type": "string"}},
            "required": ["summary"],
        },
    },
]


class Workspace:
    """A directory that a session's file and command tools cannot leave."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.real = self.root.resolve(strict=True)

    def resolve(self, path: Any) -> Path:
        if not isinstance(path, str) or not path or "\0" in path:
            raise ToolError("path: expected a non-empty string")
        pure = PurePosixPath(path)
        if ".." in pure.parts:
            raise ToolError(f"{path}: '..' is not allowed; paths stay inside the workspace")
        candidate = Path(pure) if pure.is_absolute() else self.real / pure
        real = candidate.resolve()
        if real != self.real and self.real not in real.parents:
            raise ToolError(f"{path}: outside the workspace (resolves to {real})")
        return real

    def shown(self, real: Path) -> str:
        rel = real.relative_to(self.real)
        return str(rel) if str(rel) != "." else "."

    # ---- file tools
    def read_file(self, path: Any) -> str:
        real = self.resolve(path)
        if not real.is_file():
            raise ToolError(f"{path}: not a file")
        with real.open("rb") as f:
            data = f.read(MAX_READ + 1)
        out = data[:MAX_READ].decode("utf-8", errors="replace")
        if len(data) > MAX_READ:
            out += f"\n[truncated at {MAX_READ} bytes]"
        return out

    def write_file(self, path: Any, content: Any) -> str:
        if not isinstance(content, str):
            raise ToolError("content: expected a string")
        real = self.resolve(path)
        if real == self.real:
            raise ToolError(f"{path}: is the workspace itself")
        real.parent.mkdir(parents=True, exist_ok=True)
        # Resolve again after creating parents, and never follow a symlink at the last step.
        self.resolve(str(real))
        try:
            fd = os.open(real, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
        except OSError as exc:
            raise ToolError(f"{path}: cannot write: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        return f"wrote {len(content.encode())} bytes to {self.shown(real)}"

    def list_files(self, path: Any = ".") -> str:
        real = self.resolve(path or ".")
        if not real.is_dir():
            raise ToolError(f"{path}: not a directory")
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in real.iterdir())
        more = len(names) - MAX_LIST
        lines = names[:MAX_LIST] + ([f"[{more} more]"] if more > 0 else [])
        return "\n".join(lines) if lines else "(empty)"

    # ---- commands
    def run_command(
        self,
        argv: Any,
        allowed: list[str],
        timeout: float,
        *,
        network_commands: list[str] | tuple[str, ...] = (),
        memory_max: int = 512 << 20,
        output_max: int = MAX_OUTPUT,
    ) -> str:
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ToolError("argv: expected a non-empty list of strings")
        if any("\0" in a for a in argv):
            raise ToolError("argv: NUL bytes are not allowed")
        name = argv[0]
        if name not in allowed:
            raise ToolError(f"{name}: not an allowed command (allowed: {', '.join(allowed)})")
        for arg in argv[1:]:
            self._check_arg(arg)
        env = {
            "PATH": SAFE_PATH,
            # Not the workspace: a .gitconfig, .bashrc or .netrc written there is never read.
            "HOME": "/nonexistent",
            "LANG": "C.UTF-8",
            "PAGER": "cat",
        }
        exe = shutil.which(name, path=env["PATH"])
        if exe is None:
            raise ToolError(f"{name}: not installed on this host")
        args = argv[1:]
        if name == "git":
            env.update(GIT_ENV)
            env["GIT_CEILING_DIRECTORIES"] = str(self.real.parent)
            # First on the command line, over the repository's own .git/config (workspace
            # content is untrusted). The model's own -c may override them: the OS confinement
            # below is the boundary, these only keep git quiet and hook-free.
            args = [*GIT_SAFE_OPTIONS, *args]
        network = name in network_commands
        try:
            conf = confine.prepare(str(self.real), network=network, memory_max=memory_max)
        except confine.ConfinementError as exc:
            raise ToolError(f"{name}: refused: {exc}") from None
        try:
            return run_bounded([exe, *args], self.real, env, timeout, conf, output_max, name)
        finally:
            conf.close()

    def _check_arg(self, arg: str) -> None:
        # An allowed program must not be pointed outside the workspace either (cat /etc/shadow,
        # git -C .., --file=/etc/x): hold path-like arguments to the same rule as file tools.
        candidates = [arg]
        if "=" in arg:
            candidates.append(arg.split("=", 1)[1])
        for c in candidates:
            if c.startswith("/") or ".." in PurePosixPath(c).parts:
                self.resolve(c)


@dataclass
class Finish:
    outcome: str  # completed | needs_you
    text: str
    question_id: int | None = None


class ToolBox:
    """Executes one session's tool calls against its workspace and the dashboard."""

    def __init__(
        self,
        store: Store,
        task: Task,
        workspace: Workspace,
        allowed_commands: list[str],
        command_timeout: float,
        session_id: int,
        *,
        network_commands: list[str] | tuple[str, ...] = (),
        memory_max: int = 512 << 20,
        output_max: int = MAX_OUTPUT,
    ):
        self.store = store
        self.task = task
        self.workspace = workspace
        self.allowed = list(allowed_commands)
        self.timeout = command_timeout
        self.session_id = session_id
        self.network_commands = tuple(network_commands)
        self.memory_max = memory_max
        self.output_max = output_max
        self.finish: Finish | None = None
        self.calls = 0

    def call(self, name: str, args: dict[str, Any]) -> tuple[str, bool]:
        """Run one tool; returns (text for the model, is_error)."""
        self.calls += 1
        try:
            return self._call(name, args or {}), False
        except ToolError as exc:
            return str(exc), True

    def _call(self, name: str, args: dict[str, Any]) -> str:
        ws = self.workspace
        if name == "read_file":
            return ws.read_file(args.get("path"))
        if name == "write_file":
            return ws.write_file(args.get("path"), args.get("content"))
        if name == "list_files":
            return ws.list_files(args.get("path", "."))
        if name == "run_command":
            return ws.run_command(
                args.get("argv"),
                self.allowed,
                self.timeout,
                network_commands=self.network_commands,
                memory_max=self.memory_max,
                output_max=self.output_max,
            )
        if name == "update_progress":
            note = _text(args, "note")
            self.store.add_note(self.task.id, f"session {self.session_id}: {note}")
            return "progress recorded"
        if name == "create_needs_you_task":
            title, body = _text(args, "title"), _text(args, "body")
            question = self.store.add_task(
                title,
                body=f"{body}\n\n(asked by session {self.session_id} for task {self.task.id};"
                f" answer with a note, then: jada-agent tasks done <id>)",
                priority=self.task.priority,
                kind="needs_you",
                status="needs_you",
            )
            self.store.add_dependency(self.task.id, question.id)
            self.finish = Finish(
                "needs_you", f"waiting for task {question.id}: {title}", question.id
            )
            return f"created needs-you task {question.id}; this session ends here"
        if name == "complete_task":
            summary = _text(args, "summary")
            self.finish = Finish("completed", summary)
            return "task marked complete; this session ends here"
        raise ToolError(f"{name}: no such tool")


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ToolError(f"{key}: expected a non-empty string")
    return value.strip()
