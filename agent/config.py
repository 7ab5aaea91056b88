"""The settings file: one validated YAML document (`/etc/jada-agent/agent.yml`).

This module owns the schema of every section and the rules for reading it. Each section is a
frozen dataclass; a field's annotation is its type, its default is the packaged default, and its
``metadata`` may mark it as a duration (``"90m"``), a positive count (``positive``), a secret
(masked by ``config show``) or restrict it to ``choices``. Every error names the file, the dotted
key and what was expected, and unknown keys are errors (a typo must not silently fall back to a
default); keys that nothing reads any more (``RETIRED``) load with a warning.

Over 450 lines on purpose: the sections are the reference for every key (their comments are the
documentation of the settings file), and the rules that read them are short; split, a reader
would go back and forth between the schema and the rules that give it meaning.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import re
import string
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent import yamlsafe

DEFAULT_PATH = Path(os.environ.get("JADA_AGENT_CONFIG", "/etc/jada-agent/agent.yml"))

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    """A settings or rule file is wrong; the message names the file, the key and the expectation."""

    def __init__(
        self, file: str | os.PathLike[str] | None, key: str, expected: str, got: Any = None
    ):
        self.file = str(file) if file is not None else "<settings>"
        self.key = key
        self.expected = expected
        shown = "" if got is None else f" (got {_show(got)})"
        super().__init__(f"{self.file}: {key}: expected {expected}{shown}")
        self.errors: list[ConfigError] = [self]

    @classmethod
    def of(cls, errors: list[ConfigError]) -> ConfigError:
        """One error standing for several (its message lists them all, one per line)."""
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        err = cls(first.file, first.key, first.expected)
        err.args = (f"{len(errors)} errors:\n  " + "\n  ".join(str(e) for e in errors),)
        err.errors = list(errors)
        return err


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_duration(value: Any, *, file: Any = None, key: str = "duration") -> float:
    """Seconds from ``30``, ``"45s"``, ``"90m"``, ``"6h"`` or ``"7d"``."""
    if isinstance(value, bool):
        raise ConfigError(file, key, "a duration such as 30s, 90m, 6h or 7d", value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ConfigError(file, key, "a finite duration", value)
        if value < 0:
            raise ConfigError(file, key, "a non-negative duration", value)
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            if not math.isfinite(seconds):
                raise ConfigError(file, key, "a finite duration", value)
            return seconds
    raise ConfigError(file, key, "a duration such as 30s, 90m, 6h or 7d", value)


def duration(default: str | float, **meta: Any) -> Any:
    """A dataclass field holding seconds, written in the file as ``30s``/``90m``/``6h``/``7d``."""
    return field(default=parse_duration(default), metadata={"duration": True, **meta})


def choice(default: str, *choices: str) -> Any:
    return field(default=default, metadata={"choices": choices})


def positive(default: int) -> Any:
    """An integer field that must be at least 1 (a count or a number of days)."""
    return field(default=default, metadata={"positive": True})


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class DynamoSettings:
    # The table is "<table_prefix>-store", created on first use (pay per request).
    table_prefix: str = "jada-agent"
    region: str = "us-east-1"
    endpoint_url: str | None = None

    def check(self, file: Any, prefix: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{3,200}", self.table_prefix):
            raise ConfigError(
                file,
                prefix + "table_prefix",
                "3 to 200 letters, digits, '_', '-' or '.' (a DynamoDB table name)",
                self.table_prefix,
            )


@dataclass(frozen=True)
class StoreSettings:
    # sqlite: one file on the host (embedded default); dynamodb: a fleet's shared dashboard.
    backend: str = choice("sqlite", "sqlite", "dynamodb")
    path: str = "/var/lib/jada-agent/store.db"
    retention_days: int = positive(90)
    dynamodb: DynamoSettings = field(default_factory=DynamoSettings)


_COMMAND_FIELDS = {"prompt_file", "max_turns", "workspace"}


@dataclass(frozen=True)
class DaemonSettings:
    sessions_per_day: int = positive(5)
    max_turns: int = positive(30)
    runner: str = choice("anthropic", "anthropic", "command")
    model: str = "claude-sonnet-4-6"
    max_tokens: int = positive(4096)
    anthropic_base_url: str | None = None
    # systemd's LoadCredential= puts the key in $CREDENTIALS_DIRECTORY/anthropic-api-key, which
    # wins when set; otherwise this file (the role installs it 0600).
    api_key_file: str = "/var/lib/jada-agent/secrets/anthropic-api-key"
    # runner=command: argv; {prompt_file}, {max_turns}, {workspace} are substituted.
    command: list[str] = field(default_factory=list)
    workspace_root: str = "/var/lib/jada-agent/workspaces"
    allowed_commands: list[str] = field(default_factory=lambda: ["ls", "cat", "grep", "git"])
    command_timeout: float = duration("120s")
    # Allowed commands that may use the network (socket(), TCP); every other one gets none.
    network_commands: list[str] = field(default_factory=list)
    # Address-space cap of one command, in MiB (RLIMIT_AS); 0 = none.
    command_memory_mb: int = 512
    # Output (stdout + stderr) kept from one command; past it the command is killed.
    command_output_max: int = 20_000
    session_timeout: float = duration("2h")
    # 0 = take WatchdogSec from systemd ($WATCHDOG_USEC); pings go out at half the interval.
    watchdog_interval: float = duration("0s")
    # `tasks add` wakes the daemon through this datagram socket; "" = <state_dir>/daemon.sock.
    wake_socket: str = ""
    # Only the holder of the store's session lease runs sessions; it renews every ttl/3.
    lease_ttl: float = duration("60s")
    # Safety net for a shared store whose tasks are added on other hosts (no nudge reaches us).
    poll_interval: float = duration("5m")
    # After a session that failed because the API was unavailable, wait this long before the next.
    error_backoff: float = duration("15m")
    # A task whose sessions end in a (non-transient) error this many times in a row is failed.
    max_task_errors: int = positive(3)

    def check(self, file: Any, prefix: str) -> None:
        if self.runner == "command" and not self.command:
            raise ConfigError(
                file,
                prefix + "command",
                "a non-empty argv list when daemon.runner is command",
                self.command,
            )
        for i, arg in enumerate(self.command):
            try:
                names = {n for _, n, _, _ in string.Formatter().parse(arg) if n is not None}
            except ValueError:
                names = {"?"}
            if names - _COMMAND_FIELDS:
                raise ConfigError(
                    file,
                    f"{prefix}command[{i}]",
                    "only the placeholders {prompt_file}, {max_turns} and {workspace}",
                    arg,
                )
        for i, name in enumerate(self.allowed_commands):
            if not name or "/" in name or name.strip() != name:
                raise ConfigError(
                    file, f"{prefix}allowed_commands[{i}]", "a bare command name such as git", name
                )
        for i, name in enumerate(self.network_commands):
            if name not in self.allowed_commands:
                raise ConfigError(
                    file, f"{prefix}network_commands[{i}]", "one of allowed_commands", name
                )
        if self.command_memory_mb < 0 or self.command_output_max < 1000:
            raise ConfigError(
                file,
                prefix + "command_memory_mb/command_output_max",
                "command_memory_mb >= 0 and command_output_max >= 1000",
                (self.command_memory_mb, self.command_output_max),
            )
        for key in ("workspace_root", "api_key_file"):
            if not os.path.isabs(getattr(self, key)):
                raise ConfigError(file, prefix + key, "an absolute path", getattr(self, key))
        if self.lease_ttl < 5:
            raise ConfigError(
                file, prefix + "lease_ttl", "a duration of at least 5s", self.lease_ttl
            )
        if self.poll_interval < 1:
            raise ConfigError(
                file, prefix + "poll_interval", "a duration of at least 1s", self.poll_interval
            )
        if self.session_timeout < 1:
            raise ConfigError(
                file, prefix + "session_timeout", "a duration of at least 1s", self.session_timeout
            )


@dataclass(frozen=True)
class GoogleSettings:
    # service_account is recommended for servers: none of the user-token expiry modes apply.
    credential_type: str = choice("authorized_user", "authorized_user", "service_account")
    token_file: str = "/var/lib/jada-agent/secrets/google-token.json"
    service_account_file: str = "/var/lib/jada-agent/secrets/google-service-account.json"
    scopes: list[str] = field(
        default_factory=lambda: ["https://www.googleapis.com/auth/spreadsheets"]
    )
    token_uri: str = "https://oauth2.googleapis.com/token"
    auth_uri: str = "https://accounts.google.com/o/oauth2/auth"
    # Where a newer token (or a rotated client secret) is published for hosts to pull.
    secret_name: str | None = None
    parameter_name: str | None = None
    timeout: float = duration("30s")
    # Install times, first failures and causes of past tokens (never secrets); the forecast and
    # the "7-day Testing-mode tokens" diagnosis read it. Empty: <token_file stem>.history.json.
    history_file: str = ""
    # How long `credentials login` waits for the browser's consent before giving up.
    login_timeout: float = duration("300s")
    # `credentials forecast` warns when the likely expiry is closer than this.
    forecast_warn: float = duration("2d")
    # The OAuth app's publishing status (Google Cloud console, OAuth consent screen). "testing":
    # every refresh token dies 7 days after issue, so the forecast warns before the first
    # failure; "unknown": inferred from this host's history of token deaths.
    publishing_status: str = choice("unknown", "unknown", "testing", "production")


@dataclass(frozen=True)
class SheetsSettings:
    spreadsheet_id: str = ""
    endpoint: str = "https://sheets.googleapis.com/"
    timeout: float = duration("30s")
    max_retries: int = 4
    retry_base_delay: float = duration("1s")
    # Written by the deploy role on each deployment; its mtime is the Deployment tab's
    # "deployed at" (the virtualenv's mtime when it is absent).
    deployed_marker: str = "/opt/jada-agent/DEPLOYED"
    # The Sessions tab covers this many UTC days back from today.
    session_days: int = positive(30)


def secret(default: str | None = None) -> Any:
    """A field whose value is a secret (a URL with a token in it): masked by ``config show``."""
    return field(default=default, metadata={"secret": True})


@dataclass(frozen=True)
class NotifySettings:
    # Channels. Each URL is a secret (the token is in it). A Slack-compatible incoming webhook
    # (JSON POST with "text"), an SNS topic (region aws.region), and any number of apprise URLs
    # (https://github.com/caronc/apprise/wiki: mailtos://, tgram://, discord://, ntfy://,
    # pagerduty://, opsgenie://, ...).
    webhook_url: str | None = secret()
    sns_topic_arn: str | None = None
    urls: list[str] = field(default_factory=list, metadata={"secret": True})
    # Total deadline of one delivery attempt (connect + send + answer), not a per-read timeout.
    timeout: float = duration("10s")
    # Retries back off exponentially from retry_min to retry_max; a message still undelivered
    # give_up_after its creation is given up (logged, counted in `remediator status`).
    retry_min: float = duration("30s")
    retry_max: float = duration("30m")
    give_up_after: float = duration("24h")
    # Undelivered messages kept per channel; beyond it one summary message counts the rest.
    max_pending: int = positive(100)
    # A needs-you incident or task still open is recalled this often.
    remind_every: float = duration("12h")
    # An incident healed without a person is announced too (as "resolved").
    announce_healed: bool = True
    # A credential forecast to stop working within this is announced (checked daily).
    warn_days: int = positive(7)
    # How often the service looks at the store for new needs-you tasks, reminders and the
    # forecast.
    check_every: float = duration("60s")
    # Dead-man's switch: `jada-agent notify heartbeat` (a timer) POSTs "ok" or "degraded" here
    # (healthchecks.io style; the service alerts when the pings stop). A secret.
    heartbeat_url: str | None = secret()


@dataclass(frozen=True)
class RemediatorSettings:
    # Packaged defaults first, local overrides after: a later file overrides a rule by name.
    rules_dirs: list[str] = field(
        default_factory=lambda: ["/opt/jada-agent/share/rules.d", "/etc/jada-agent/rules.d"]
    )
    # Root's own state, in a root-owned directory: never inside the service user's state dir,
    # where any process of that user could rename it away and plant its own.
    state_db: str = "/var/lib/jada-remediator/remediator.db"
    private_data_dir: str = "/var/lib/jada-remediator/runner"
    artifacts_keep: int = positive(20)
    lock_file: str = "/run/jada-agent/remediation.lock"
    # How often the journal source asks the journal whether it holds entries of the rules' units
    # beyond the last one journalctl handed over: two answers in a row that it does, with
    # nothing read in between, mean the child is alive but stuck -- a fault, and a new child
    # (0: never asked).
    journal_stall_check: float = duration("5m")
    notify: NotifySettings = field(default_factory=NotifySettings)


@dataclass(frozen=True)
class AwsSettings:
    region: str = "us-east-1"
    lightsail_instance: str | None = None


@dataclass(frozen=True)
class HealthSettings:
    core_units: list[str] = field(default_factory=lambda: ["jada-agent.service"])
    subsidiary_units: list[str] = field(
        default_factory=lambda: [
            "port-sheet-sync.service",
            "port-sheet-sync.timer",
            "jada-remediator.service",
        ]
    )
    days: int = positive(7)


@dataclass(frozen=True)
class Settings:
    host_name: str = ""
    service_user: str = "jada"
    state_dir: str = "/var/lib/jada-agent"
    secrets_dir: str = "/var/lib/jada-agent/secrets"
    store: StoreSettings = field(default_factory=StoreSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    google: GoogleSettings = field(default_factory=GoogleSettings)
    sheets: SheetsSettings = field(default_factory=SheetsSettings)
    remediator: RemediatorSettings = field(default_factory=RemediatorSettings)
    aws: AwsSettings = field(default_factory=AwsSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    # Where the settings came from, for error messages and `config check`.
    source: str = field(default="<defaults>", metadata={"internal": True})
    # The retired keys (RETIRED) the file still has: ignored, and `config check` names them.
    ignored: tuple[str, ...] = field(default=(), metadata={"internal": True})


# --------------------------------------------------------------------------- reading


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        names = [_type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(names) + " or null"
    if origin is list:
        (inner,) = typing.get_args(tp)
        return f"a list of {_type_name(inner)}"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
    }.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, meta: Any, file: Any, key: str) -> Any:
    if meta.get("duration"):
        return parse_duration(value, file=file, key=key)
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], meta, file, key)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(file, key, "a mapping", value)
        return _build(tp, value, file, key + ".")
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(file, key, _type_name(tp), value)
        return [_coerce(v, inner, {}, file, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(file, key, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(file, key, "an integer", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(file, key, "a number", value)
        if not math.isfinite(value):
            raise ConfigError(file, key, "a finite number", value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(file, key, "a string", value)
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ConfigError(file, key, "one of " + ", ".join(choices), value)
        return value
    raise TypeError(f"unsupported settings type {tp!r} for {key}")


def _unknown_key(file: Any, prefix: str, name: str, known: Iterable[str]) -> ConfigError:
    import difflib  # only for a misspelt key: the services never load it

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f"did you mean {prefix}{close[0]}? " if close else ""
    return ConfigError(
        file, prefix + name, f"a known key ({hint}known: {', '.join(sorted(known))})"
    )


def _build(cls: type, data: dict[str, Any], file: Any, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    # Every mistake of the file at once (a person fixes them in one go, not one per run).
    errors = [
        _unknown_key(file, prefix, str(k), fields)
        for k in sorted(map(str, set(data) - set(fields)))
    ]
    kwargs = {}
    for name, value in data.items():
        f = fields.get(name)
        if f is None:
            continue
        try:
            kwargs[name] = _coerce(value, hints[name], f.metadata, file, prefix + name)
        except ConfigError as exc:
            errors += exc.errors
    if errors:
        raise ConfigError.of(errors)
    obj = cls(**kwargs)
    _check_ranges(obj, file, prefix)
    # A section may check what types cannot say (one field depending on another).
    check = getattr(obj, "check", None)
    if callable(check):
        check(file, prefix)
    return obj


def _check_ranges(obj: Any, file: Any, prefix: str) -> None:
    for f in dataclasses.fields(obj):
        if f.metadata.get("positive") and getattr(obj, f.name) < 1:
            raise ConfigError(
                file, prefix + f.name, "an integer of at least 1", getattr(obj, f.name)
            )


# Keys that were settings once and that nothing reads any more. A file that still has one
# loads (an upgrade must not break a host whose file was written by an older role): the key is
# ignored, and every load logs a warning naming the file and the key so that a person removes it.
RETIRED = {
    "log_dir": "nothing reads it (the sync's log file is the port_sheet_sync role's"
    " port_sheet_sync_log_file)",
    "google.revoke_uri": "nothing revokes a Google token",
    "remediator.history_days": "nothing reads it (the remediator's state keeps twice its longest"
    " rule window; incidents are kept store.retention_days)",
}

log = logging.getLogger("jada-agent.config")


def _drop_retired(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``data`` without the retired keys it has (a copy when it has any), and those keys."""

    def section(doc: Any, path: list[str]) -> Any:
        for name in path:
            doc = doc.get(name) if isinstance(doc, dict) else None
        return doc

    found = []
    for dotted in RETIRED:
        *path, key = dotted.split(".")
        node = section(data, path)
        if isinstance(node, dict) and key in node:
            found.append(dotted)
    if found:
        data = copy.deepcopy(data)  # the caller's document stays as it was
        for dotted in found:
            *path, key = dotted.split(".")
            del section(data, path)[key]
    return data, found


def from_dict(data: dict[str, Any] | None, source: str = "<dict>") -> Settings:
    """Validate a parsed settings document; raises :class:`ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, "(top level)", "a mapping of settings sections", data)
    data, retired = _drop_retired(data)
    settings = _build(Settings, data, source)
    for key in retired:
        log.warning("%s: %s: ignored: %s; remove it", source, key, RETIRED[key])
    return dataclasses.replace(settings, source=source, ignored=tuple(retired))


def load(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate the settings file (``$JADA_AGENT_CONFIG`` or ``/etc/jada-agent/agent.yml``).

    A missing file at the default path yields the packaged defaults; a missing file that was
    named explicitly is an error.
    """
    # A file named on the command line or in $JADA_AGENT_CONFIG must exist: a typo in either
    # would otherwise run on silent defaults.
    env = os.environ.get("JADA_AGENT_CONFIG")
    explicit = path is not None or bool(env)
    p = Path(path) if path is not None else Path(env) if env else DEFAULT_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(p, "(file)", "an existing settings file") from None
        return Settings(source=str(p) + " (absent: defaults)")
    except IsADirectoryError:
        raise ConfigError(p, "(file)", "a settings file, not a directory") from None
    except (PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(p, "(file)", "a readable UTF-8 file", type(exc).__name__) from None
    try:
        data = yamlsafe.load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f"line {where.line + 1}" if where is not None else "(file)"
        raise ConfigError(p, line, "valid YAML", getattr(exc, "problem", str(exc))) from None
    return from_dict(data, str(p))


def to_dict(settings: Settings) -> dict[str, Any]:
    data = dataclasses.asdict(settings)
    data.pop("source", None)
    data.pop("ignored", None)
    return data


def mask_secret(value: str) -> str:
    """``scheme://***``: enough to see which kind of channel is set, nothing of its token."""
    scheme, sep, _ = value.partition("://")
    return f"{scheme}://***" if sep and scheme.isalnum() else "***"


def to_masked_dict(settings: Any) -> dict[str, Any]:
    """``to_dict`` with every secret field (``secret(...)``) masked: what `config show` prints."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        if f.metadata.get("internal"):
            continue
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_masked_dict(value)
        elif f.metadata.get("secret") and isinstance(value, str) and value:
            out[f.name] = mask_secret(value)
        elif f.metadata.get("secret") and isinstance(value, list):
            out[f.name] = [mask_secret(str(v)) for v in value]
        else:
            out[f.name] = value  # a dataclass value took the first branch
    return out
