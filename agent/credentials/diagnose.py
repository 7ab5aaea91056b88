"""``credentials diagnose``: every check of the configured credential, and one named cause.

Checks run in this order and each leaves a finding: file present; valid JSON with the required
fields; file mode 0600 and owner the service user, directory 0700; granted scopes cover the
required ones; one refresh against the token endpoint. The cause is the first check that failed.
Then the repair is decided on data, so the remediation playbook can branch on it:

- ``permissions`` → ``fix_permissions``;
- a dead or missing credential → ``install_from_secret`` / ``install_from_parameter`` when the
  store holds a *different* credential that itself refreshes (a stale copy of the same dead
  token is not a fix), else ``switch_service_account`` when a configured key works;
- otherwise a person acts: ``next_step`` is the exact command (the re-auth playbook for this host).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.credentials import google as gcreds
from agent.credentials import remote
from agent.credentials.errors import REPLACEABLE, CredentialError
from agent.credentials.files import (
    Finding,
    credential_kind,
    parse_credential,
    permission_findings,
    same_credential,
)
from agent.credentials.history import History, fingerprint

TESTING_HINT = (
    "refresh tokens here died about 7 days after issue: the OAuth app is probably in Testing "
    "publishing status; publish it (In production) or use a service account"
)


@dataclass
class Diagnosis:
    cause: str
    machine_fixable: bool
    next_step: str
    repair: dict[str, Any] | None
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "machine_fixable": self.machine_fixable,
            "next_step": self.next_step,
            "repair": self.repair,
            "findings": [f.to_json() for f in self.findings],
        }


def host_name(settings: Settings) -> str:
    return settings.host_name or socket.gethostname()


def reauth_command(settings: Settings) -> str:
    return f"ansible-playbook playbooks/reauth.yml -l {host_name(settings)}"


def _candidate_from_store(
    settings: Settings, local: dict[str, Any] | None, findings: list[Finding]
) -> dict[str, Any] | None:
    """The first configured store entry that differs from the local file and refreshes."""
    for kind, name in remote.configured_sources(settings):
        label = f"{'Secrets Manager secret' if kind == 'secret' else 'SSM parameter'} {name}"
        check = f"store_{kind}"
        try:
            raw = remote.fetch(kind, name, settings)
            info = parse_credential(raw, label)
        except (remote.SecretStoreError, CredentialError) as exc:
            findings.append(Finding(check, False, str(exc)))
            continue
        if local is not None and same_credential(info, local):
            findings.append(
                Finding(check, False, f"{label} holds the same credential as the local file")
            )
            continue
        try:
            gcreds.refresh(info, settings)
        except CredentialError as exc:
            findings.append(Finding(check, False, f"{label} holds a credential that fails: {exc}"))
            continue
        findings.append(
            Finding(check, True, f"{label} holds a different credential that refreshes")
        )
        action = "install_from_secret" if kind == "secret" else "install_from_parameter"
        flag = "--from-secret" if kind == "secret" else "--from-parameter"
        return {
            "repair": {"action": action, "name": name},
            "next_step": f"jada-agent credentials install {flag} {name} --verify-sync",
        }
    return None


def _service_account_fallback(settings: Settings, findings: list[Finding]) -> dict | None:
    g = settings.google
    if g.credential_type == "service_account":
        return None
    path = Path(g.service_account_file)
    if not path.exists():
        return None
    try:
        info, _ = gcreds.read_file(path)
        if credential_kind(info) != "service_account":
            raise CredentialError("corrupt", f"{path}: type: expected service_account")
        gcreds.refresh(info, settings)
    except CredentialError as exc:
        findings.append(Finding("service_account", False, f"{path}: {exc}"))
        return None
    findings.append(Finding("service_account", True, f"{path} is a working service-account key"))
    return {
        "repair": {"action": "switch_service_account"},
        "next_step": (
            f"set google.credential_type: service_account in {settings.source}, "
            "then run: jada-agent sheet-sync"
        ),
    }


def diagnose(settings: Settings, *, now: datetime | None = None) -> Diagnosis:
    """Run every check and name one cause (see the module docstring)."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    findings: list[Finding] = []
    causes: list[str] = []
    path = gcreds.active_path(settings)
    info: dict[str, Any] | None = None
    history = History.for_settings(settings)

    # 1. present
    present = path.exists() or path.is_symlink()
    findings.append(
        Finding("file_present", present, f"{path} {'exists' if present else 'is missing'}")
    )
    if not present:
        causes.append("missing")
    else:
        # 2. valid JSON with the required fields
        try:
            info, _raw = gcreds.read_file(path)
            kind = credential_kind(info)
            findings.append(Finding("file_valid", True, f"{path} is a valid {kind} credential"))
            if kind != settings.google.credential_type:
                findings.append(
                    Finding(
                        "file_valid",
                        False,
                        f"{path} holds a {kind} credential; google.credential_type is "
                        f"{settings.google.credential_type}",
                    )
                )
                causes.append("corrupt")
        except CredentialError as exc:
            findings.append(Finding("file_valid", False, str(exc)))
            causes.append(exc.cause)
        # 3. modes and owners
        perms = permission_findings(path, settings.service_user)
        findings.extend(perms)
        if not all(f.ok for f in perms):
            causes.append("permissions")

    # 4. scopes recorded in the file
    if info is not None and credential_kind(info) == "authorized_user":
        recorded = info.get("scopes")
        if recorded is None:
            findings.append(Finding("scopes", True, "no scopes recorded; checked at refresh"))
        else:
            missing = sorted(set(settings.google.scopes) - set(recorded))
            findings.append(
                Finding(
                    "scopes",
                    not missing,
                    "granted scopes cover the required ones"
                    if not missing
                    else "granted scopes lack " + ", ".join(missing),
                )
            )
            if missing:
                causes.append("scope_mismatch")

    # 5. one refresh
    if info is not None:
        fp = fingerprint(info)
        history.seen(fp, datetime.fromtimestamp(path.stat().st_mtime, UTC))
        try:
            gcreds.refresh(info, settings)
            findings.append(Finding("refresh", True, "the token endpoint issued an access token"))
            history.used(fp, now)
        except CredentialError as exc:
            findings.append(Finding("refresh", False, str(exc)))
            causes.append(exc.cause)
            if exc.cause != "transient":
                history.failed(fp, exc.cause, now)

    if history.testing_mode_suspected():
        findings.append(Finding("history", False, TESTING_HINT))

    cause = causes[0] if causes else "ok"
    diag = _decide(settings, cause, info, findings)
    diag.seconds = time.monotonic() - started
    return diag


def _decide(
    settings: Settings, cause: str, info: dict[str, Any] | None, findings: list[Finding]
) -> Diagnosis:
    if cause == "ok":
        return Diagnosis("ok", False, "nothing to do", None, findings)
    if cause == "transient":
        return Diagnosis("transient", False, "nothing to do; retry later", None, findings)
    if cause == "permissions":
        return Diagnosis(
            "permissions",
            True,
            "jada-agent credentials fix-permissions",
            {"action": "fix_permissions"},
            findings,
        )
    if cause in REPLACEABLE:
        fix = _candidate_from_store(settings, info, findings) or _service_account_fallback(
            settings, findings
        )
        if fix is not None:
            return Diagnosis(cause, True, fix["next_step"], fix["repair"], findings)
    if cause == "client_rotated_or_deleted":
        findings.append(
            Finding(
                "hint",
                False,
                "the OAuth client secret was rotated or the client deleted: put the current "
                "client in the secret store, or re-authenticate with a live client",
            )
        )
    return Diagnosis(cause, False, reauth_command(settings), None, findings)
