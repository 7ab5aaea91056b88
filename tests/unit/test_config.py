"""The settings file: defaults, durations, and errors that name the file, key and expectation."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from agent import config


def test_defaults_match_the_mission_budget() -> None:
    s = config.from_dict({})
    assert s.daemon.sessions_per_day == 5
    assert s.daemon.max_turns == 30
    assert s.store.backend == "sqlite"


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("90m", 5400), ("6h", 21600), ("7d", 604800), (12, 12)]
)
def test_durations_accept_s_m_h_d(text, seconds) -> None:
    assert config.parse_duration(text) == seconds


def test_bad_duration_names_file_and_key(tmp_path: Path) -> None:
    f = tmp_path / "agent.yml"
    f.write_text("daemon:\n  command_timeout: soon\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(f)
    assert str(e.value).startswith(f"{f}: daemon.command_timeout: expected a duration")


def test_unknown_key_is_an_error_listing_known_keys(tmp_path: Path) -> None:
    f = tmp_path / "agent.yml"
    f.write_text("daemon:\n  sesions_per_day: 3\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(f)
    assert "daemon.sesions_per_day" in str(e.value)
    assert "sessions_per_day" in str(e.value)


def test_wrong_type_and_choice_and_range(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"daemon\.max_turns: expected an integer"):
        config.from_dict({"daemon": {"max_turns": "thirty"}}, "x.yml")
    with pytest.raises(config.ConfigError, match=r"google\.credential_type: expected one of"):
        config.from_dict({"google": {"credential_type": "api_key"}}, "x.yml")
    with pytest.raises(
        config.ConfigError, match=r"daemon\.sessions_per_day: expected an integer of at least 1"
    ):
        config.from_dict({"daemon": {"sessions_per_day": 0}}, "x.yml")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "agent.yml"
    f.write_text("daemon:\n  max_turns: [1,\n")
    with pytest.raises(config.ConfigError, match=r"line \d+: expected valid YAML"):
        config.load(f)


def test_config_check_command_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text("daemon:\n  sessions_per_day: 3\n")
    bad = tmp_path / "bad.yml"
    bad.write_text("store:\n  backend: mysql\n")
    run = [sys.executable, "-m", "agent", "config", "check"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    ko = subprocess.run([*run, str(bad)], capture_output=True, text=True)
    assert ko.returncode == 64
    assert f"{bad}: store.backend: expected one of sqlite, dynamodb" in ko.stderr


@pytest.mark.parametrize(
    "value", [float("inf"), float("-inf"), float("nan"), "1" + "0" * 400 + "s"]
)
def test_durations_must_be_finite(value) -> None:
    with pytest.raises(config.ConfigError, match="a finite duration"):
        config.parse_duration(value, key="daemon.lease_ttl")


def test_a_directory_as_the_settings_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="a settings file, not a directory"):
        config.load(tmp_path)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    from agent import yamlsafe

    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    bomb = "\n".join(lines) + "\n"
    with pytest.raises(yamlsafe.DocumentTooLarge, match="aliases"):
        yamlsafe.load(bomb)
    f = tmp_path / "agent.yml"
    f.write_text(bomb)
    with pytest.raises(config.ConfigError, match="aliases"):
        config.load(f)
    # a few honest aliases are fine
    assert yamlsafe.load("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}


def test_a_retired_key_is_ignored_with_a_warning_naming_file_and_key(tmp_path: Path) -> None:
    # Files written by an older role still have them: they load, and `config check` says which
    # keys to remove (on stderr; exit 0, so Ansible's validate still passes).
    f = tmp_path / "agent.yml"
    f.write_text(
        "log_dir: /var/log/jada-agent\n"
        "google:\n  revoke_uri: https://oauth2.googleapis.com/revoke\n  timeout: 5s\n"
        "remediator:\n  history_days: 90\n"
    )
    run = [sys.executable, "-m", "agent", "config", "check", str(f)]
    checked = subprocess.run(run, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == f"{f}: ok\n"
    warnings = checked.stderr.splitlines()
    assert [w.split(": ")[1] for w in warnings] == [
        "log_dir",
        "google.revoke_uri",
        "remediator.history_days",
    ]
    assert all(w.startswith(f"{f}: ") and w.endswith("; remove it") for w in warnings)
    s = config.load(f)
    assert s.ignored == ("log_dir", "google.revoke_uri", "remediator.history_days")
    assert s.google.timeout == 5
    assert "log_dir" not in config.to_dict(s) and "ignored" not in config.to_dict(s)


def test_a_retired_key_nested_in_a_wrong_place_is_still_an_unknown_key() -> None:
    with pytest.raises(config.ConfigError, match=r"daemon\.history_days: expected a known key"):
        config.from_dict({"daemon": {"history_days": 90}}, "x.yml")


def test_a_positive_count_is_checked_by_its_field_not_by_its_name() -> None:
    # `days` is positive in health; the range rule follows the field's metadata.
    with pytest.raises(
        config.ConfigError, match=r"health\.days: expected an integer of at least 1"
    ):
        config.from_dict({"health": {"days": 0}}, "x.yml")
    with pytest.raises(config.ConfigError, match=r"notify\.warn_days: expected an integer"):
        config.from_dict({"remediator": {"notify": {"warn_days": 0}}}, "x.yml")
    positive = {
        f"{section}.{f.name}"
        for section, cls in [
            ("store", config.StoreSettings),
            ("daemon", config.DaemonSettings),
            ("sheets", config.SheetsSettings),
            ("notify", config.NotifySettings),
            ("remediator", config.RemediatorSettings),
            ("health", config.HealthSettings),
        ]
        for f in dataclasses.fields(cls)
        if f.metadata.get("positive")
    }
    assert positive == {
        "store.retention_days",
        "daemon.sessions_per_day",
        "daemon.max_turns",
        "daemon.max_tokens",
        "daemon.max_task_errors",
        "sheets.session_days",
        "notify.max_pending",
        "notify.warn_days",
        "remediator.artifacts_keep",
        "health.days",
    }
