"""Facts about systemd units on this host: state, since when, restarts, timers and their last run.

One ``systemctl show`` call reads every unit; a timer's triggered service is read too, so the
report can say what the timer's last run did and when it fires next. Memory per unit is read from
the unit's cgroup (v2 ``memory.current`` or v1 ``memory.usage_in_bytes``), falling back to
systemd's ``MemoryCurrent``.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROPERTIES = (
    "Id",
    "Description",
    "LoadState",
    "ActiveState",
    "SubState",
    "Result",
    "Type",
    "UnitFileState",
    "ActiveEnterTimestamp",
    "InactiveEnterTimestamp",
    "StateChangeTimestamp",
    "NRestarts",
    "ExecMainStatus",
    "ExecMainCode",
    "ExecMainStartTimestamp",
    "ExecMainExitTimestamp",
    "MainPID",
    "ControlGroup",
    "MemoryCurrent",
    "Triggers",
    "NextElapseUSecRealtime",
    "NextElapseUSecMonotonic",
    "LastTriggerUSec",
)
_TIMESTAMPS = {
    "ActiveEnterTimestamp",
    "InactiveEnterTimestamp",
    "StateChangeTimestamp",
    "ExecMainStartTimestamp",
    "ExecMainExitTimestamp",
    "NextElapseUSecRealtime",
    "LastTriggerUSec",
}
_NO_VALUE = {"", "n/a", "[not set]", "0", "infinity", "18446744073709551615"}
CGROUP_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory")
# Where a unit's process list can be read when no memory controller is available to us.
PROCS_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd")
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d|w|month|y)\b")
_SPAN_S = {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600, "d": 86400, "w": 604800,
           "month": 2629800, "y": 31557600}  # fmt: skip


class UnitsError(RuntimeError):
    pass


def parse_timestamp(value: str) -> str | None:
    """ISO-8601 UTC from ``@1715342400`` (``--timestamp=unix``) or ``Mon 2026-05-10 12:00:00 UTC``."""
    value = value.strip()
    if value in _NO_VALUE:
        return None
    if value.startswith("@"):
        try:
            return datetime.fromtimestamp(float(value[1:]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return None
    parts = value.split()
    # "Mon 2026-05-10 12:00:00 UTC": the zone is UTC on the hosts we render (the role sets it).
    if len(parts) >= 3 and parts[-1] in ("UTC", "GMT"):
        try:
            dt = datetime.strptime(f"{parts[-3]} {parts[-2]}", "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return None
        return dt.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


def parse_show(text: str) -> list[dict[str, str]]:
    """Blocks of ``KEY=value`` lines, one per unit, as ``systemctl show`` prints them."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key] = value
    if current:
        blocks.append(current)
    return blocks


def cgroup_memory(control_group: str, roots: Iterable[str] = CGROUP_ROOTS) -> int | None:
    """Bytes charged to a cgroup, or None when no controller file can be read."""
    if not control_group:
        return None
    rel = control_group.lstrip("/")
    for root in roots:
        for name in ("memory.current", "memory.usage_in_bytes"):
            p = Path(root) / rel / name
            try:
                return int(p.read_text().strip())
            except (OSError, ValueError):
                continue
    return None


def parse_timespan(value: str) -> float | None:
    """Seconds from a systemd timespan such as ``1h 2min 3.5s`` (None when empty or 0)."""
    parts = _SPAN.findall(value or "")
    if not parts:
        return None
    return sum(float(n) * _SPAN_S[u] for n, u in parts)


def _boot_time(proc: str = "/proc") -> float | None:
    try:
        return time.time() - float(Path(f"{proc}/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def processes_rss(control_group: str, roots: Iterable[str] = PROCS_ROOTS) -> int | None:
    """Sum of the resident memory of a cgroup's processes (fallback without a memory controller)."""
    if not control_group:
        return None
    rel = control_group.lstrip("/")
    for root in roots:
        try:
            pids = Path(root, rel, "cgroup.procs").read_text().split()
        except OSError:
            continue
        total = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            except (OSError, ValueError):
                continue  # the process ended meanwhile
        return total
    return None


def _shape(raw: dict[str, str]) -> dict[str, Any]:
    unit: dict[str, Any] = {
        "unit": raw.get("Id", ""),
        "description": raw.get("Description", ""),
        "load": raw.get("LoadState", ""),
        "active": raw.get("ActiveState", ""),
        "sub": raw.get("SubState", ""),
        "result": raw.get("Result") or None,
        "type": raw.get("Type") or None,
        "enabled": raw.get("UnitFileState") or None,
    }
    since_key = "ActiveEnterTimestamp" if unit["active"] == "active" else "StateChangeTimestamp"
    unit["since"] = parse_timestamp(raw.get(since_key, ""))
    restarts = raw.get("NRestarts", "")
    unit["restarts"] = int(restarts) if restarts.isdigit() else None
    if unit["unit"].endswith(".service"):
        status = raw.get("ExecMainStatus", "")
        unit["main_status"] = int(status) if status.lstrip("-").isdigit() else None
        unit["main_started"] = parse_timestamp(raw.get("ExecMainStartTimestamp", ""))
        unit["main_exited"] = parse_timestamp(raw.get("ExecMainExitTimestamp", ""))
        cg = raw.get("ControlGroup", "")
        mem, source = cgroup_memory(cg), "cgroup"
        if mem is None and raw.get("MemoryCurrent", "") not in _NO_VALUE:
            try:
                mem, source = int(raw["MemoryCurrent"]), "systemd"
            except ValueError:
                mem = None
        if mem is None and unit["active"] == "active":
            mem, source = processes_rss(cg), "rss"
        unit["memory_bytes"] = mem
        unit["memory_source"] = source if mem is not None else None
    if unit["unit"].endswith(".timer"):
        unit["triggers"] = raw.get("Triggers", "").split() or []
        unit["next_elapse"] = parse_timestamp(raw.get("NextElapseUSecRealtime", ""))
        if unit["next_elapse"] is None:
            # Monotonic timers (OnUnitActiveSec=) report time since boot.
            since_boot = parse_timespan(raw.get("NextElapseUSecMonotonic", ""))
            boot = _boot_time()
            if since_boot and boot is not None:
                unit["next_elapse"] = time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(boot + since_boot)
                )
        unit["last_trigger"] = parse_timestamp(raw.get("LastTriggerUSec", ""))
    return unit


def _show(names: list[str], systemctl: str) -> str:
    base = [systemctl, "show", "--no-pager", "-p", ",".join(PROPERTIES)]
    for extra in (["--timestamp=unix"], []):  # systemd < 251 lacks --timestamp=unix
        try:
            proc = subprocess.run(
                base[:2] + extra + base[2:] + ["--", *names],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except FileNotFoundError:
            raise UnitsError(f"{systemctl}: not found (is this a systemd host?)") from None
        except subprocess.TimeoutExpired:
            raise UnitsError(f"{systemctl} show: no answer within 30 s") from None
        if proc.returncode == 0:
            return proc.stdout
        err = proc.stderr.strip()
        if "timestamp" not in err:
            break
    raise UnitsError(f"{systemctl} show failed: {'; '.join(err.splitlines())[:200]}")


def unit_facts(names: Iterable[str], systemctl: str = "systemctl") -> dict[str, dict[str, Any]]:
    """State of each unit (and of the services its timers trigger), keyed by unit name."""
    wanted = list(dict.fromkeys(names))
    units = {u["unit"]: u for u in map(_shape, parse_show(_show(wanted, systemctl)))}
    extra = [
        t
        for u in units.values()
        for t in u.get("triggers", [])
        if t not in units and t.endswith(".service")
    ]
    if extra:
        units.update({u["unit"]: u for u in map(_shape, parse_show(_show(extra, systemctl)))})
    for u in units.values():
        for t in u.get("triggers", []):
            svc = units.get(t)
            if svc is not None:
                u["last_run"] = {
                    "unit": t,
                    "result": svc.get("result"),
                    "status": svc.get("main_status"),
                    "started": svc.get("main_started"),
                    "exited": svc.get("main_exited"),
                }
    return units
