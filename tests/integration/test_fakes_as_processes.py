"""Every loopback fake runs as a process (``python -m tests.fakes.X``, as ``make demo`` starts
them): it prints a URL that answers, and SIGTERM or SIGINT stops it cleanly (exit 0)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKES = ["anthropic", "google", "heartbeat", "lightsail", "webhook"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("fake", FAKES)
def test_the_fake_prints_a_url_that_answers_and_stops_cleanly(fake: str, signum: int):
    proc = subprocess.Popen(
        [sys.executable, "-m", f"tests.fakes.{fake}", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+\S*", banner)
        assert url, banner
        # Any HTTP answer (a strict fake says 4xx to a bare GET) proves the server is up.
        try:
            with urllib.request.urlopen(url.group(0), timeout=10) as resp:  # noqa: S310 - loopback
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert 200 <= status < 500
        proc.send_signal(signum)
        assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
