"""The project's code inside a sandbox host without deploying it: copied into its root, run with
the host's own Python.

A deploy (``site.yml``, a wheelhouse) takes minutes; a test or a benchmark of one part against
the host's real systemd and journald needs only the package and the few compiled libraries the
remediator imports. The host is Debian 12 like this machine, and its ``python3`` is 3.11 like the
virtualenv's, so the virtualenv's wheels run there as they are. The copy goes into the host's
overlay (seen from here under the harness' data directory); nothing of this machine is mounted
into the host.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.sandbox import harness

ROOT = Path(__file__).resolve().parents[2]
GUEST_DIR = "/opt/jada-src"
# What the remediator imports beyond the standard library when it runs with a journal source
# (checked: sys.modules of a started ``remediator run``); ansible is not among them (a test that
# runs playbooks deploys).
DEPENDENCIES = ("re2", "yaml", "_yaml", "watchdog")
FILES = ("tests/__init__.py", "tests/bench/__init__.py", "tests/e2e/__init__.py")


def install(machine: harness.Machine, extra: Sequence[str] = ()) -> Path:
    """Copy ``agent``, the packaged rules, the dependencies and ``extra`` files (paths relative
    to the repository) to ``GUEST_DIR`` in the host; returns that directory as seen from here."""
    import re2
    import yaml

    dest = harness._data_dir(machine.name) / "merged" / GUEST_DIR.lstrip("/")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "agent", dest / "agent", ignore=ignore, dirs_exist_ok=True)
    shutil.copytree(ROOT / "files" / "rules.d", dest / "files" / "rules.d", dirs_exist_ok=True)
    for f in (*FILES, *extra):
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    site = Path(yaml.__file__).parent.parent
    if Path(re2.__file__).parent.parent != site:
        raise RuntimeError(f"re2 and yaml are not in one site-packages ({site})")
    for name in DEPENDENCIES:
        src = site / name
        if src.is_dir():
            shutil.copytree(src, dest / "site" / name, ignore=ignore, dirs_exist_ok=True)
        else:
            for f in site.glob(f"{name}*.so"):
                shutil.copy2(f, dest / "site" / f.name)
    return dest


def python_argv(args: Sequence[str]) -> list[str]:
    """``python3 ARGS`` in the host, run from ``GUEST_DIR`` with the copy on its path."""
    env = f"PYTHONPATH={GUEST_DIR}:{GUEST_DIR}/site PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8"
    script = f"cd {GUEST_DIR} && exec env {env} python3 {shlex.join(args)}"
    return ["sh", "-ec", script]


def python(
    machine: harness.Machine, args: Sequence[str], timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    """Run ``python3 ARGS`` in the host's namespaces, as root; raises with its stderr if it
    fails."""
    done = machine.nsenter(python_argv(args), timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(
            f"in the host: python3 {shlex.join(args)}: rc {done.returncode}\n{done.stderr[-3000:]}"
        )
    return done
