"""Facts about systemd units on this host: state, since when, restarts, timers and their last run.

One ``systemctl show`` call reads every unit; a timer's triggered service is read too, so the
report can say what the timer's last run did and when it fires next. Memory per unit is read from
the unit's cgroup (v2 ``memory.current`` or v1 ``memory.usage_in_bytes``), falling back to
systemd's ``MemoryCurrent``.
"""

from __future__ import annotations

import subprocess
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
        mem = cgroup_memory(raw.get("ControlGroup", ""))
        if mem is None and raw.get("MemoryCurrent", "") not in _NO_VALUE:
            try:
                mem = int(raw["MemoryCurrent"])
            except ValueError:
                mem = None
        unit["memory_bytes"] = mem
    if unit["unit"].endswith(".timer"):
        unit["triggers"] = raw.get("Triggers", "").split() or []
        unit["next_elapse"] = parse_timestamp(raw.get("NextElapseUSecRealtime", ""))
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
    raise UnitsError(f"{systemctl} show failed: {err[:200]}")


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
