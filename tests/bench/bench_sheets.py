"""Benchmark: the port-sheet sync with 10,000 task rows, and ``credentials diagnose`` end to end.

Targets (issue 4): a sync of 10,000 task rows makes at most 3 API requests and takes at most
2 s against the fake; ``diagnose`` takes at most 0.5 s when the token endpoint answers promptly.
The ``diagnose`` command in a fresh process is reported too: there Python's start-up and the
imports of google-auth and requests dominate (they vary with the machine's load).

    python -m tests.bench.bench_sheets [--quick]

Prints the figures and writes them to ``tests/bench/results/sheets.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from agent import config
from agent.credentials import diagnose
from agent.sheets import run_sync
from agent.sheets.ports import Listener
from agent.store import open_store
from tests.fakes.google import FakeGoogle

RESULTS = Path(__file__).resolve().parent / "results" / "sheets.json"
SHEET = "bench"


def _settings(tmp: Path, fake: FakeGoogle) -> config.Settings:
    secrets = tmp / "secrets"
    secrets.mkdir(mode=0o700)
    token = fake.issue_refresh_token()
    path = secrets / "google-token.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps(token).encode())
    os.close(fd)
    return config.from_dict(
        {
            "host_name": "bench-host",
            "state_dir": str(tmp),
            "secrets_dir": str(secrets),
            "store": {"path": str(tmp / "store.db")},
            "google": {"token_file": str(path), "token_uri": fake.token_uri},
            "sheets": {"spreadsheet_id": SHEET, "endpoint": fake.sheets_endpoint},
        },
        source=str(tmp / "agent.yml"),
    )


def _ports() -> list[Listener]:
    return [Listener(22, "tcp", "0.0.0.0", "sshd", "ssh.service")]


def bench_sync(rows: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d, FakeGoogle() as fake:
        tmp = Path(d)
        fake.create_spreadsheet(SHEET)
        s = _settings(tmp, fake)
        with open_store(s) as store:
            for i in range(rows):
                store.add_task(f"task {i}: keep the port sheet in sync", priority=i % 5)
        quiet: list[str] = []
        first = run_sync(s, ports=_ports, log=quiet.append)
        changed, unchanged = [], []
        for i in range(repeats):
            with open_store(s) as store:
                store.set_task_status(1 + i, "done")
            r = run_sync(s, ports=_ports, log=quiet.append)
            changed.append((r.seconds, r.requests, r.outcome))
            r = run_sync(s, ports=_ports, log=quiet.append)
            unchanged.append((r.seconds, r.requests, r.outcome))
        assert all(o == "ok" for _, _, o in changed + unchanged), quiet
        task_rows = len(fake.get_values(SHEET, "Tasks")) - 1
        return {
            "task_rows": task_rows,
            "first_run": {"seconds": round(first.seconds, 3), "requests": first.requests},
            "changed": {
                "seconds_median": round(statistics.median(x[0] for x in changed), 3),
                "seconds_max": round(max(x[0] for x in changed), 3),
                "requests_max": max(x[1] for x in changed),
            },
            "unchanged": {
                "seconds_median": round(statistics.median(x[0] for x in unchanged), 3),
                "requests_max": max(x[1] for x in unchanged),
                "writes": 0,
            },
        }


def bench_diagnose(runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d, FakeGoogle() as fake:
        fake.create_spreadsheet(SHEET)
        s = _settings(Path(d), fake)
        diagnose(s)  # imports and the first connection are not what is measured
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            result = diagnose(s)
            times.append(time.perf_counter() - t0)
            assert result.cause == "ok", result.to_json()
        # The command as the playbook runs it: a fresh Python process, imports included.
        cfg = Path(d) / "agent.yml"
        cfg.write_text(yaml.safe_dump(config.to_dict(s)))
        cli = []
        for _ in range(max(3, runs // 5)):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "agent",
                    "-c",
                    str(cfg),
                    "credentials",
                    "diagnose",
                    "--json",
                ],
                capture_output=True,
                check=False,
            )
            cli.append(time.perf_counter() - t0)
            assert proc.returncode == 0, proc.stderr
        return {
            "runs": runs,
            "seconds_median": round(statistics.median(times), 4),
            "seconds_max": round(max(times), 4),
            "command_seconds_median": round(statistics.median(cli), 3),
            "command_seconds_max": round(max(cli), 3),
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = p.parse_args(argv)
    rows = 10_000
    sync = bench_sync(rows, repeats=1 if args.quick else 3)
    diag = bench_diagnose(5 if args.quick else 30)
    checks = {
        "sync_requests_le_3": sync["changed"]["requests_max"] <= 3,
        "sync_seconds_le_2": sync["changed"]["seconds_max"] <= 2.0,
        "diagnose_seconds_le_0_5": diag["seconds_max"] <= 0.5,
    }
    result = {
        "part": "sheets",
        "quick": args.quick,
        "sync": sync,
        "diagnose": diag,
        "targets_met": checks,
    }
    print(f"sync of {sync['task_rows']} task rows:")
    print(
        f"  first run (creates tabs): {sync['first_run']['seconds']:.3f}s, "
        f"{sync['first_run']['requests']} requests"
    )
    print(
        f"  changed data:   median {sync['changed']['seconds_median']:.3f}s, max "
        f"{sync['changed']['seconds_max']:.3f}s, {sync['changed']['requests_max']} requests "
        f"(target <= 3 requests, <= 2 s)"
    )
    print(
        f"  unchanged data: median {sync['unchanged']['seconds_median']:.3f}s, "
        f"{sync['unchanged']['requests_max']} requests, nothing written"
    )
    print(
        f"diagnose end to end: median {diag['seconds_median']:.4f}s, max "
        f"{diag['seconds_max']:.4f}s over {diag['runs']} runs (target <= 0.5 s)"
    )
    print(
        f"  as a command (new process, imports): median {diag['command_seconds_median']:.3f}s, "
        f"max {diag['command_seconds_max']:.3f}s"
    )
    print("targets met:", ", ".join(f"{k}={v}" for k, v in checks.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
