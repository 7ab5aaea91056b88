"""Benchmarks of the notification path, printed and written as JSON.

1. footprint: ``jada-agent remediator run`` with two channels (the webhook and an apprise
   ``json://`` URL) idle, then after it delivered N messages through both: RSS of the service
   process. Target ≤ 30 MB both times (apprise and urllib load only in the delivery process).
2. latency: the threshold-th matching line appended → the message received by the loopback
   webhook, over N incidents (p50, max).

``python -m tests.bench.bench_notify [--n N]``; results in tests/bench/results/notify.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.fakes.webhook import WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--idle", type=float, default=15.0)
    args = ap.parse_args(argv)
    with (
        tempfile.TemporaryDirectory() as tmp,
        WebhookReceiver() as hook,
        WebhookReceiver(path="/apprise", accept="apprise") as other,
    ):
        t = Path(tmp)
        log = t / "sync.log"
        log.write_text("")
        (t / "rules.d").mkdir()
        rule = {
            "name": "bench",
            "source": {"file": str(log)},
            "match": r"job (?P<job>\d+) failed",
            "group_by": ["job"],
            "threshold": 1,
            "within": "1h",
            "cooldown": "1h",
        }
        (t / "rules.d" / "50-bench.yml").write_text(yaml.safe_dump({"rules": [rule]}))
        settings = {
            "host_name": "bench",
            "state_dir": str(t / "state"),
            "store": {"path": str(t / "state" / "store.db")},
            "google": {"token_file": str(t / "state" / "token.json")},
            "remediator": {
                "rules_dirs": [str(t / "rules.d")],
                "state_db": str(t / "state" / "remediator.db"),
                "private_data_dir": str(t / "runner"),
                "lock_file": str(t / "run" / "lock"),
                "notify": {
                    "webhook_url": hook.url,
                    "urls": [other.url.replace("http://", "json://")],
                },
            },
        }
        cfg = t / "agent.yml"
        cfg.write_text(yaml.safe_dump(settings))
        err = open(t / "service.log", "wb")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "-c", str(cfg), "remediator", "run"],
            stderr=err,
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 30
            while b"remediator ready" not in (t / "service.log").read_bytes():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the service did not start")
                time.sleep(0.05)
            time.sleep(args.idle)
            idle = rss_kb(proc.pid)
            lat = []
            for i in range(args.n):
                start = time.monotonic()
                with open(log, "a") as f:
                    f.write(f"job {i} failed\n")
                hook.wait_for(i + 1, timeout=30)
                lat.append((time.monotonic() - start) * 1000)
            other.wait_for(args.n, timeout=60)
            time.sleep(2)
            after = rss_kb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
            err.close()
    result = {
        "idle_rss_kb": idle,
        "rss_after_deliveries_kb": after,
        "messages": args.n,
        "latency_ms_p50": round(statistics.median(lat), 1),
        "latency_ms_max": round(max(lat), 1),
        "target_rss_kb": 30 * 1024,
    }
    print(
        f"footprint: idle RSS {idle / 1024:.1f} MB, after {args.n} deliveries on 2 channels"
        f" {after / 1024:.1f} MB (target <= 30 MB)"
    )
    print(
        f"latency: line -> webhook p50 {result['latency_ms_p50']} ms,"
        f" max {result['latency_ms_max']} ms (n={args.n}; one delivery process per batch)"
    )
    out = ROOT / "tests" / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "notify.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
