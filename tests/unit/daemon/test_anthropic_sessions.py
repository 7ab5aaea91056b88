"""Claude sessions through the real SDK against the fake Messages API: turns, outcomes, usage."""

from __future__ import annotations

from tests.fakes.anthropic import error, reply, text, tool_use
from tests.unit.daemon.conftest import KEY, log_of


def _only_session(d):
    (s,) = d.store.list_sessions()
    return s


def test_the_turn_cap_is_exact_the_last_turns_tools_run_and_no_further_request(
    make_daemon, fake, tmp_path
) -> None:
    d = make_daemon(max_turns=30)
    task = d.store.add_task("long job")
    fake.script(
        [
            reply(tool_use("write_file", {"path": f"turn{n}.txt", "content": str(n)}))
            for n in range(1, 40)
        ]
    )
    d.step()
    assert len(fake.requests) == 30  # not 31: nothing was asked after the cap
    assert (tmp_path / "ws" / f"task-{task.id}" / "turn30.txt").read_text() == "30"
    assert not (tmp_path / "ws" / f"task-{task.id}" / "turn31.txt").exists()
    s = _only_session(d)
    assert (s.outcome, s.turns, s.exit_code) == ("max_turns", 30, 1)
    got = d.store.get_task(task.id)
    assert got.status == "ready"
    assert "30-turn cap" in got.notes[-1]["text"]
    assert f"session {s.id} task {task.id} ended outcome=max_turns turns=30 exit=1" in log_of(d)
    assert "(turn cap reached: expected, task stays open)" in log_of(d)


def test_a_cap_of_three_turns_sends_three_requests_with_every_tool_answered(
    make_daemon, fake
) -> None:
    d = make_daemon(max_turns=3)
    d.store.add_task("short cap")
    fake.script(
        [
            reply(tool_use("list_files", {}), tool_use("update_progress", {"note": f"step {n}"}))
            for n in range(5)
        ]
    )
    d.step()
    bodies = fake.message_requests()
    assert len(bodies) == 3
    # The fake refuses a request whose tool_use ids are not all answered: all three passed.
    assert [len(b["messages"]) for b in bodies] == [1, 3, 5]
    assert _only_session(d).outcome == "max_turns"


def test_complete_task_ends_the_session_and_closes_the_task(make_daemon, fake) -> None:
    d = make_daemon()
    task = d.store.add_task("easy")
    fake.script(
        [
            reply(tool_use("write_file", {"path": "out.txt", "content": "hi"}), usage=(100, 10)),
            reply(
                text("done"),
                tool_use("complete_task", {"summary": "wrote out.txt"}),
                usage=(150, 20),
            ),
        ]
    )
    d.step()
    s = _only_session(d)
    assert (s.outcome, s.turns, s.exit_code) == ("completed", 2, 0)
    assert (s.input_tokens, s.output_tokens) == (250, 30)
    got = d.store.get_task(task.id)
    assert got.status == "done" and "wrote out.txt" in got.notes[-1]["text"]
    assert len(fake.requests) == 2


def test_a_text_only_reply_is_answered_with_a_nudge_to_use_the_tools(make_daemon, fake) -> None:
    d = make_daemon()
    d.store.add_task("chatty")
    fake.script([reply(text("thinking...")), reply(tool_use("complete_task", {"summary": "ok"}))])
    d.step()
    second = fake.message_requests()[1]["messages"]
    assert second[-1]["role"] == "user" and "complete_task" in second[-1]["content"]
    assert _only_session(d).outcome == "completed"


def test_a_question_for_a_person_blocks_the_task_until_answered(make_daemon, fake) -> None:
    d = make_daemon()
    task = d.store.add_task("deploy", priority=3)
    fake.script(
        [
            reply(
                tool_use("create_needs_you_task", {"title": "Which port?", "body": "8080 or 9090?"})
            )
        ]
    )
    d.step()
    assert _only_session(d).outcome == "needs_you"
    blocked = d.store.get_task(task.id)
    assert blocked.status == "blocked"
    (question,) = d.store.list_tasks(["needs_you"])
    assert question.title == "Which port?" and "8080 or 9090?" in question.body
    assert blocked.depends_on == [question.id]
    assert d.store.next_ready_task() is None
    d.store.set_task_status(question.id, "done", note="9090")
    assert d.store.next_ready_task().id == task.id


def test_progress_notes_reach_the_next_sessions_prompt(make_daemon, fake) -> None:
    d = make_daemon(max_turns=1)
    d.store.add_task("two sessions")
    fake.script([reply(tool_use("update_progress", {"note": "half way: parser done"}))])
    d.step()
    fake.script([reply(tool_use("complete_task", {"summary": "all done"}))])
    d.step()
    prompt = fake.message_requests()[1]["messages"][0]["content"]
    assert "half way: parser done" in prompt and "1-turn cap" in prompt


def test_a_refused_key_ends_as_auth_error_and_asks_a_person_to_replace_it(
    make_daemon, fake, daemon_settings
) -> None:
    d = make_daemon()
    fake.set_keys(["another-key"])
    task = d.store.add_task("anything")
    d.step()
    s = _only_session(d)
    assert (s.outcome, s.exit_code) == ("auth_error", 77)
    assert d.store.get_task(task.id).status == "ready"
    (q,) = d.store.list_tasks(["needs_you"])
    assert q.title == "Replace the Anthropic API key"
    assert d.settings.daemon.api_key_file in q.body
    assert "was refused" in q.body and "ansible-playbook site.yml" in q.body
    assert "jada_agent_anthropic_api_key" in q.body
    assert KEY not in q.body and KEY not in log_of(d)
    # Paused: no second session burns the budget while the key is still the refused one.
    d.step()
    assert len(d.store.list_sessions()) == 1
    assert "sessions paused" in log_of(d)
    # Answering the question resumes sessions.
    fake.set_keys([KEY])
    d.store.set_task_status(q.id, "done")
    fake.script([reply(tool_use("complete_task", {"summary": "ok"}))])
    d.step()
    assert [x.outcome for x in d.store.list_sessions()] == ["auth_error", "completed"]


def test_rate_limits_and_overload_are_retried_by_the_sdk(make_daemon, fake) -> None:
    d = make_daemon()
    d.store.add_task("busy api")
    fake.script([error(429), error(529), reply(tool_use("complete_task", {"summary": "ok"}))])
    d.step()
    assert _only_session(d).outcome == "completed"
    assert [r["status"] for r in fake.requests] == [429, 529, 200]


def test_a_persistent_server_error_ends_the_session_as_a_transient_error_keeping_the_task(
    make_daemon, fake
) -> None:
    d = make_daemon()
    task = d.store.add_task("api down")
    fake.fail(500, count=10)
    d.step()
    s = _only_session(d)
    assert (s.outcome, s.exit_code) == ("error", 75)
    assert d.store.get_task(task.id).status == "ready"
    assert "HTTP 500" in log_of(d)
    assert [r["status"] for r in fake.requests] == [500, 500, 500, 500]  # 1 + 3 SDK retries


def test_a_missing_key_spends_no_budget_and_names_the_file(
    make_daemon, fake, daemon_settings
) -> None:
    d = make_daemon()
    import os

    os.unlink(d.settings.daemon.api_key_file)
    d.store.add_task("x")
    d.step()
    assert d.store.list_sessions() == []
    (q,) = d.store.list_tasks(["needs_you"])
    assert "is missing" in q.body and d.settings.daemon.api_key_file in q.body


def test_the_key_from_credentials_directory_wins(make_daemon, fake, tmp_path, monkeypatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "anthropic-api-key").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    fake.set_keys(["from-systemd"])
    d = make_daemon()
    d.store.add_task("x")
    fake.script([reply(tool_use("complete_task", {"summary": "ok"}))])
    d.step()
    assert fake.requests[0]["key"] == "from-systemd"


def test_a_replaced_key_resumes_sessions_and_closes_the_question(make_daemon, fake) -> None:
    import os

    d = make_daemon()
    fake.set_keys(["the-new-key"])
    d.store.add_task("work")
    d.step()
    (q,) = d.store.list_tasks(["needs_you"])
    # The operator installs the new key (what the playbook does); no `tasks done` needed.
    with open(d.settings.daemon.api_key_file, "w") as f:
        f.write("the-new-key\n")
    os.chmod(d.settings.daemon.api_key_file, 0o600)
    fake.script([reply(tool_use("complete_task", {"summary": "ok"}))])
    d.step()
    assert [s.outcome for s in d.store.list_sessions()] == ["auth_error", "completed"]
    closed = d.store.get_task(q.id)
    assert closed.status == "done" and "works again" in closed.notes[-1]["text"]
    assert "sessions resumed" in log_of(d)
