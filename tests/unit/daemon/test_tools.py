"""Workspace confinement of the session tools: escapes by '..', absolute paths and symlinks."""

from __future__ import annotations

import os

import pytest

from agent.daemon.tools import ToolBox, ToolError, Workspace
from agent.store.sqlite import SQLiteStore


@pytest.fixture
def ws(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("s3cret")
    w = Workspace(tmp_path / "ws")
    (w.real / "inside.txt").write_text("hello")
    return w


def test_relative_and_absolute_paths_inside_the_workspace_work(ws) -> None:
    assert ws.read_file("inside.txt") == "hello"
    assert ws.read_file(str(ws.real / "inside.txt")) == "hello"
    ws.write_file("sub/dir/new.txt", "x")
    assert (ws.real / "sub" / "dir" / "new.txt").read_text() == "x"
    assert ws.list_files(".") == "inside.txt\nsub/"


@pytest.mark.parametrize("path", ["../outside/secret.txt", "sub/../../outside/secret.txt", ".."])
def test_dot_dot_is_refused(ws, path) -> None:
    with pytest.raises(ToolError, match=r"'\.\.' is not allowed"):
        ws.read_file(path)


def test_an_absolute_path_outside_is_refused(ws, tmp_path) -> None:
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.read_file(str(tmp_path / "outside" / "secret.txt"))
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.write_file("/etc/jada-evil", "x")


def test_a_symlink_pointing_out_is_refused_for_reading_writing_and_listing(ws, tmp_path) -> None:
    os.symlink(tmp_path / "outside" / "secret.txt", ws.real / "link.txt")
    os.symlink(tmp_path / "outside", ws.real / "linkdir")
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.read_file("link.txt")
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.write_file("link.txt", "overwritten")
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.write_file("linkdir/planted.txt", "x")
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.list_files("linkdir")
    assert (tmp_path / "outside" / "secret.txt").read_text() == "s3cret"
    assert not (tmp_path / "outside" / "planted.txt").exists()


def test_a_symlink_inside_the_workspace_is_followed(ws) -> None:
    os.symlink(ws.real / "inside.txt", ws.real / "alias.txt")
    assert ws.read_file("alias.txt") == "hello"


def test_only_allowed_commands_run_without_a_shell(ws) -> None:
    out = ws.run_command(["echo", "a;", "rm", "-rf", "$HOME"], ["echo"], 5)
    assert "a; rm -rf $HOME" in out and out.startswith("exit 0")
    with pytest.raises(ToolError, match="not an allowed command"):
        ws.run_command(["sh", "-c", "id"], ["echo"], 5)
    with pytest.raises(ToolError, match="not an allowed command"):
        ws.run_command(["/bin/echo", "x"], ["echo"], 5)


def test_command_arguments_pointing_outside_are_refused(ws, tmp_path) -> None:
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.run_command(["cat", str(tmp_path / "outside" / "secret.txt")], ["cat"], 5)
    with pytest.raises(ToolError, match=r"'\.\.'"):
        ws.run_command(["cat", "../outside/secret.txt"], ["cat"], 5)
    with pytest.raises(ToolError, match="outside the workspace"):
        ws.run_command(["ls", "--directory=/etc"], ["ls"], 5)


def test_a_command_that_runs_too_long_is_killed(ws) -> None:
    with pytest.raises(ToolError, match=r"timed out after 0\.3s"):
        ws.run_command(["sleep", "5"], ["sleep"], 0.3)


def test_commands_get_a_minimal_environment_without_secrets(ws, monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "must-not-leak")
    out = ws.run_command(["env"], ["env"], 5)
    assert "must-not-leak" not in out and "ANTHROPIC" not in out
    # HOME is not the workspace: a .gitconfig or .netrc written there is never read.
    assert "HOME=/nonexistent" in out


def test_tool_errors_go_back_to_the_model_as_error_results(ws, tmp_path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    task = store.add_task("t")
    box = ToolBox(store, task, ws, ["ls"], 5, session_id=1)
    text, is_error = box.call("read_file", {"path": "../x"})
    assert is_error and "'..'" in text
    text, is_error = box.call("launch_missiles", {})
    assert is_error and "no such tool" in text
    text, is_error = box.call("update_progress", {"note": "did a thing"})
    assert not is_error and store.get_task(task.id).notes[-1]["text"] == "session 1: did a thing"
    store.close()
