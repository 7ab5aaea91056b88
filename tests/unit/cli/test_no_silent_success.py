"""No silent successes: a wrong name, status or settings file is an error that says what is known;
a look at the host changes nothing on it; output cut short by `| head` is no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from agent import config
from agent.store import open_store
from tests.unit.remediator.helpers import write_rules

ROOT = Path(__file__).resolve().parents[3]


def jada(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def _config(tmp_path: Path, settings_factory, rules: bool = True) -> Path:
    s = settings_factory()
    if rules:
        rules_dir = tmp_path / "rules.d"
        write_rules(
            rules_dir / "sync.yml",
            {"name": "sheet-sync-token", "source": {"file": str(tmp_path / "x.log")},
             "match": "token error", "threshold": 3, "within": "90m"},
            {"name": "sheet-sync-perms", "source": {"file": str(tmp_path / "x.log")},
             "match": "Permission denied", "threshold": 1, "within": "10m"},
        )  # fmt: skip
        data = config.to_dict(s)
        data["remediator"]["rules_dirs"] = [str(rules_dir)]
    else:
        data = config.to_dict(s)
    cfg = tmp_path / "agent.yml"
    cfg.write_text(yaml.safe_dump(data))
    return cfg


def test_reset_of_an_unknown_rule_is_an_error_naming_the_known_rules(tmp_path, settings_factory):
    cfg = _config(tmp_path, settings_factory)
    r = jada("-c", str(cfg), "remediator", "reset", "sheet-sync-tokn")
    assert r.returncode == 64
    assert "no rule 'sheet-sync-tokn'" in r.stderr
    assert "did you mean sheet-sync-token?" in r.stderr
    assert "sheet-sync-perms, sheet-sync-token" in r.stderr
    ok = jada("-c", str(cfg), "remediator", "reset", "sheet-sync-token")
    assert ok.returncode == 0, ok.stderr


def test_incidents_with_an_unknown_status_is_a_usage_error_listing_the_statuses(
    tmp_path, settings_factory
):
    cfg = _config(tmp_path, settings_factory)
    r = jada("-c", str(cfg), "remediator", "incidents", "--status", "bogus")
    assert r.returncode == 64
    assert "invalid choice: 'bogus'" in r.stderr
    assert "open" in r.stderr and "escalated" in r.stderr and "resolved" in r.stderr


def test_a_settings_file_named_in_the_environment_must_exist(tmp_path):
    r = jada("status", env={"JADA_AGENT_CONFIG": str(tmp_path / "nonexistent.yml")})
    assert r.returncode == 64
    assert "nonexistent.yml" in r.stderr and "an existing settings file" in r.stderr


def test_read_only_commands_do_not_create_the_store(tmp_path, settings_factory):
    cfg = _config(tmp_path, settings_factory)
    store = Path(settings_factory().store.path)
    for argv in (
        ["status"],
        ["status", "--json"],
        ["tasks", "list"],
        ["sessions"],
        ["remediator", "incidents"],
    ):
        r = jada("-c", str(cfg), *argv)
        assert r.returncode == 0, (argv, r.stderr)
        assert "no store yet" in r.stderr
        assert not store.exists(), argv
        assert not store.parent.exists(), argv


def test_tasks_list_with_only_done_tasks_says_how_many_and_how_to_see_them(
    tmp_path, settings_factory
):
    cfg = _config(tmp_path, settings_factory)
    with open_store(settings_factory()) as st:
        for title in ("a", "b", "c"):
            st.set_task_status(st.add_task(title).id, "done")
    r = jada("-c", str(cfg), "tasks", "list")
    assert r.returncode == 0
    assert "no open tasks (3 done)" in r.stdout
    assert "tasks list --status all" in r.stdout


def test_config_errors_are_all_reported_with_the_closest_key(tmp_path):
    cfg = tmp_path / "agent.yml"
    cfg.write_text(
        yaml.safe_dump({"daemon": {"max_turn": 30, "sessions_per_day": "five"}, "remediatr": {}})
    )
    r = jada("-c", str(cfg), "config", "check")
    assert r.returncode == 64
    assert "3 errors" in r.stderr
    assert "daemon.max_turn: expected a known key (did you mean daemon.max_turns?" in r.stderr
    assert "daemon.sessions_per_day: expected an integer" in r.stderr
    assert "remediatr: expected a known key (did you mean remediator?" in r.stderr


def test_output_cut_short_by_head_is_no_traceback(tmp_path, settings_factory):
    cfg = _config(tmp_path, settings_factory)
    with open_store(settings_factory()) as st:
        for i in range(3000):
            st.add_task(f"task {i} " + "x" * 60)
    cmd = f"{sys.executable} -m agent -c {cfg} tasks list | head -1"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.stdout.strip().startswith("id")
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_no_http_client_request_lines_on_stderr(tmp_path, settings_factory):
    # health checks the Anthropic key with one real request (fake API on loopback); httpx logs
    # each request at INFO, which must not reach a person's terminal or a script's stderr.
    from tests.fakes.anthropic import FakeAnthropic

    key = "sk-ant-api03-stderr-test"
    key_file = tmp_path / "anthropic-api-key"
    key_file.write_text(key + "\n")
    with FakeAnthropic(keys=(key,)) as fake:
        s = settings_factory(
            daemon={"api_key_file": str(key_file), "anthropic_base_url": fake.url,
                    "runner": "anthropic"}
        )  # fmt: skip
        cfg = tmp_path / "agent.yml"
        cfg.write_text(yaml.safe_dump(config.to_dict(s)))
        r = jada("-c", str(cfg), "health", "--json", "--days", "1")
        assert any(q["path"].startswith("/v1/models") for q in fake.requests)
    assert r.stdout.lstrip().startswith("{"), r.stderr
    assert '"anthropic_api_key"' in r.stdout
    assert "HTTP Request" not in r.stderr, r.stderr
