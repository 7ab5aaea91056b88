"""Every authentication context the host relies on, each checked by its cheapest real call.

- Anthropic API key: ``GET /v1/models`` through the anthropic SDK (key read from
  ``daemon.api_key_file``).
- AWS role: ``sts get-caller-identity`` through boto3, with the AWS variables of the unit that
  uses them (``systemctl show -p Environment -p EnvironmentFiles``): on a host the key is given to
  the remediator's unit only (``AWS_SHARED_CREDENTIALS_FILE``), not to the shell running health.
- Google credential: ``jada-agent credentials diagnose --json`` and ``forecast --json`` (the
  contract of agent.credentials); "not checked" when that command is not available.
- File modes of every secret: the secrets directory 0700 and each file 0600, owned by the
  service user.

A secret is never put in a result, a log line or an exception text: results carry a status and
a short reason only.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shlex
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agent.config import Settings

Check = dict[str, Any]


def _scrub(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "<redacted>")
    return text[:200]


def check_anthropic(settings: Settings, timeout: float = 15.0) -> Check:
    path = Path(settings.daemon.api_key_file)
    out: Check = {"name": "anthropic_api_key", "source": str(path)}
    if settings.daemon.runner != "anthropic":
        return out | {"status": "not checked", "detail": "daemon.runner is not anthropic"}
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return out | {"status": "missing", "detail": f"no key file at {path}"}
    except OSError as exc:
        return out | {"status": "error", "detail": f"cannot read {path}: {exc.strerror}"}
    if not key:
        return out | {"status": "missing", "detail": f"{path} is empty"}
    try:
        import anthropic
    except ImportError:
        return out | {"status": "not checked", "detail": "anthropic SDK not installed"}
    client = anthropic.Anthropic(
        api_key=key,
        base_url=settings.daemon.anthropic_base_url,
        max_retries=0,
        timeout=timeout,
    )
    try:
        page = client.models.list(limit=1)
        count = len(page.data)
    except anthropic.AuthenticationError:
        return out | {"status": "rejected", "detail": "the API answered 401: the key is invalid"}
    except anthropic.PermissionDeniedError:
        return out | {"status": "rejected", "detail": "the API answered 403: key not permitted"}
    except anthropic.APIConnectionError as exc:
        return out | {"status": "unreachable", "detail": _scrub(str(exc), key)}
    except anthropic.APIStatusError as exc:
        return out | {"status": "error", "detail": f"HTTP {exc.status_code}"}
    return out | {"status": "ok", "detail": f"models listed ({count} on the first page)"}


def aws_uses(settings: Settings) -> list[str]:
    """The settings that make this host need AWS credentials (none: a missing role is fine)."""
    uses = []
    if settings.google.secret_name:
        uses.append("google.secret_name")
    if settings.google.parameter_name:
        uses.append("google.parameter_name")
    if settings.store.backend == "dynamodb":
        uses.append("store.backend")
    if settings.remediator.notify.sns_topic_arn:
        uses.append("remediator.notify.sns_topic_arn")
    if settings.aws.lightsail_instance:
        uses.append("aws.lightsail_instance")
    return uses


# Which unit uses AWS for which setting: the check reads that unit's environment.
AWS_UNIT_OF = {
    "google.secret_name": "jada-remediator.service",
    "google.parameter_name": "jada-remediator.service",
    "remediator.notify.sns_topic_arn": "jada-remediator.service",
    "store.backend": "jada-agent.service",
}


def _env_assignments(words: list[str]) -> dict[str, str]:
    out = {}
    for word in words:
        name, sep, value = word.partition("=")
        # Every AWS_ variable: the key file, the profile, and also the endpoint or CA bundle
        # the unit talks to; the unit's other variables are never read.
        if sep and name.startswith("AWS_"):
            out[name] = value
    return out


def unit_aws_environment(unit: str, systemctl: str = "systemctl") -> dict[str, str]:
    """The AWS variables ``unit`` runs with (its Environment= and EnvironmentFile=); empty when
    systemd is not there or the unit sets none. Values stay in memory, never in a result."""
    try:
        proc = subprocess.run(
            [systemctl, "show", "--no-pager", "-p", "Environment", "-p", "EnvironmentFiles", unit],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if proc.returncode != 0:
        return {}
    env: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "Environment":
            with contextlib.suppress(ValueError):
                env.update(_env_assignments(shlex.split(value)))
        elif key == "EnvironmentFiles" and value:
            # "PATH (ignore_errors=no)"; later files override earlier ones, as in systemd.
            path = value.rsplit(" (", 1)[0]
            with contextlib.suppress(OSError, ValueError):
                text = Path(path).read_text(encoding="utf-8")
                env.update(_env_assignments(shlex.split(text, comments=True)))
    return env


@contextlib.contextmanager
def _aws_environment(env: dict[str, str]) -> Iterator[None]:
    """This process's AWS_ variables replaced by ``env`` (none when empty), then restored."""
    if not env:
        yield
        return
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    try:
        for k in saved:
            del os.environ[k]
        os.environ.update(env)
        yield
    finally:
        for k in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[k]
        os.environ.update(saved)


def check_aws(settings: Settings, timeout: float = 10.0, systemctl: str = "systemctl") -> Check:
    uses = aws_uses(settings)
    env: dict[str, str] = {}
    source = "boto3 default chain"
    for unit in dict.fromkeys(AWS_UNIT_OF[u] for u in uses if u in AWS_UNIT_OF):
        env = unit_aws_environment(unit, systemctl)
        if env:
            shown = env.get("AWS_SHARED_CREDENTIALS_FILE") or env.get("AWS_PROFILE") or "set"
            source = f"environment of {unit} ({shown})"
            break
    out: Check = {"name": "aws_role", "source": source}
    try:
        import boto3
        import botocore.exceptions as bex
        from botocore.config import Config
    except ImportError:
        return out | {"status": "not checked", "detail": "boto3 not installed"}
    try:
        # A fresh session (the default one caches credentials across calls), with the unit's
        # AWS variables in place of this process's own while it resolves and calls.
        with _aws_environment(env):
            sts = boto3.session.Session().client(
                "sts",
                region_name=settings.aws.region,
                config=Config(
                    connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}
                ),
            )
            ident = sts.get_caller_identity()
    except bex.NoCredentialsError:
        if not uses:
            return out | {
                "status": "not used",
                "detail": "no AWS credentials; no setting needs them",
            }
        return out | {
            "status": "missing",
            "detail": "no AWS credentials found (needed by " + ", ".join(uses) + ")",
        }
    except bex.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        return out | {"status": "rejected", "detail": f"sts get-caller-identity: {code}"}
    except (bex.BotoCoreError, OSError) as exc:
        return out | {"status": "unreachable", "detail": type(exc).__name__}
    return out | {"status": "ok", "detail": ident.get("Arn", "")}


def _run_json(argv: list[str], timeout: float) -> tuple[int, Any, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return -1, None, f"no answer within {timeout:.0f} s"
    try:
        data = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        data = None
    return proc.returncode, data, proc.stderr.strip()[-300:]


def check_google(
    settings: Settings,
    config_path: str | None,
    timeout: float = 90.0,
    command: list[str] | None = None,
) -> Check:
    """Google credential through the ``credentials diagnose``/``forecast`` commands (the contract
    between agent.health and agent.credentials); ``command`` replaces ``python -m agent``."""
    out: Check = {"name": "google_credential", "source": settings.google.token_file}
    base = list(command) if command else [sys.executable, "-m", "agent"]
    if config_path:
        base += ["-c", config_path]
    rc, data, err = _run_json([*base, "credentials", "diagnose", "--json"], timeout)
    if data is None or not isinstance(data, dict):
        if "invalid choice" in err or (rc == 2 and "usage:" in err):
            return out | {"status": "not checked", "detail": "agent.credentials unavailable"}
        return out | {
            "status": "error",
            "detail": f"credentials diagnose exited {rc}: {err[-120:]}",
        }
    cause = data.get("cause", "?")
    result = out | {
        "status": "ok" if rc == 0 else "failing",
        "cause": cause,
        "machine_fixable": data.get("machine_fixable"),
        "next_step": data.get("next_step"),
        "detail": "token refreshes" if rc == 0 else f"cause: {cause}",
    }
    _rc2, forecast, _ = _run_json([*base, "credentials", "forecast", "--json"], timeout)
    if isinstance(forecast, dict):
        result["forecast"] = forecast
    return result


def check_file_modes(settings: Settings) -> list[Check]:
    """Mode and owner of the secrets directory and of every file in it (plus named secrets)."""
    try:
        uid: int | None = pwd.getpwnam(settings.service_user).pw_uid
    except KeyError:
        uid = None
    secrets_dir = Path(settings.secrets_dir)
    paths = [secrets_dir]
    if secrets_dir.is_dir():
        with contextlib.suppress(PermissionError):
            paths += sorted(p for p in secrets_dir.iterdir() if p.is_file())
    for named in (
        settings.daemon.api_key_file,
        settings.google.token_file,
        settings.google.service_account_file,
    ):
        p = Path(named)
        if p not in paths and p.exists():
            paths.append(p)
    out = []
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError:
            out.append({"path": str(p), "exists": False, "ok": True, "problem": None})
            continue
        except OSError as exc:
            out.append({"path": str(p), "exists": None, "ok": False, "problem": exc.strerror})
            continue
        mode = stat.S_IMODE(st.st_mode)
        want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        problems = []
        if mode & ~want:
            problems.append(f"mode {mode:04o} is wider than {want:04o}")
        if uid is not None and st.st_uid not in (uid, 0):
            problems.append(f"owned by uid {st.st_uid}, not {settings.service_user}")
        out.append(
            {
                "path": str(p),
                "exists": True,
                "mode": f"{mode:04o}",
                "owner": _owner(st.st_uid),
                "ok": not problems,
                "problem": "; ".join(problems) or None,
            }
        )
    return out


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def credentials(
    settings: Settings,
    config_path: str | None,
    checks: dict[str, Callable[[], Check]] | None = None,
    systemctl: str = "systemctl",
) -> dict[str, Any]:
    """All credential checks; ``checks`` replaces the default set (tests, ``--no-credentials``)."""
    if checks is None:
        checks = {
            "anthropic": lambda: check_anthropic(settings),
            "aws": lambda: check_aws(settings, systemctl=systemctl),
            "google": lambda: check_google(settings, config_path),
        }
    results = []
    for name, fn in checks.items():
        try:
            results.append(fn())
        except Exception as exc:  # one broken check must not hide the others
            results.append({"name": name, "status": "error", "detail": type(exc).__name__})
    return {"contexts": results, "files": check_file_modes(settings), "os_user": os.getuid()}
