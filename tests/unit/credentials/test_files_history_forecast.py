"""Credential files (parsing, atomic install, permissions), the history file and the forecast."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.credentials import forecast
from agent.credentials.errors import CredentialError
from agent.credentials.files import (
    fix_permissions,
    install_bytes,
    parse_credential,
    permission_findings,
    restore_backup,
)
from agent.credentials.history import History, fingerprint

TOKEN = {
    "type": "authorized_user",
    "client_id": "c.apps.googleusercontent.com",
    "client_secret": "GOCSPX-secretvalue",
    "refresh_token": "1//refreshtokenvalue",
}


def test_parse_accepts_an_authorized_user_token():
    assert parse_credential(json.dumps(TOKEN), "t.json")["client_id"] == TOKEN["client_id"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "not valid JSON (line 1, column 1)"),
        (json.dumps({**TOKEN, "refresh_token": ""}), "refresh_token: expected a non-empty"),
        (json.dumps({**TOKEN, "scopes": "one"}), "scopes: expected a list of strings"),
        (json.dumps({"type": "service_account"}), "client_email: expected a non-empty"),
    ],
)
def test_parse_names_the_file_and_the_field_and_never_a_value(raw, expected):
    with pytest.raises(CredentialError) as exc:
        parse_credential(raw, "/x/t.json")
    assert exc.value.cause == "corrupt"
    assert str(exc.value).startswith("/x/t.json: ")
    assert expected in str(exc.value)
    assert "GOCSPX" not in str(exc.value) and "1//" not in str(exc.value)


def test_install_bytes_replaces_atomically_with_a_backup(tmp_path: Path):
    target = tmp_path / "secrets" / "tok.json"
    install_bytes(json.dumps(TOKEN).encode(), target, "nobody-here")
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    new = {**TOKEN, "refresh_token": "1//another"}
    r = install_bytes(json.dumps(new).encode(), target, "nobody-here")
    assert r.changed and r.backup
    assert json.loads(target.read_text()) == new
    assert restore_backup(target)
    assert json.loads(target.read_text()) == TOKEN


def test_install_bytes_never_follows_a_planted_temp_symlink(tmp_path: Path):
    target = tmp_path / "tok.json"
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.symlink(victim, tmp_path / f".tok.json.tmp-{os.getpid()}")
    install_bytes(json.dumps(TOKEN).encode(), target, "nobody-here")  # stale temp is removed first
    assert victim.read_text() == "keep"
    assert json.loads(target.read_text()) == TOKEN


def test_fix_permissions_repairs_modes(tmp_path: Path):
    d = tmp_path / "secrets"
    d.mkdir(mode=0o755)
    f = d / "tok.json"
    f.write_text("{}")
    f.chmod(0o644)
    done = fix_permissions(f, "nobody-here")
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert len([x for x in done if x.startswith("chmod")]) == 2
    assert all(x.ok for x in permission_findings(f, "nobody-here"))


def test_history_recognises_tokens_dying_seven_days_after_issue(tmp_path: Path):
    h = History(tmp_path / "h.json")
    t0 = datetime(2026, 5, 6, 14, 0, tzinfo=UTC)
    h.installed("fp-a", "file", t0)
    h.failed("fp-a", "revoked_or_expired", t0 + timedelta(days=3))
    assert not h.testing_mode_suspected()
    h.installed("fp-b", "file", t0)
    h.failed("fp-b", "revoked_or_expired", t0 + timedelta(days=7, hours=1))
    assert History(tmp_path / "h.json").testing_mode_suspected()  # persisted
    assert stat.S_IMODE((tmp_path / "h.json").stat().st_mode) == 0o600


def test_history_keeps_the_first_failure_and_stays_bounded(tmp_path: Path):
    h = History(tmp_path / "h.json")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    h.failed("fp-a", "revoked_or_expired", t0)
    h.failed("fp-a", "revoked_or_expired", t0 + timedelta(hours=5))
    assert h.get("fp-a")["first_failure"] == "2026-01-01T00:00:00Z"
    for i in range(80):
        h.installed(f"fp-{i:03}", "file", t0 + timedelta(minutes=i))
    assert len(History(tmp_path / "h.json").data["tokens"]) == 50


def test_fingerprints_do_not_contain_the_secret():
    fp = fingerprint(TOKEN)
    assert fp.startswith("fp-") and "refresh" not in fp
    assert fp != fingerprint({**TOKEN, "refresh_token": "1//other"})


def _settings_with_token(settings_factory, tmp_path: Path, **google):
    s = settings_factory(google={"token_file": str(tmp_path / "s" / "google-token.json"), **google})
    install_bytes(json.dumps(TOKEN).encode(), Path(s.google.token_file), "nobody-here")
    return s


def test_forecast_of_a_fresh_token_is_six_months_of_disuse(settings_factory, tmp_path: Path):
    s = _settings_with_token(settings_factory, tmp_path)
    now = datetime(2026, 5, 1, tzinfo=UTC)
    History.for_settings(s).installed(fingerprint(TOKEN), "file", now)
    fc = forecast(s, now=now)
    assert fc["expires_at"] == "2026-10-30T00:00:00Z"
    assert "6 months unused" in fc["reason"]
    assert not fc["warn"]


def test_forecast_warns_of_a_seven_day_token_when_history_shows_testing_mode(
    settings_factory, tmp_path: Path
):
    s = _settings_with_token(settings_factory, tmp_path)
    h = History.for_settings(s)
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    h.installed("fp-old", "file", t0 - timedelta(days=14))
    h.failed("fp-old", "revoked_or_expired", t0 - timedelta(days=7))
    h.installed(fingerprint(TOKEN), "file", t0)
    fc = forecast(s, now=t0 + timedelta(days=6))
    assert fc["expires_at"] == "2026-05-08T00:00:00Z"
    assert "Testing publishing status" in fc["reason"]
    assert fc["testing_mode_suspected"] and fc["warn"]


def test_forecast_for_a_service_account_foresees_no_expiry(settings_factory, tmp_path: Path):
    s = settings_factory(
        google={
            "credential_type": "service_account",
            "service_account_file": str(tmp_path / "sa.json"),
        }
    )
    sa = {
        "type": "service_account",
        "client_email": "a@b.iam.gserviceaccount.com",
        "private_key": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    (tmp_path / "sa.json").write_text(json.dumps(sa))
    fc = forecast(s)
    assert fc["expires_at"] is None
    assert "service account" in fc["reason"]


def test_forecast_without_a_credential_warns(settings_factory, tmp_path: Path):
    s = settings_factory(google={"token_file": str(tmp_path / "absent.json")})
    fc = forecast(s)
    assert fc["warn"] and "missing" in fc["reason"]


def test_forecast_after_a_heal_does_not_say_already_failing(settings_factory, tmp_path: Path):
    # The client secret was rotated (the sync failed: client_rotated_or_deleted), then the new
    # client was installed and the token works again: diagnose says ok, so must the forecast.
    s = _settings_with_token(settings_factory, tmp_path)
    fp = fingerprint(TOKEN)
    t0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
    h = History.for_settings(s)
    h.installed(fp, "file", t0 - timedelta(days=1))
    h.used(fp, t0 - timedelta(minutes=20))
    h.failed(fp, "client_rotated_or_deleted", t0)
    assert "already failing" in forecast(s, now=t0 + timedelta(minutes=1))["reason"]
    History.for_settings(s).used(fp, t0 + timedelta(minutes=10))  # healed, within the hour
    fc = forecast(s, now=t0 + timedelta(minutes=11))
    assert "already failing" not in fc["reason"]
    assert "6 months unused" in fc["reason"]
    assert not fc["warn"]
    assert History.for_settings(s).get(fp)["last_failure"]["cause"] == "client_rotated_or_deleted"


def test_forecast_ignores_a_failure_an_older_history_shows_followed_by_a_success(
    settings_factory, tmp_path: Path
):
    s = _settings_with_token(settings_factory, tmp_path)
    fp = fingerprint(TOKEN)
    t0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
    h = History.for_settings(s)
    h.installed(fp, "file", t0 - timedelta(days=1))
    entry = h._entry(fp)
    entry.update(first_failure="2026-05-01T12:00:00Z", cause="client_rotated_or_deleted",
                 last_ok="2026-05-01T13:00:00Z")  # fmt: skip
    h.save()
    assert "already failing" not in forecast(s, now=t0 + timedelta(hours=2))["reason"]
