#!/usr/bin/env python3
"""The wheelhouse of jada-agent for a target host, built on the controller (the jada_agent role's
``wheelhouse.yml`` runs it; ``make wheelhouse`` too).

A target is the most specific wheel tag the host's Python accepts, for example
``cp311-cp311-manylinux_2_36_x86_64`` (Debian 12 on x86_64), as the role's probe prints it on the
host. For each target this script:

1. builds the project's own wheel (``pip wheel --no-deps``; it must be pure Python: ``py3-none-any``),
2. downloads the dependencies' wheels for the target, not for the controller: ``pip download
   --only-binary=:all: --platform ... --python-version ... --implementation cp --abi ...``, with
   every manylinux platform the host's glibc accepts,
3. checks every wheel's tags against the target's supported tags (a wheel the host's pip would
   refuse fails the build here, naming the wheel),
4. packs ``<cache>/<key>.tar`` where ``key`` = a hash of the sources (pyproject.toml, README.md,
   agent/) and the target, so a different Python or platform never reuses another's wheels.

A dependency with no binary wheel for the target fails with one clear line naming it and the
target (build that wheel on a machine of the target's kind and give its directory with
``--find-links``). The cache keeps the 2 most recently used tarballs per target (``--keep``).
Prints ``{"targets": {TARGET: {"key", "tarball", "built", "wheels", "pruned"}}}``.

    wheelhouse.py --source REPO --cache DIR --target cp311-cp311-manylinux_2_36_x86_64 [...]
    wheelhouse.py --source REPO --cache DIR --target host     # this machine's own target
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

try:  # packaging ships with ansible-core; pip vendors it otherwise
    from packaging import tags as _tags
    from packaging.utils import parse_wheel_filename
except ImportError:  # pragma: no cover - a controller without packaging
    from pip._vendor.packaging import tags as _tags  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import parse_wheel_filename  # type: ignore[no-redef]

SOURCES = ("pyproject.toml", "README.md", "agent")
_TARGET = re.compile(
    r"^cp(?P<major>3)(?P<minor>\d{1,2})-(?P<abi>cp3\d{1,2}t?)-"
    r"(?P<libc>manylinux|musllinux)_(?P<lmaj>\d+)_(?P<lmin>\d+)_(?P<arch>[a-z0-9_]+)$"
)
# The oldest libc minor each tag family goes down to (manylinux_2_5 is manylinux1).
_LIBC_FLOOR = {"manylinux": 5, "musllinux": 1}
_LEGACY = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
STALE_BUILD_S = 6 * 3600


class WheelhouseError(Exception):
    """The wheelhouse cannot be built; the message says why and what to do."""


class Target:
    """A target host's Python and platform, parsed from its tag."""

    def __init__(self, tag: str) -> None:
        m = _TARGET.match(tag)
        if m is None:
            raise WheelhouseError(
                f"target {tag!r}: expected cpXY-cpXY-manylinux_A_B_ARCH (or musllinux_A_B_ARCH), "
                "for example cp311-cp311-manylinux_2_36_x86_64"
            )
        self.tag = tag
        self.python_version = f"{m['major']}.{m['minor']}"
        self.abi = m["abi"]
        self.libc, self.arch = m["libc"], m["arch"]
        lmaj, lmin = int(m["lmaj"]), int(m["lmin"])
        floor = _LIBC_FLOOR[self.libc]
        # Every platform tag the host's libc accepts, newest first (PEP 600 / PEP 656).
        self.platforms = [
            f"{self.libc}_{lmaj}_{minor}_{self.arch}" for minor in range(lmin, floor - 1, -1)
        ]
        if self.libc == "manylinux" and lmaj == 2:
            self.platforms += [
                f"{_LEGACY[v]}_{self.arch}" for v in sorted(_LEGACY, reverse=True) if v <= lmin
            ]

    def supported(self) -> set[str]:
        """Every ``interpreter-abi-platform`` tag the target's pip installs."""
        version = (int(self.python_version[0]), int(self.python_version[2:]))
        out = {
            str(t) for t in _tags.cpython_tags(version, abis=[self.abi], platforms=self.platforms)
        }
        out |= {
            str(t)
            for t in _tags.compatible_tags(version, f"cp{version[0]}{version[1]}", self.platforms)
        }
        return out


def host_target() -> str:
    """This machine's target tag (the role's probe, ``wheelhouse_probe.py``, on a host)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from wheelhouse_probe import target
    finally:
        sys.path.pop(0)
    try:
        return target()
    except SystemExit as exc:
        raise WheelhouseError(str(exc)) from None


def source_hash(source: Path) -> str:
    """A hash of what the project's wheel is built from (path and content of each file)."""
    h = hashlib.sha256()
    missing = [name for name in SOURCES if not (source / name).exists()]
    if missing:
        raise WheelhouseError(
            f"{source}: expected the jada-agent repository ({', '.join(SOURCES)}), "
            f"missing {', '.join(missing)}"
        )
    files: list[Path] = []
    for name in SOURCES:
        p = source / name
        files += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in sorted(files):
        rel = f.relative_to(source).as_posix()
        if "__pycache__" in rel or rel.endswith(".pyc"):
            continue
        h.update(rel.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def _pip(python: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "pip", *args, "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    )


_NO_MATCH = re.compile(r"(?:No matching distribution found for|satisfies the requirement) (\S+)")


def build_one(
    source: Path,
    target: Target,
    out: Path,
    *,
    python: str,
    pip_args: list[str],
    build_isolation: bool = True,
) -> int:
    """Build the wheels of ``target`` into ``out`` (an empty directory); returns their count."""
    with tempfile.TemporaryDirectory(prefix="src-", dir=out.parent) as tmp:
        # A copy of the sources: setuptools leaves build/ in the tree it builds, and a stale
        # build/lib would put deleted modules back into the wheel.
        for name in SOURCES:
            src = source / name
            if src.is_dir():
                shutil.copytree(src, Path(tmp) / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, Path(tmp) / name)
        own = _pip(
            python,
            "wheel",
            "--quiet",
            "--no-deps",
            *([] if build_isolation else ["--no-build-isolation"]),
            "--wheel-dir",
            str(out),
            tmp,
        )
        if own.returncode != 0:
            raise WheelhouseError(f"building the jada-agent wheel failed:\n{own.stderr[-3000:]}")
    project = sorted(out.glob("*.whl"))
    if len(project) != 1 or not project[0].name.endswith("-py3-none-any.whl"):
        raise WheelhouseError(
            f"the project's wheel must be pure Python (py3-none-any), got {[p.name for p in project]}"
        )
    platform_args = [a for p in target.platforms for a in ("--platform", p)]
    dl = _pip(
        python,
        "download",
        "--quiet",
        "--only-binary=:all:",
        *platform_args,
        "--python-version",
        target.python_version,
        "--implementation",
        "cp",
        "--abi",
        target.abi,
        "--dest",
        str(out),
        *pip_args,
        str(project[0]),
    )
    if dl.returncode != 0:
        missing = sorted(set(_NO_MATCH.findall(dl.stderr)))
        if missing:
            raise WheelhouseError(
                f"no binary wheel for {target.tag} of: {', '.join(missing)}. The host cannot "
                "build from source (it has no compiler or index): build those wheels on a "
                f"machine of the target's kind (Python {target.python_version}, {target.arch}) "
                "and give their directory with --find-links (jada_agent_wheelhouse_find_links)"
            )
        raise WheelhouseError(f"pip download for {target.tag} failed:\n{dl.stderr[-3000:]}")
    supported = target.supported()
    wheels = sorted(out.glob("*.whl"))
    for wheel in wheels:
        _, _, _, wheel_tags = parse_wheel_filename(wheel.name)
        if not {str(t) for t in wheel_tags} & supported:
            raise WheelhouseError(f"{wheel.name} does not install on {target.tag}")
    return len(wheels)


def prune(cache: Path, tag: str, keep: int) -> list[str]:
    """Remove all but the ``keep`` most recently used tarballs of ``tag``; returns their names."""
    own = sorted(cache.glob(f"*-{tag}.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
    # Tarballs of the format before targets were in the key (a bare hash) go too.
    legacy = [p for p in cache.glob("*.tar") if re.fullmatch(r"[0-9a-f]{16}\.tar", p.name)]
    removed = []
    for old in own[keep:] + legacy:
        old.unlink(missing_ok=True)
        removed.append(old.name)
    return removed


def build(
    source: Path,
    cache: Path,
    targets: list[str],
    *,
    python: str = sys.executable,
    pip_args: list[str] | None = None,
    build_isolation: bool = True,
    keep: int = 2,
) -> dict[str, dict[str, object]]:
    """Build (or find in ``cache``) the wheelhouse tarball of each target; keep the ``keep``
    most recently used tarballs per target (a bounded cache)."""
    digest = source_hash(source)
    cache.mkdir(parents=True, exist_ok=True)
    # A build killed outright (SIGKILL, power loss) leaves its directory; one this old is no
    # longer anyone's.
    for stale in cache.glob("build-*"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > STALE_BUILD_S:
                shutil.rmtree(stale, ignore_errors=True)
    result: dict[str, dict[str, object]] = {}
    for tag in dict.fromkeys(host_target() if t == "host" else t for t in targets):
        target = Target(tag)
        key = f"{digest}-{tag}"
        tarball = cache / f"{key}.tar"
        entry: dict[str, object] = {"key": key, "tarball": str(tarball), "built": False}
        if not tarball.exists():
            work = Path(tempfile.mkdtemp(prefix=f"build-{key}-", dir=cache))
            try:
                wheels = work / "wheels"
                wheels.mkdir()
                build_one(
                    source,
                    target,
                    wheels,
                    python=python,
                    pip_args=pip_args or [],
                    build_isolation=build_isolation,
                )
                (wheels / "KEY").write_text(key + "\n")
                with tarfile.open(work / "wheelhouse.tar", "w") as tar:
                    for f in sorted(wheels.iterdir()):
                        info = tar.gettarinfo(f, arcname=f"./{f.name}")
                        info.uid = info.gid = 0
                        info.uname = info.gname = "root"
                        info.mtime = 0
                        info.mode = 0o644
                        with f.open("rb") as fh:
                            tar.addfile(info, fh)
                # rename(2): a concurrent build of the same key only replaces an identical file.
                os.replace(work / "wheelhouse.tar", tarball)
                entry["built"] = True
            finally:
                shutil.rmtree(work, ignore_errors=True)
        else:
            os.utime(tarball)  # used: the pruning below keeps the recently used ones
        with tarfile.open(tarball) as tar:
            entry["wheels"] = sum(1 for n in tar.getnames() if n.endswith(".whl"))
        entry["pruned"] = prune(cache, tag, max(keep, 1))
        result[tag] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", required=True, type=Path, help="the jada-agent repository")
    p.add_argument("--cache", required=True, type=Path, help="where the tarballs are kept")
    p.add_argument("--target", action="append", required=True, help="a target tag, or host")
    p.add_argument("--python", default=sys.executable, help="the Python whose pip builds")
    p.add_argument("--find-links", action="append", default=[], help="more wheels (a directory)")
    p.add_argument("--no-index", action="store_true", help="use only --find-links")
    p.add_argument("--no-build-isolation", action="store_true", help="build with this setuptools")
    p.add_argument("--keep", type=int, default=2, help="tarballs kept per target (default 2)")
    a = p.parse_args(argv)
    pip_args = [x for d in a.find_links for x in ("--find-links", d)]
    if a.no_index:
        pip_args.append("--no-index")
    try:
        result = build(
            a.source.resolve(),
            a.cache,
            a.target,
            python=a.python,
            pip_args=pip_args,
            build_isolation=not a.no_build_isolation,
            keep=a.keep,
        )
    except WheelhouseError as exc:
        print(f"wheelhouse: {exc}", file=sys.stderr)
        return 1
    json.dump({"targets": result}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
