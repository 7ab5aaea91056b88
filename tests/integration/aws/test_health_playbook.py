"""playbooks/health.yml over two hosts (local connection) with metrics from the fake Lightsail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from tests.unit.health import journalgen

ROOT = Path(__file__).resolve().parents[3]


def test_health_playbook_writes_host_reports_and_a_fleet_summary_worst_first_with_failed_hosts(
    fake_lightsail, tmp_path
):
    end = datetime.now(UTC).replace(microsecond=0, second=0, minute=15)
    degraded = tmp_path / "a.json"
    journalgen.write(
        degraded, end=end, days=2, sync_failing_since=end - timedelta(days=1), noise_per_hour=10
    )
    healthy = tmp_path / "b.json"
    journalgen.write(healthy, end=end, days=2, noise_per_hour=10)
    fake_lightsail.add_instance("jada-a")
    fake_lightsail.add_instance("jada-b")
    fake_lightsail.spike("jada-b", "StatusCheckFailed", (end - timedelta(hours=5)).timestamp(), 1)

    def host(instance: str, journal: Path) -> dict:
        return {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "lightsail_instance_name": instance,
            "lightsail_region": "us-east-1",
            "health_extra_args": ["--from-journal", str(journal)],
        }

    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "host-b": host("jada-b", healthy),
                        "host-a": host("jada-a", degraded),
                        "host-c": host("jada-c", tmp_path / "missing.json"),  # its audit fails
                    }
                }
            }
        )
    )
    reports = tmp_path / "reports"
    (reports / "hosts").mkdir(parents=True)
    stale = {"host": "old-host", "verdict": "failing", "reasons": ["stale"], "window": {}}
    (reports / "hosts" / "old-host.json").write_text(json.dumps(stale))  # an earlier run's
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        JADA_AGENT_CONFIG="/dev/null",
        PYTHONPATH=str(ROOT),  # the "hosts" run this checkout's agent package
    )
    extra = {
        "health_command": [sys.executable, "-m", "agent"],
        "health_become": False,
        "health_reports_dir": str(reports),
        "health_days": 2,
    }
    r = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "-f", "4",
         "playbooks/health.yml", "-e", json.dumps(extra)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=180, check=False,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout[-3000:] + r.stderr[-2000:]  # host-c failed its audit
    fleet = json.loads((reports / "fleet.json").read_text())
    assert [(h["host"], h["verdict"]) for h in fleet["hosts"]] == [
        ("host-a", "degraded"), ("host-c", "unknown"), ("host-b", "healthy"),
    ]  # fmt: skip
    assert fleet["hosts"][1]["reasons"] == [
        "not audited: the host failed or was unreachable in this run"
    ]
    assert fleet["worst"] == "degraded"
    a = json.loads((reports / "hosts" / "host-a.json").read_text())
    assert set(a["metrics"]["series"]) >= {"CPUUtilization", "BurstCapacityPercentage"}
    assert any("none coincides" in line for line in a["metrics"]["lineup"])
    b = json.loads((reports / "hosts" / "host-b.json").read_text())
    assert any(x["metric"] == "StatusCheckFailed" for x in b["metrics"]["anomalies"])
    html = (reports / "hosts" / "host-a.html").read_text()
    assert (
        html.startswith("<!doctype html>") and "Lightsail metrics" in html and "<polyline" in html
    )
    assert json.loads((reports / "raw" / "host-a.json").read_text())["verdict"] == "degraded"
    assert "DEGRADED  host-a: port-sheet-sync.service failing" in r.stdout


def test_health_playbook_passes_the_command_and_arguments_as_words_never_as_shell_code(tmp_path):
    # The audit runs through `raw` (a shell command line): every word is quoted, so a journal
    # path with spaces, quotes and `$(...)`, and a wrapper command full of shell syntax, arrive
    # as the same words `command`'s argv would have passed.
    end = datetime.now(UTC).replace(microsecond=0, second=0, minute=15)
    planted = tmp_path / "planted"
    odd_dir = tmp_path / 'it\'s a $(touch "$PLANT") dir; `touch "$PLANT"` | x'  # no "/" in a name
    odd_dir.mkdir()
    journal = odd_dir / "journal.json"
    journalgen.write(
        journal, end=end, days=1, sync_failing_since=end - timedelta(hours=6), noise_per_hour=5
    )
    inventory = tmp_path / "hosts.yml"
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "health_extra_args": ["--from-journal", str(journal)],
    }  # not a Lightsail instance
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"host-a": host}}}))
    reports = tmp_path / "reports"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               JADA_AGENT_CONFIG="/dev/null", PYTHONPATH=str(ROOT), PLANT=str(planted))  # fmt: skip
    # A wrapper that warns on stderr, then runs the agent with the words it was given.
    wrapper = ["sh", "-c", 'echo "warning: $0; ok" >&2; exec "$0" "$@"', sys.executable]
    extra = {"health_command": [*wrapper, "-m", "agent"], "health_become": False,
             "health_reports_dir": str(reports), "health_days": 1}  # fmt: skip
    r = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
         "playbooks/health.yml", "-e", json.dumps(extra)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=180, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert not planted.exists()
    raw = json.loads((reports / "raw" / "host-a.json").read_text())
    assert (raw["source"], raw["verdict"]) == (str(journal), "degraded")
    assert "metrics" not in json.loads((reports / "hosts" / "host-a.json").read_text())
