"""Generated systemd journals for the health tests and benchmark.

Writes what ``journalctl -o json`` (or ``-o short-iso``) prints on a jada-agent host: the daemon's
polling and session lines, the remediator's, and the port-sheet-sync timer firing every 30 minutes
with systemd's own lines around each run. ``sync_failing_since`` reproduces the production pattern:
from then on every run fails with the token error, while the daemon stays fine.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HOST = "jada-lightsail"
BOOT = uuid.UUID(int=0xB007).hex
MACHINE = uuid.UUID(int=0x3AC4).hex


@dataclass
class Rec:
    ts: float
    message: str
    ident: str
    pid: int
    unit: str  # _SYSTEMD_UNIT
    manager_unit: str | None = None  # UNIT= on systemd's own lines
    priority: int = 6


def _daemon_noise(rng: random.Random, ts: float, pid: int) -> Rec:
    kind = rng.random()
    if kind < 0.6:
        msg = f"poll: queue depth={rng.randint(0, 9)} ready={rng.randint(0, 3)} running=0"
    elif kind < 0.9:
        msg = f"watchdog ping ok after {rng.randint(1, 900)} ms"
    else:
        msg = f"task {rng.randint(1, 400)} heartbeat seq={rng.randint(1, 10**6)}"
    return Rec(ts, msg, "jada-agent", pid, "jada-agent.service")


def _remediator_noise(rng: random.Random, ts: float, pid: int) -> Rec:
    msg = f"tail /var/log/jada-agent/port-sheet-sync.log offset={rng.randint(0, 10**7)} inode={rng.randint(10**5, 10**6)}"
    return Rec(ts, msg, "jada-remediator", pid, "jada-remediator.service")


def _sync_run(ts: float, failing: bool, historical: bool, rng: random.Random) -> list[Rec]:
    pid = rng.randint(2000, 60000)
    out = [
        Rec(
            ts,
            "Starting port-sheet-sync.service - Port sheet sync...",
            "systemd",
            1,
            "init.scope",
            "port-sheet-sync.service",
        ),
    ]
    if failing:
        err = (
            "[port-sheet] token error: HTTP Error 400: Bad Request"
            if historical
            else "[port-sheet] token error: HTTP Error 400: invalid_grant: Token has been expired or revoked."
        )
        out += [
            Rec(ts + 0.8, err, "port-sheet-sync", pid, "port-sheet-sync.service", priority=3),
            Rec(
                ts + 0.9,
                "port-sheet-sync.service: Main process exited, code=exited, status=2/INVALIDARGUMENT",
                "systemd",
                1,
                "init.scope",
                "port-sheet-sync.service",
                5,
            ),
            Rec(
                ts + 0.9,
                "port-sheet-sync.service: Failed with result 'exit-code'.",
                "systemd",
                1,
                "init.scope",
                "port-sheet-sync.service",
                4,
            ),
            Rec(
                ts + 0.9,
                "Failed to start port-sheet-sync.service - Port sheet sync.",
                "systemd",
                1,
                "init.scope",
                "port-sheet-sync.service",
                3,
            ),
        ]
    else:
        rows = rng.randint(20, 60)
        out += [
            Rec(
                ts + 0.5,
                f"[port-sheet] sync ok rows={rows} requests=1 in 0.42s",
                "port-sheet-sync",
                pid,
                "port-sheet-sync.service",
            ),
            Rec(
                ts + 0.6,
                "port-sheet-sync.service: Deactivated successfully.",
                "systemd",
                1,
                "init.scope",
                "port-sheet-sync.service",
            ),
            Rec(
                ts + 0.6,
                "Finished port-sheet-sync.service - Port sheet sync.",
                "systemd",
                1,
                "init.scope",
                "port-sheet-sync.service",
            ),
        ]
    return out


def records(
    end: datetime,
    days: float = 7,
    sync_failing_since: datetime | None = None,
    historical_message: bool = False,
    noise_per_hour: int = 60,
    daemon_failing_since: datetime | None = None,
    seed: int = 7,
) -> Iterator[Rec]:
    """Records in time order over ``days`` ending at ``end``."""
    rng = random.Random(seed)
    start = end.timestamp() - days * 86400
    fail_at = sync_failing_since.timestamp() if sync_failing_since else None
    daemon_fail_at = daemon_failing_since.timestamp() if daemon_failing_since else None
    t = start - start % 1800  # the timer fires on the half hour
    session = 0
    step = 1800
    while t < end.timestamp():
        batch: list[Rec] = []
        if t >= start:
            failing = fail_at is not None and t >= fail_at
            batch += _sync_run(t, failing, historical_message, rng)
        for _ in range(noise_per_hour // 2):
            nt = t + rng.random() * step
            batch.append(
                _daemon_noise(rng, nt, 811)
                if rng.random() < 0.8
                else _remediator_noise(rng, nt, 812)
            )
        if int(t) % 86400 == 0:  # three sessions right after UTC midnight
            for offset in (0, 120, 300):
                session += 1
                outcome = "max_turns" if session % 3 != 2 else "completed"
                note = (
                    " (turn cap reached: expected, task stays open)"
                    if outcome == "max_turns"
                    else ""
                )
                turns, exit_code = (30, 1) if outcome == "max_turns" else (12, 0)
                batch.append(
                    Rec(
                        t + offset + 60,
                        f"session {session} task {session + 2} ended "
                        f"outcome={outcome} turns={turns} exit={exit_code}{note}",
                        "jada-agent",
                        811,
                        "jada-agent.service",
                    )
                )
        if daemon_fail_at is not None and t >= daemon_fail_at:
            batch.append(
                Rec(
                    t + 5,
                    "jada-agent.service: Main process exited, code=killed, status=6/ABRT",
                    "systemd",
                    1,
                    "init.scope",
                    "jada-agent.service",
                    4,
                )
            )
            batch.append(
                Rec(
                    t + 5,
                    "Traceback (most recent call last): store.db is locked",
                    "jada-agent",
                    811,
                    "jada-agent.service",
                    3,
                )
            )
        batch.sort(key=lambda r: r.ts)
        for r in batch:
            if start <= r.ts < end.timestamp():
                yield r
        t += step


def to_json_line(r: Rec, seq: int) -> str:
    us = int(r.ts * 1e6)
    rec = {
        "__CURSOR": f"s={BOOT};i={seq:x};b={BOOT};m={us:x};t={us:x};x={seq * 7919:x}",
        "__REALTIME_TIMESTAMP": str(us),
        "__MONOTONIC_TIMESTAMP": str(us - 1_700_000_000_000_000),
        "_BOOT_ID": BOOT,
        "_MACHINE_ID": MACHINE,
        "_HOSTNAME": HOST,
        "PRIORITY": str(r.priority),
        "SYSLOG_FACILITY": "3",
        "SYSLOG_IDENTIFIER": r.ident,
        "_PID": str(r.pid),
        "_UID": "0" if r.pid == 1 else "999",
        "_GID": "0" if r.pid == 1 else "999",
        "_COMM": "systemd" if r.pid == 1 else "python3",
        "_EXE": "/usr/lib/systemd/systemd" if r.pid == 1 else "/usr/bin/python3.11",
        "_CMDLINE": "/sbin/init"
        if r.pid == 1
        else f"/opt/jada-agent/venv/bin/python -m agent {r.ident}",
        "_CAP_EFFECTIVE": "1ffffffffff" if r.pid == 1 else "0",
        "_TRANSPORT": "journal" if r.pid == 1 else "stdout",
        "_SYSTEMD_CGROUP": "/init.scope" if r.pid == 1 else f"/system.slice/{r.unit}",
        "_SYSTEMD_UNIT": r.unit,
        "_SYSTEMD_SLICE": "-.slice" if r.pid == 1 else "system.slice",
        "MESSAGE": r.message,
    }
    if r.manager_unit:
        rec["UNIT"] = r.manager_unit
        rec["CODE_FILE"] = "src/core/unit.c"
        rec["CODE_LINE"] = "5687"
        rec["INVOCATION_ID"] = uuid.UUID(int=seq).hex
    else:
        rec["_STREAM_ID"] = uuid.UUID(int=r.pid).hex
    return json.dumps(rec, separators=(",", ":"))


def to_short_iso(r: Rec) -> str:
    stamp = datetime.fromtimestamp(r.ts, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    return f"{stamp} {HOST} {r.ident}[{r.pid}]: {r.message}"


def write(path: Path, fmt: str = "json", **kwargs) -> int:
    """Write a journal to ``path``; returns the number of entries."""
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for n, r in enumerate(records(**kwargs), 1):
            fh.write(to_json_line(r, n) if fmt == "json" else to_short_iso(r))
            fh.write("\n")
    return n
