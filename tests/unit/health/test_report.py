"""The HTML report is self-contained and escapes log lines; the CLI's JSON has the contract keys."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from agent import config
from agent.health.audit import audit_journal
from agent.health.report import render_html, render_text
from tests.unit.health import journalgen

ROOT = Path(__file__).resolve().parents[3]
END = datetime(2026, 5, 20, 14, 15, tzinfo=UTC)


def _hostile_journal(tmp_path: Path) -> Path:
    p = tmp_path / "j.json"
    lines = []
    for i in range(4):
        ts = int((END.timestamp() - 1800 * (4 - i)) * 1e6)
        lines.append(json.dumps({
            "__REALTIME_TIMESTAMP": str(ts), "_SYSTEMD_UNIT": "port-sheet-sync.service",
            "PRIORITY": "3", "MESSAGE": "error: <script>alert(1)</script> & <img src=x>",
        }))  # fmt: skip
    p.write_text("\n".join(lines) + "\n")
    return p


def test_html_escapes_a_log_line_carrying_a_script(tmp_path):
    html = render_html(audit_journal(_hostile_journal(tmp_path), config.Settings()))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(" in html
    assert "<img" not in html


def test_html_is_one_self_contained_file_with_charts(tmp_path):
    p = tmp_path / "j.json"
    journalgen.write(p, end=END, days=3, sync_failing_since=datetime(2026, 5, 19, tzinfo=UTC),
                     noise_per_hour=5)  # fmt: skip
    html = render_html(audit_journal(p, config.Settings()))
    assert html.startswith("<!doctype html>")
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched
    assert html.count("<svg") >= 1
    assert 'class="fail"' in html  # failure marks on the timeline
    assert html.index("degraded") < html.index("<svg")  # the verdict is on top


def test_text_summary_starts_with_the_verdict(tmp_path):
    text = render_text(audit_journal(_hostile_journal(tmp_path), config.Settings()))
    assert text.splitlines()[0].endswith(": DEGRADED")


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "-c", "/dev/null", *args],
        capture_output=True, text=True, cwd=cwd, timeout=60, check=False,
    )  # fmt: skip


def test_cli_from_journal_json_has_the_contract_keys(tmp_path):
    p = tmp_path / "j.json"
    journalgen.write(p, end=END, days=2, sync_failing_since=datetime(2026, 5, 19, tzinfo=UTC),
                     noise_per_hour=5)  # fmt: skip
    r = _cli("health", "--from-journal", str(p), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["verdict"] == "degraded"
    assert isinstance(data["reasons"], list) and data["reasons"]
    rec = data["recurring"][0]
    assert set(rec) >= {"unit", "signature", "count", "first", "last", "cadence_s"}
    assert rec["cadence_s"] == 1800


def test_cli_text_exit_status_follows_the_verdict_and_html_is_written(tmp_path):
    p = tmp_path / "j.json"
    journalgen.write(p, end=END, days=1, sync_failing_since=datetime(2026, 5, 20, tzinfo=UTC),
                     noise_per_hour=5)  # fmt: skip
    assert _cli("health", "--from-journal", str(p)).returncode == 1  # degraded
    out = tmp_path / "r" / "report.html"
    r = _cli("health", "--from-journal", str(p), "--html", str(out))
    assert r.returncode == 0 and out.read_text().startswith("<!doctype html>")


def test_cli_unreadable_journal_exits_64_naming_the_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"__REALTIME_TIMESTAMP":"1"}\nnot a journal line\n')
    r = _cli("health", "--from-journal", str(p), "--json")
    assert r.returncode == 64
    assert "bad.json: line 2" in r.stderr


def test_every_report_template_is_package_data_a_wheel_ships() -> None:
    # The templates are files loaded from the installed package: one that the package-data globs
    # of pyproject.toml miss renders in a checkout and is missing on a host.
    import fnmatch
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = project["tool"]["setuptools"]["package-data"]["agent"]
    package = ROOT / "agent"
    templates = [p.relative_to(package).as_posix() for p in (package / "templates").iterdir()]
    assert templates
    for name in templates:
        assert any(fnmatch.fnmatch(name, g) for g in globs), f"{name} not in package-data {globs}"
    # And the installed package's loader finds each one by name.
    from agent.health.report import templates as env

    assert sorted(env().list_templates()) == sorted(Path(t).name for t in templates)
