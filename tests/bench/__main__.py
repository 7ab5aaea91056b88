"""``python -m tests.bench [--quick] [NAME...]``: run every benchmark (or the named ones) in turn.

Each ``tests/bench/bench_<name>.py`` prints its figures beside the comparison it claims and writes
``tests/bench/results/<name>.json``; this runner adds ``results/summary.json`` with each one's exit
status and duration.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench")
    parser.add_argument("--quick", action="store_true", help="shorter runs (fewer samples)")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    args = parser.parse_args()
    available = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    names = args.names or available
    unknown = sorted(set(names) - set(available))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; available: {', '.join(available)}")
    summary = {}
    for name in names:
        print(f"\n=== bench {name}", flush=True)
        cmd = [sys.executable, "-m", f"tests.bench.bench_{name}"] + (
            ["--quick"] if args.quick else []
        )
        t0 = time.monotonic()
        rc = subprocess.run(cmd, cwd=HERE.parent.parent, check=False).returncode
        summary[name] = {"rc": rc, "seconds": round(time.monotonic() - t0, 1)}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n=== summary")
    for name, r in summary.items():
        print(f"  {name:<12} rc={r['rc']}  {r['seconds']:>6.1f}s")
    return max((r["rc"] for r in summary.values()), default=0)


if __name__ == "__main__":
    sys.exit(main())
