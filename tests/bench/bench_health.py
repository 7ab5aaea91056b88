"""Benchmark of agent.health: ``python -m tests.bench.bench_health [--quick]``.

1. ``jada-agent health --from-journal FILE --json`` on a 7-day ``journalctl -o json`` export of
   1,000,000 entries (``--quick``: 100,000): wall time and the child's peak RSS (target ≤ 10 s,
   ≤ 200 MB), plus its CPU time (meaningful when other work shares the cores).
2. ``playbooks/health.yml`` over 1 and over 4 hosts with ``--forks 4`` (target: 4 hosts ≤ 1.5×
   one host), Lightsail metrics from the fake API. Hosts are sandbox hosts (real systemd, SSH,
   a live audit) when this machine can run them (``tests/sandbox``); otherwise local-connection
   hosts auditing a saved journal (said so in the output). Booting and preparing the hosts is
   not timed. One untimed run over the 4 hosts first (the hosts' bytecode caches, as a deployed
   host has them from its install); then every timed run opens its own SSH connections, as a
   periodic audit does ("cold": the SSH masters a previous run left are closed first), and the
   same runs again reusing them ("warm", ControlPersist) are reported beside. 1 and 4 hosts
   alternate; the fastest of each is kept.

Figures are printed and written to ``tests/bench/results/health.json`` (the parts run replace
theirs; the others are kept). ``--readme`` (or ``--readme-only``, without running) rewrites
README's health.yml row from it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
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


def _run_measured(
    argv: list[str], env: dict[str, str] | None = None
) -> tuple[float, float, int, float]:
    """(wall seconds, peak RSS in MB summed over the process tree, exit status, CPU seconds).

    The CPU time is the child's own plus its waited-for children (user + system): meaningful on a
    busy machine where the wall time also counts waiting for a core. The RSS is sampled every
    20 ms over the child and its workers together.
    """
    import threading

    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += p.memory_info().rss
            except psutil.NoSuchProcess:
                return
            peak[0] = max(peak[0], total)
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss_mb = max(peak[0] / 2**20, usage.ru_maxrss / 1024)
    return wall, rss_mb, proc.returncode, usage.ru_utime + usage.ru_stime


def _load() -> float:
    return round(os.getloadavg()[0], 2)


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
    load = _load()
    wall, rss, rc, cpu = _run_measured(argv)
    if rc != 0:
        raise SystemExit(f"health --from-journal exited {rc}")
    out = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "entries": n,
        "file_mb": round(size_mb, 1),
        "generate_s": round(gen_s, 1),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "load_before": load,
        "peak_rss_mb": round(rss, 1),
        "entries_per_s": round(n / wall),
        "target": "<= 10 s and <= 200 MB for 1,000,000 entries",
    }
    print(f"health --from-journal: {n:,} entries ({size_mb:.0f} MB) in {wall:.2f} s wall, "
          f"{cpu:.2f} s CPU, peak RSS {rss:.0f} MB ({n / wall:,.0f} entries/s; load {load})")  # fmt: skip
    path.unlink()
    return out


def _sandbox_hosts(count: int, ca: str | None):
    """Boot ``count`` sandbox hosts prepared as jada-agent hosts (None when sandboxes can't run)."""
    try:
        from tests.sandbox import harness
    except ImportError:
        return None
    if harness.preflight() is not None:
        return None
    from concurrent.futures import ThreadPoolExecutor

    from tests.integration.aws import sandbox_host

    names = [f"bh{i}-{os.getpid() % 10000}" for i in range(count)]
    with ThreadPoolExecutor(max_workers=count) as pool:
        machines = list(pool.map(harness.up, names))
    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(lambda m: sandbox_host.prepare(m, ca), machines))
    sandbox_host.wait_for_failures(machines[-1], 3)
    return machines


def _hosts_cpu(machines: list | None) -> float | None:
    """CPU seconds the sandbox hosts have used so far (their machine cgroups), or None."""
    if not machines:
        return None
    from tests.sandbox import harness

    total = 0.0
    for m in machines:
        for root in harness.CGROUP_ROOTS:
            stat = root / f"machine-{m.name}" / "cpu.stat"
            with contextlib.suppress(OSError, ValueError):
                fields = dict(line.split() for line in stat.read_text().splitlines())
                total += int(fields["usage_usec"]) / 1e6
                break
    return total


def _close_ssh_masters(machines: list | None) -> None:
    """Close the SSH master connections (ControlPersist) an earlier run left to the hosts."""
    for m in machines or []:
        control = shlex.split(m.ssh_common_args)
        path = next(o for o in control if o.startswith("ControlPath="))
        subprocess.run(["ssh", "-o", path, "-O", "exit", "-l", m.user, m.address],
                       capture_output=True, timeout=30, check=False)  # fmt: skip


def bench_playbook(workdir: Path, repeats: int, use_sandbox: bool) -> dict:
    from tests.fakes.lightsail import FakeLightsail

    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               PYTHONPATH=str(ROOT), JADA_AGENT_CONFIG="/dev/null",
               AWS_ACCESS_KEY_ID="AKIDBENCH", AWS_SECRET_ACCESS_KEY="bench-not-secret",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")  # fmt: skip
    # (ssh mode, hosts) -> figures of each run
    timings: dict[tuple[str, int], list[float]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}
    host_cpu: dict[tuple[str, int], list[float]] = {}
    machines = None
    started, load_before = datetime.now(UTC).isoformat(timespec="seconds"), _load()
    with FakeLightsail() as fake:
        env["AWS_ENDPOINT_URL_LIGHTSAIL"] = fake.url
        try:
            if use_sandbox:
                machines = _sandbox_hosts(4, None)
            if machines:
                from tests.integration.aws.sandbox_host import HEALTH_COMMAND

                mode = "sandbox hosts (systemd-nspawn, SSH), live audit of 1 day, --no-credentials"
                hostvars = {
                    f"host-{i}": {"ansible_host": m.address, "ansible_port": m.port,
                                  "ansible_user": m.user,
                                  "ansible_ssh_private_key_file": m.identity_file,
                                  "ansible_ssh_common_args": m.ssh_common_args,
                                  "ansible_python_interpreter": "/usr/bin/python3",
                                  "health_extra_args": ["--no-credentials"]}
                    for i, m in enumerate(machines)
                }  # fmt: skip
                extra_base = {"health_command": HEALTH_COMMAND, "health_days": 1}
            else:
                journal = workdir / "host-journal.json"
                journalgen.write(journal, end=END, days=7, sync_failing_since=END - timedelta(days=6),
                                 noise_per_hour=20)  # fmt: skip
                mode = "local-connection hosts (no sandbox here): controller-side parallelism only"
                hostvars = {
                    f"host-{i}": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                  "health_extra_args": ["--from-journal", str(journal)]}
                    for i in range(4)
                }  # fmt: skip
                extra_base = {
                    "health_command": [sys.executable, "-m", "agent"],
                    "health_become": False,
                }
            for i, hv in enumerate(hostvars.values()):
                fake.add_instance(f"jada-{i}")
                hv |= {"lightsail_instance_name": f"jada-{i}", "lightsail_region": "us-east-1"}

            def run(hosts: int) -> tuple[float, float, float | None]:
                names = list(hostvars)[:hosts]
                inv_file = workdir / f"inv-{hosts}.yml"
                inv_file.write_text(
                    yaml.safe_dump({"all": {"hosts": {n: hostvars[n] for n in names}}})
                )
                extra = extra_base | {"health_reports_dir": str(workdir / f"reports-{hosts}")}
                argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv_file),
                        "--forks", "4", "playbooks/health.yml", "-e", json.dumps(extra)]  # fmt: skip
                before = _hosts_cpu(machines and machines[:hosts])
                wall, _, rc, cpu_s = _run_measured(argv, env)
                if rc != 0:
                    raise SystemExit(f"health.yml over {hosts} hosts exited {rc}")
                after = _hosts_cpu(machines and machines[:hosts])
                used = after - before if before is not None and after is not None else None
                return wall, cpu_s, used

            run(4)  # untimed: every host has run the audit once (bytecode caches written)
            for ssh in ("cold", "warm") if machines else ("local",):
                for hosts in (1, 4) * repeats:
                    if ssh == "cold":
                        _close_ssh_masters(machines)
                    # "warm": the masters the previous run left (ControlPersist 60 s) are reused
                    wall, cpu_s, used = run(hosts)
                    timings.setdefault((ssh, hosts), []).append(wall)
                    cpu.setdefault((ssh, hosts), []).append(cpu_s)
                    if used is not None:
                        host_cpu.setdefault((ssh, hosts), []).append(used)
        finally:
            if machines:
                from tests.sandbox import harness

                for m in machines:
                    harness.down(m.name)
    modes = {}
    for ssh in dict.fromkeys(k[0] for k in timings):
        one, four = min(timings[ssh, 1]), min(timings[ssh, 4])
        figures = {
            "one_host_s": round(one, 2),
            "four_hosts_s": round(four, 2),
            "ratio": round(four / one, 2),
            "controller_cpu_s": {"1": round(min(cpu[ssh, 1]), 2), "4": round(min(cpu[ssh, 4]), 2)},
            # CPU the sandbox hosts spent (their cgroups, the sped-up sync timer included), on the
            # same cores as the controller: on a real fleet each host has its own.
            "hosts_cpu_s": {
                str(n): round(min(host_cpu[ssh, n]), 2) for n in (1, 4) if host_cpu.get((ssh, n))
            },
            "runs": {str(n): [round(v, 2) for v in timings[ssh, n]] for n in (1, 4)},
        }
        modes[ssh] = figures
        hosts_note = (
            f"; the sandbox hosts' own CPU {figures['hosts_cpu_s']['1']:.2f} s vs "
            f"{figures['hosts_cpu_s']['4']:.2f} s"
            if len(figures["hosts_cpu_s"]) == 2
            else ""
        )
        print(f"health.yml over {mode}, SSH {ssh}: 1 host {one:.2f} s, 4 hosts {four:.2f} s, "
              f"ratio {four / one:.2f} (target <= 1.5); controller CPU {min(cpu[ssh, 1]):.2f} s vs "
              f"{min(cpu[ssh, 4]):.2f} s{hosts_note}; load {_load()}")  # fmt: skip
    headline = modes.get("cold") or modes["local"]
    return {
        "when": started,
        "mode": mode,
        # The headline: every run opens its SSH connections (a periodic audit); "warm" beside.
        **headline,
        "ssh": modes,
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": _load(),
        "target": "4 hosts <= 1.5 x 1 host (forks 4)",
    }


README_ROW = "| `playbooks/health.yml`, 1 vs 4 "


def readme_row(pb: dict) -> str:
    """README's health.yml row, from the JSON this bench wrote."""
    when = datetime.fromisoformat(pb["when"]).strftime("%Y-%m-%d %H:%M UTC")
    load = f"load {pb['load_before']}–{pb['load_after']}"
    if "cold" not in pb.get("ssh", {}):
        return (f"{README_ROW}local-connection hosts (no sandbox; `python -m tests.bench.bench_health "
                f"--skip-journal`, {when}, {load}) | {pb['one_host_s']} s vs {pb['four_hosts_s']} s "
                f"({pb['ratio']}×) | 4 × {pb['one_host_s']} s serially |")  # fmt: skip
    cold, warm = pb["ssh"]["cold"], pb["ssh"]["warm"]
    ctl, hosts = cold["controller_cpu_s"], cold.get("hosts_cpu_s", {})
    host_cpu = f", the sandbox hosts {hosts['1']} vs {hosts['4']} s" if len(hosts) == 2 else ""
    return (
        f"{README_ROW}sandbox hosts, every run opening its SSH connections (`python -m "
        f"tests.bench.bench_health --skip-journal`, {when}, {load}) | {cold['one_host_s']} s vs "
        f"{cold['four_hosts_s']} s (**{cold['ratio']}×**); reusing the SSH connections "
        f"{warm['one_host_s']} s vs {warm['four_hosts_s']} s ({warm['ratio']}×). CPU: controller "
        f"{ctl['1']} vs {ctl['4']} s{host_cpu}, all on the same {pb['cpus']} shared cores | "
        f"4 × {cold['one_host_s']} s serially |"
    )


def update_readme(results: dict) -> None:
    """Replace README's health.yml row with the one from ``results``."""
    readme = ROOT / "README.md"
    lines = readme.read_text().split("\n")
    at = [i for i, line in enumerate(lines) if line.startswith(README_ROW)]
    if len(at) != 1:
        raise SystemExit(f"README.md: expected one row starting {README_ROW!r}, found {len(at)}")
    lines[at[0]] = readme_row(results["playbook"])
    readme.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="100,000 entries, one playbook run each"
    )
    parser.add_argument("--skip-playbook", action="store_true")
    parser.add_argument("--no-sandbox", action="store_true", help="local-connection hosts only")
    parser.add_argument("--skip-journal", action="store_true")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="playbook runs per size and SSH mode (min kept; default 3)",
    )
    parser.add_argument("--readme", action="store_true", help="rewrite README's row from the JSON")
    parser.add_argument(
        "--readme-only", action="store_true", help="rewrite README's row from the last JSON"
    )
    args = parser.parse_args(argv)
    if args.readme_only:
        update_readme(json.loads(RESULTS.read_text()))
        print(f"README.md: the health.yml row rewritten from {RESULTS.relative_to(ROOT)}")
        return 0
    results: dict = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="bench-health-") as tmp:
        work = Path(tmp)
        if not args.skip_journal:
            results["from_journal"] = bench_journal(100_000 if args.quick else 1_000_000, work)
        if not args.skip_playbook:
            results["playbook"] = bench_playbook(
                work,
                repeats=args.repeats or (1 if args.quick else 3),
                use_sandbox=not args.no_sandbox,
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError, ValueError):  # keep the parts this run skipped
        results = json.loads(RESULTS.read_text()) | results
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")
    if args.readme and "playbook" in results:
        update_readme(results)
        print("README.md: the health.yml row rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
