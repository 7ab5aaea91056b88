"""Benchmark: deploying a host with ``site.yml``.

Figures: the controller's wheelhouse build from nothing and from its cache (the jada_agent
role's own tasks, in a private cache directory), then ``site.yml`` on a fresh sandbox host with
that cache warm (the host's side: unpack, virtualenv, settings, units), the second run
(idempotent: nothing changes) and ``--check --diff`` on the converged host.

    python -m tests.bench.bench_deploy [--quick]      # --quick: no cold wheelhouse build

Prints the figures and writes them to ``tests/bench/results/deploy.json``. Needs root and the
sandbox host (tests/sandbox).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from tests.e2e.deploy import playbook, write_inventory
from tests.sandbox import harness

RESULTS = Path(__file__).resolve().parent / "results" / "deploy.json"

WHEELHOUSE_PLAY = """\
- name: Build the wheelhouse as the jada_agent role does
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Run the role's wheelhouse tasks
      ansible.builtin.include_role:
        name: jada_agent
        tasks_from: wheelhouse.yml
"""


def _wheelhouse(tmp: Path, cache: Path) -> float:
    play = tmp / "wheelhouse.yml"
    play.write_text(WHEELHOUSE_PLAY)
    inv = tmp / "localhost.ini"
    inv.write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    run = playbook(inv, play, "-e", f"jada_agent_wheelhouse_cache_dir={cache}")
    if run.rc != 0:
        raise SystemExit(f"wheelhouse build failed:\n{run.tail()}")
    return run.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_deploy")
    parser.add_argument("--quick", action="store_true", help="skip the cold wheelhouse build")
    args = parser.parse_args(argv)
    reason = harness.preflight()
    if reason:
        print(f"bench_deploy: sandbox hosts unavailable: {reason}")
        return 1
    harness.build()
    # A shared 2-core machine: the load average says how much of a figure is someone else's.
    result: dict[str, object] = {"loadavg_1m_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as d:
        tmp = Path(d)
        cache_vars: list[str] = []
        if not args.quick:
            cache = tmp / "cache"
            cache_vars = ["-e", f"jada_agent_wheelhouse_cache_dir={cache}"]
            result["wheelhouse_cold_s"] = round(_wheelhouse(tmp, cache), 1)
            result["wheelhouse_cached_s"] = round(_wheelhouse(tmp, cache), 1)
            tarballs = list(cache.glob("*.tar"))
            result["wheelhouse_mb"] = round(sum(t.stat().st_size for t in tarballs) / 1e6, 1)
        name = f"bench-deploy-{Path(d).name[-6:].lower()}".replace("_", "-")
        machine = harness.up(name)
        try:
            inv = write_inventory([machine], tmp / "inventory.json")
            # With the cache warmed above, the fresh run measures the host's side only.
            runs = {
                "site_fresh": playbook(inv, "site.yml", *cache_vars),
                "site_rerun": playbook(inv, "site.yml", *cache_vars),
                "site_check_diff": playbook(inv, "site.yml", "--check", "--diff", *cache_vars),
            }
        finally:
            harness.down(name)
    for key, run in runs.items():
        if run.rc != 0:
            print(run.tail())
            raise SystemExit(f"{key} failed (rc={run.rc})")
        result[f"{key}_s"] = round(run.seconds, 1)
        result[f"{key}_changed"] = run.changed()
    result["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print("deploy figures:")
    for key, value in result.items():
        print(f"  {key:<24} {value}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
