"""The external-command runner: placeholders, exit code → outcome, the result file, the key."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from agent import dashboard
from tests.unit.daemon.conftest import KEY, log_of

AGENT = textwrap.dedent(
    """
    import json, os, re, sys, time
    prompt_file, max_turns, workspace = sys.argv[1:4]
    prompt = open(prompt_file).read()
    with open(os.path.join(workspace, "seen.json"), "w") as f:
        json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "prompt": prompt,
                   "key": os.environ.get("ANTHROPIC_API_KEY"),
                   "mode": oct(os.stat(prompt_file).st_mode & 0o777)}, f)
    m = re.search(r"RESULT=(\\{.*\\})", prompt)
    if m:
        open(os.environ["JADA_RESULT_FILE"], "w").write(m.group(1))
    if "SLEEP" in prompt:
        time.sleep(30)
    sys.exit(int(re.search(r"EXIT=(\\d+)", prompt).group(1)))
    """
)


@pytest.fixture
def command_daemon(make_daemon, tmp_path):
    script = tmp_path / "agent.py"
    script.write_text(AGENT)

    def make(**kw):
        return make_daemon(
            runner="command",
            command=[sys.executable, str(script), "{prompt_file}", "{max_turns}", "{workspace}"],
            **kw,
        )

    return make


def _run(d, body, tmp_path):
    task = d.store.add_task("cmd", body=body)
    d.step()
    (s,) = d.store.list_sessions()
    seen = json.loads((tmp_path / "ws" / f"task-{task.id}" / "seen.json").read_text())
    return d.store.get_task(task.id), s, seen


def test_placeholders_are_substituted_and_the_key_comes_by_environment(
    command_daemon, tmp_path
) -> None:
    d = command_daemon(max_turns=12)
    task, s, seen = _run(d, "EXIT=0", tmp_path)
    assert seen["argv"][1:] == ["12", str(tmp_path / "ws" / f"task-{task.id}")]
    assert seen["cwd"] == str(tmp_path / "ws" / f"task-{task.id}")
    assert "EXIT=0" in seen["prompt"] and seen["mode"] == "0o600"
    assert seen["key"] == KEY
    assert KEY not in " ".join(seen["argv"])
    assert (s.outcome, s.exit_code, task.status) == ("completed", 0, "done")


def test_exit_1_is_the_turn_cap_an_expected_end_that_keeps_the_task_open(
    command_daemon, tmp_path
) -> None:
    d = command_daemon()
    task, s, _ = _run(d, 'EXIT=1 RESULT={"turns": 30, "progress": "tests written"}', tmp_path)
    assert (s.outcome, s.exit_code, s.turns) == ("max_turns", 1, 30)
    assert task.status == "ready"
    assert (
        "outcome=max_turns turns=30 exit=1 (turn cap reached: expected, task stays open)"
        in log_of(d)
    )


def test_exit_77_is_an_auth_error(command_daemon, tmp_path) -> None:
    d = command_daemon()
    task, s, _ = _run(d, "EXIT=77", tmp_path)
    assert (s.outcome, task.status) == ("auth_error", "ready")
    assert [t.title for t in d.store.list_tasks(["needs_you"])] == ["Replace the Anthropic API key"]


def test_another_exit_code_is_an_error_recorded_as_is(command_daemon, tmp_path) -> None:
    d = command_daemon()
    task, s, _ = _run(d, "EXIT=5", tmp_path)
    assert (s.outcome, s.exit_code, task.status) == ("error", 5, "ready")


def test_the_result_file_can_ask_a_person(command_daemon, tmp_path) -> None:
    d = command_daemon()
    body = 'EXIT=0 RESULT={"outcome": "needs_you", "question": {"title": "Pick a domain", "body": "a.com or b.com?"}}'
    task, s, _ = _run(d, body, tmp_path)
    assert (s.outcome, task.status) == ("needs_you", "blocked")
    (q,) = d.store.list_tasks(["needs_you"])
    assert q.title == "Pick a domain" and task.depends_on == [q.id]


def test_a_command_over_the_session_timeout_is_killed(command_daemon, tmp_path) -> None:
    d = command_daemon(session_timeout="1s")
    task, s, _ = _run(d, "SLEEP EXIT=0", tmp_path)
    assert (s.outcome, s.exit_code, task.status) == ("timeout", 124, "ready")


def test_a_refused_key_reuses_the_open_question_of_that_title_and_notes_it(
    command_daemon, tmp_path
) -> None:
    # The one needs-you rule the command follows too: a person already asked (a playbook's
    # `tasks add --needs-you`), so the daemon notes the refusal there instead of asking twice.
    d = command_daemon()
    asked, _ = dashboard.add_task(
        d.store, d.settings, "Replace the Anthropic API key", body="rotate it", needs_you=True
    )
    _run(d, "EXIT=77", tmp_path)
    (q,) = d.store.list_tasks(["needs_you"])
    assert q.id == asked.id
    assert q.notes[-1]["text"].startswith("raised again: The Anthropic API key in ")
    assert "needs-you task" not in log_of(d)  # nothing new was created
