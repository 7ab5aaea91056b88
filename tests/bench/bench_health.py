"""Benchmark of agent.health: ``python -m tests.bench.bench_health [--quick]``.

1. ``jada-agent health --from-journal FILE --json`` on a 7-day ``journalctl -o json`` export of
   1,000,000 entries (``--quick``: 100,000): wall time and the child's peak RSS (target ≤ 10 s,
   ≤ 200 MB).
2. ``playbooks/health.yml`` over 1 and over 4 hosts with ``--forks 4`` (target: 4 hosts ≤ 1.5×
   one host), Lightsail metrics from the fake API. Hosts are sandbox hosts when the sandbox
   harness is available (``tests/sandbox``); otherwise local-connection hosts on this machine,
   which measures Ansible's parallelism but not remote execution (said so in the output).

Figures are printed and written to ``tests/bench/results/health.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from tests.unit.health import journalgen

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "bench" / "results" / "health.json"
END = datetime(2026, 5, 20, 14, 15, tzinfo=UTC)


def _run_measured(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit status) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode


def bench_journal(entries: int, workdir: Path) -> dict:
    per_hour = max(1, round(entries / (7 * 24))) - 8  # the sync and sessions add ~8 an hour
    path = workdir / f"journal-{entries}.json"
    t0 = time.perf_counter()
    n = journalgen.write(
        path, end=END, days=7, sync_failing_since=END - timedelta(days=7) + timedelta(minutes=15),
        noise_per_hour=per_hour,
    )  # fmt: skip
    gen_s = time.perf_counter() - t0
    size_mb = path.stat().st_size / 1e6
    argv = [
        sys.executable,
        "-m",
        "agent",
        "-c",
        "/dev/null",
        "health",
        "--from-journal",
        str(path),
        "--json",
    ]
    wall, rss, rc = _run_measured(argv)
    if rc != 0:
        raise SystemExit(f"health --from-journal exited {rc}")
    out = {
        "entries": n,
        "file_mb": round(size_mb, 1),
        "generate_s": round(gen_s, 1),
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(rss, 1),
        "entries_per_s": round(n / wall),
        "target": "<= 10 s and <= 200 MB for 1,000,000 entries",
    }
    print(f"health --from-journal: {n:,} entries ({size_mb:.0f} MB) in {wall:.2f} s, "
          f"peak RSS {rss:.0f} MB ({n / wall:,.0f} entries/s)")  # fmt: skip
    path.unlink()
    return out


def bench_playbook(workdir: Path, repeats: int) -> dict:
    from tests.fakes.lightsail import FakeLightsail

    journal = workdir / "host-journal.json"
    journalgen.write(
        journal, end=END, days=7, sync_failing_since=END - timedelta(days=6), noise_per_hour=20
    )
    mode = "local-connection hosts (sandbox harness not available)"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               PYTHONPATH=str(ROOT), JADA_AGENT_CONFIG="/dev/null",
               AWS_ACCESS_KEY_ID="AKIDBENCH", AWS_SECRET_ACCESS_KEY="bench-not-secret",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")  # fmt: skip
    timings: dict[int, list[float]] = {1: [], 4: []}
    with FakeLightsail() as fake:
        env["AWS_ENDPOINT_URL_LIGHTSAIL"] = fake.url
        for i in range(4):
            fake.add_instance(f"jada-{i}")
        for hosts in (1, 4, 1, 4)[: 2 * repeats] if repeats > 1 else (1, 4):
            inv = {"all": {"hosts": {
                f"host-{i}": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                              "lightsail_instance_name": f"jada-{i}", "lightsail_region": "us-east-1",
                              "health_extra_args": ["--from-journal", str(journal)]}
                for i in range(hosts)}}}  # fmt: skip
            inv_file = workdir / f"inv-{hosts}.yml"
            inv_file.write_text(yaml.safe_dump(inv))
            extra = {"health_command": [sys.executable, "-m", "agent"], "health_become": False,
                     "health_reports_dir": str(workdir / f"reports-{hosts}")}  # fmt: skip
            argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv_file),
                    "--forks", "4", "playbooks/health.yml", "-e", json.dumps(extra)]  # fmt: skip
            wall, _, rc = _run_measured(argv, env)
            if rc != 0:
                raise SystemExit(f"health.yml over {hosts} hosts exited {rc}")
            timings[hosts].append(wall)
    one, four = min(timings[1]), min(timings[4])
    print(f"health.yml ({mode}): 1 host {one:.2f} s, 4 hosts {four:.2f} s, ratio {four / one:.2f} "
          "(target <= 1.5)")  # fmt: skip
    return {
        "mode": mode,
        "one_host_s": round(one, 2),
        "four_hosts_s": round(four, 2),
        "ratio": round(four / one, 2),
        "runs": {str(k): [round(v, 2) for v in vs] for k, vs in timings.items()},
        "target": "4 hosts <= 1.5 x 1 host (forks 4)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="100,000 entries, one playbook run each"
    )
    parser.add_argument("--skip-playbook", action="store_true")
    args = parser.parse_args(argv)
    results: dict = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="bench-health-") as tmp:
        work = Path(tmp)
        results["from_journal"] = bench_journal(100_000 if args.quick else 1_000_000, work)
        if not args.skip_playbook:
            results["playbook"] = bench_playbook(work, repeats=1 if args.quick else 2)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
