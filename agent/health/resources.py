"""Resources of this host: memory, disk, load and uptime (the per-unit memory is in ``units``)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    """``/proc/meminfo`` in bytes."""
    out: dict[str, int] = {}
    for line in Path(path).read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def resources(paths: Iterable[str] = ("/",), proc: str = "/proc") -> dict[str, Any]:
    """A snapshot: memory total/used/available, disk per path, load averages, uptime."""
    mem = meminfo(f"{proc}/meminfo")
    total = mem.get("MemTotal", 0)
    available = mem.get("MemAvailable", mem.get("MemFree", 0))
    disks = []
    seen: set[int] = set()
    for p in paths:
        try:
            st = os.stat(p)
            if st.st_dev in seen:
                continue  # the same filesystem as an earlier path
            seen.add(st.st_dev)
            du = shutil.disk_usage(p)
        except OSError:
            continue
        disks.append(
            {
                "path": p,
                "total_bytes": du.total,
                "used_bytes": du.used,
                "free_bytes": du.free,
                "used_pct": round(100 * du.used / du.total, 1) if du.total else None,
            }
        )
    try:
        uptime_s = float(Path(f"{proc}/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        uptime_s = None
    load = os.getloadavg()
    return {
        "memory": {
            "total_bytes": total,
            "used_bytes": total - available,
            "available_bytes": available,
            "used_pct": round(100 * (total - available) / total, 1) if total else None,
            "swap_total_bytes": mem.get("SwapTotal", 0),
            "swap_used_bytes": mem.get("SwapTotal", 0) - mem.get("SwapFree", 0),
        },
        "disks": disks,
        "load": {"1m": load[0], "5m": load[1], "15m": load[2], "cpus": os.cpu_count() or 1},
        "uptime_s": uptime_s,
        "booted": (
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - uptime_s))
            if uptime_s is not None
            else None
        ),
    }
