"""The controller builds the wheelhouse for the target host's Python and platform, not its own.

``roles/jada_agent/files/wheelhouse.py`` runs with the real pip, offline: the dependencies come
from a local directory of real wheel files (``--no-index --find-links``), one per platform, so the
test sees which one pip picked for a target the controller is not (aarch64, Python 3.12).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "roles" / "jada_agent" / "files" / "wheelhouse.py"
AARCH64_312 = "cp312-cp312-manylinux_2_36_aarch64"
X86_311 = "cp311-cp311-manylinux_2_36_x86_64"

sys.path.insert(0, str(SCRIPT.parent))
import wheelhouse  # noqa: E402

sys.path.pop(0)


def make_wheel(directory: Path, name: str, version: str, tag: str) -> Path:
    """A real (installable) wheel file of an empty package ``name`` with the tag ``tag``."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\n"
            f"Root-Is-Purelib: {'true' if tag == 'py3-none-any' else 'false'}\n"
            + "".join(f"Tag: {t}\n" for t in _expand(tag))
        ).encode(),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = directory / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def _expand(tag: str) -> list[str]:
    py, abi, plats = tag.split("-")
    return [f"{py}-{abi}-{p}" for p in plats.split(".")]


@pytest.fixture
def index(tmp_path: Path) -> Path:
    """Wheels of a compiled dependency for two platforms, one pure one, one x86_64-only one."""
    d = tmp_path / "index"
    d.mkdir()
    make_wheel(d, "jadanative", "1.0", "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64")
    make_wheel(d, "jadanative", "1.0", "cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64")
    make_wheel(d, "jadanative", "1.0", "cp312-cp312-macosx_11_0_arm64")
    make_wheel(d, "jadapure", "1.0", "py3-none-any")
    make_wheel(d, "jadax86only", "1.0", "cp311-cp311-manylinux_2_28_x86_64")
    return d


def project(tmp_path: Path, deps: list[str]) -> Path:
    """A small project shaped like jada-agent (pyproject.toml, README.md, agent/)."""
    src = tmp_path / "project"
    (src / "agent").mkdir(parents=True)
    (src / "agent" / "__init__.py").write_text("")
    (src / "README.md").write_text("test project\n")
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "jada-agent"\nversion = "0.1"\nlicense = "MIT"\n'
        f"dependencies = {json.dumps(deps)}\n"
        '[tool.setuptools.packages.find]\ninclude = ["agent*"]\n'
    )
    return src


def run(src: Path, cache: Path, index: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(SCRIPT), "--source", str(src), "--cache", str(cache),
            "--no-index", "--find-links", str(index), "--no-build-isolation"]  # fmt: skip
    for t in targets:
        argv += ["--target", t]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def wheels_of(tarball: str) -> list[str]:
    with tarfile.open(tarball) as tar:
        return sorted(Path(n).name for n in tar.getnames() if n.endswith(".whl"))


def test_a_wheelhouse_for_aarch64_python_312_holds_the_targets_wheels(tmp_path, index):
    src = project(tmp_path, ["jadanative", "jadapure"])
    r = run(src, tmp_path / "cache", index, AARCH64_312, X86_311)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)["targets"]
    arm = wheels_of(out[AARCH64_312]["tarball"])
    assert arm == [
        "jada_agent-0.1-py3-none-any.whl",
        "jadanative-1.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "jadapure-1.0-py3-none-any.whl",
    ]
    x86 = wheels_of(out[X86_311]["tarball"])
    assert "jadanative-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl" in x86
    # The key names the target: two targets, two tarballs, each labelled with its key.
    assert out[AARCH64_312]["key"].endswith("-" + AARCH64_312)
    assert out[AARCH64_312]["key"].split("-")[0] == out[X86_311]["key"].split("-")[0]
    with tarfile.open(out[AARCH64_312]["tarball"]) as tar:
        assert tar.extractfile("./KEY").read().decode().strip() == out[AARCH64_312]["key"]


def test_every_wheel_in_the_wheelhouse_installs_on_the_target(tmp_path, index):
    src = project(tmp_path, ["jadanative", "jadapure"])
    r = run(src, tmp_path / "cache", index, AARCH64_312)
    assert r.returncode == 0, r.stderr
    supported = wheelhouse.Target(AARCH64_312).supported()
    for name in wheels_of(json.loads(r.stdout)["targets"][AARCH64_312]["tarball"]):
        py, abi, plat = name[:-4].split("-")[-3:]
        tags = {
            f"{i}-{a}-{p}" for i in py.split(".") for a in abi.split(".") for p in plat.split(".")
        }
        assert tags & supported, name
        assert not any("x86_64" in t or "macosx" in t for t in tags), name


def test_the_cache_is_reused_for_the_same_sources_and_target_only(tmp_path, index):
    src = project(tmp_path, ["jadapure"])
    cache = tmp_path / "cache"
    first = json.loads(run(src, cache, index, X86_311).stdout)["targets"][X86_311]
    again = json.loads(run(src, cache, index, X86_311).stdout)["targets"][X86_311]
    assert (first["built"], again["built"]) == (True, False)
    assert first["key"] == again["key"]
    (src / "agent" / "new.py").write_text("x = 1\n")
    changed = json.loads(run(src, cache, index, X86_311).stdout)["targets"][X86_311]
    assert changed["built"] is True and changed["key"] != first["key"]
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [first["key"] + ".tar", changed["key"] + ".tar"]
    )  # no build directory left behind


def test_a_dependency_without_a_wheel_for_the_target_is_named_clearly(tmp_path, index):
    src = project(tmp_path, ["jadapure", "jadax86only"])
    cache = tmp_path / "cache"
    r = run(src, cache, index, AARCH64_312)
    assert r.returncode == 1
    line = r.stderr.strip().splitlines()[0]
    assert line.startswith(f"wheelhouse: no binary wheel for {AARCH64_312} of: jadax86only")
    assert "--find-links" in r.stderr
    assert list(cache.iterdir()) == []  # nothing half-built is cached


@pytest.mark.parametrize(
    "bad", ["cp311", "py3-none-any", "cp311-cp311-win_amd64", "host; rm -rf /"]
)
def test_a_malformed_target_is_refused_with_the_expected_form(tmp_path, index, bad):
    r = run(project(tmp_path, []), tmp_path / "cache", index, bad)
    assert r.returncode == 1
    assert "expected cpXY-cpXY-manylinux_A_B_ARCH" in r.stderr


def test_the_probe_names_this_machines_target():
    probe = SCRIPT.parent / "wheelhouse_probe.py"
    r = subprocess.run([sys.executable, "-c", probe.read_text()], capture_output=True, text=True)
    v = f"{sys.version_info[0]}{sys.version_info[1]}"
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"cp{v}-cp{v}-manylinux_2_")
    wheelhouse.Target(r.stdout.strip())  # parses


def test_manylinux_platforms_cover_every_older_glibc_and_the_legacy_names():
    t = wheelhouse.Target("cp311-cp311-manylinux_2_28_aarch64")
    assert t.platforms[0] == "manylinux_2_28_aarch64"
    assert "manylinux_2_17_aarch64" in t.platforms and "manylinux2014_aarch64" in t.platforms
    assert "manylinux_2_29_aarch64" not in t.platforms
    assert "cp311-abi3-manylinux_2_17_aarch64" in t.supported()


def test_the_cache_keeps_the_two_most_recently_used_tarballs_per_target(tmp_path, index):
    src = project(tmp_path, ["jadapure"])
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "0123456789abcdef.tar").write_bytes(b"")  # the format before targets were keyed
    keys = []
    for i in range(3):
        (src / "agent" / "v.py").write_text(f"v = {i}\n")
        r = run(src, cache, index, X86_311, AARCH64_312)
        keys.append(json.loads(r.stdout)["targets"][X86_311]["key"])
    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 4  # two per target
    assert f"{keys[0]}.tar" not in names and f"{keys[2]}.tar" in names


def test_a_build_directory_left_by_a_killed_build_is_removed_once_stale(tmp_path, index):
    cache = tmp_path / "cache"
    old = cache / "build-0123-x-abc"
    fresh = cache / "build-4567-x-def"  # maybe a concurrent build: left alone
    for d in (old, fresh):
        (d / "wheels").mkdir(parents=True)
    long_ago = time.time() - wheelhouse.STALE_BUILD_S - 60
    os.utime(old, (long_ago, long_ago))
    r = run(project(tmp_path, ["jadapure"]), cache, index, X86_311)
    assert r.returncode == 0, r.stderr
    assert not old.exists() and fresh.exists()
