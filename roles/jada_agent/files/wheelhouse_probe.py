"""Run by the host's Python (``python3 -c``): print the wheel tag of the host, the wheelhouse's
target, for example ``cp311-cp311-manylinux_2_36_x86_64``. Standard library only."""

import os
import platform
import sys
import sysconfig


def target() -> str:
    """The most specific wheel tag this interpreter installs (CPython on glibc Linux)."""
    if sys.implementation.name != "cpython":
        raise SystemExit(
            f"wheelhouse: expected CPython on the host, found {sys.implementation.name}"
        )
    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    if not libc or not libc.startswith("glibc "):
        raise SystemExit(
            f"wheelhouse: expected a glibc Linux host, found {platform.system()} {libc or ''}"
        )
    major, minor = libc.split()[1].split(".")[:2]
    v = f"{sys.version_info[0]}{sys.version_info[1]}"
    t = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    return f"cp{v}-cp{v}{t}-manylinux_{major}_{minor}_{platform.machine()}"


if __name__ == "__main__":
    print(target())
