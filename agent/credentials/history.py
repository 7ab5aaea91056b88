"""The credential history file: when each token was installed, first failed, and why.

It lives next to the token (``<token stem>.history.json``, 0600) and holds no secret: a token is
named by a short SHA-256 fingerprint. ``install``, ``diagnose`` and ``sheet-sync`` write it;
``forecast`` and ``diagnose`` read it to tell how long tokens live here (7 days after issue
means the OAuth app is in Testing publishing status). Writes are best effort — a sync must not
fail because its history could not be saved — and the file is bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.config import Settings

MAX_TOKENS = 50
# Google's Testing-mode refresh tokens live 7 days; a death within this window counts as one.
TESTING_LIFETIME = (timedelta(days=6, hours=12), timedelta(days=7, hours=18))
USED_WRITE_EVERY = timedelta(hours=1)


def fingerprint(info: dict[str, Any]) -> str:
    """A short, non-reversible name for a credential (never any part of the secret itself)."""
    if info.get("type") == "service_account":
        basis = f"sa:{info.get('client_email')}:{info.get('private_key_id')}"
    else:
        basis = f"user:{info.get('client_id')}:{info.get('refresh_token')}"
    return "fp-" + hashlib.sha256(basis.encode()).hexdigest()[:12]


def history_path(settings: Settings) -> Path:
    if settings.google.history_file:
        return Path(settings.google.history_file)
    token = Path(settings.google.token_file)
    return token.with_name(token.stem + ".history.json")


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class History:
    """``{"tokens": {fingerprint: {installed, source, first_failure, cause, last_ok}}}``."""

    def __init__(self, path: Path, service_user: str = ""):
        self.path = path
        self.service_user = service_user
        self.data: dict[str, Any] = {"tokens": {}}
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict) and isinstance(loaded.get("tokens"), dict):
                self.data = loaded
        except (OSError, ValueError):
            pass  # absent or damaged history: start afresh rather than fail the caller

    @classmethod
    def for_settings(cls, settings: Settings) -> History:
        return cls(history_path(settings), settings.service_user)

    def _entry(self, fp: str) -> dict[str, Any]:
        return self.data["tokens"].setdefault(fp, {})

    def installed(self, fp: str, source: str, now: datetime) -> None:
        e = self._entry(fp)
        e.setdefault("installed", _iso(now))
        e["source"] = source
        self.save()

    def seen(self, fp: str, first_seen: datetime) -> None:
        """A token found in place that no install recorded (the file mtime stands in)."""
        if fp not in self.data["tokens"]:
            self._entry(fp)["installed"] = _iso(first_seen)
            self._entry(fp)["source"] = "found"
            self.save()

    def failed(self, fp: str, cause: str, now: datetime) -> None:
        e = self._entry(fp)
        if "first_failure" not in e:
            e["first_failure"] = _iso(now)
            e["cause"] = cause
            self.save()

    def used(self, fp: str, now: datetime) -> None:
        e = self._entry(fp)
        last = _parse(e.get("last_ok"))
        if "first_failure" in e:
            # It works again (a rotated client was put back, a fix was made): the failure is
            # over and kept as the last one, so the forecast no longer says "already failing".
            e["last_failure"] = {"at": e.pop("first_failure"), "cause": e.pop("cause", None)}
            e["last_ok"] = _iso(now)
            self.save()
        elif last is None or now - last >= USED_WRITE_EVERY:
            e["last_ok"] = _iso(now)
            self.save()

    def get(self, fp: str) -> dict[str, Any]:
        return dict(self.data["tokens"].get(fp, {}))

    def lifetimes(self) -> list[timedelta]:
        """Issue-to-death times of tokens that died revoked or expired."""
        out = []
        for e in self.data["tokens"].values():
            a, b = _parse(e.get("installed")), _parse(e.get("first_failure"))
            if a and b and e.get("cause") == "revoked_or_expired" and b > a:
                out.append(b - a)
        return out

    def testing_mode_suspected(self) -> bool:
        lo, hi = TESTING_LIFETIME
        return any(lo <= d <= hi for d in self.lifetimes())

    def save(self) -> None:
        tokens = self.data["tokens"]
        if len(tokens) > MAX_TOKENS:
            ordered = sorted(tokens.items(), key=lambda kv: kv[1].get("installed", ""))
            self.data["tokens"] = dict(ordered[-MAX_TOKENS:])
        text = json.dumps(self.data, indent=1, sort_keys=True) + "\n"
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            if os.geteuid() == 0 and self.service_user:
                from agent.credentials.files import expected_owner

                uid, gid, _ = expected_owner(self.service_user)
                os.chown(tmp, uid, gid)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
