"""Pytest fixtures for sandbox hosts (real systemd machines reached over SSH).

Enable in ``tests/conftest.py``::

    pytest_plugins = ["tests.sandbox.pytest_plugin"]

Fixtures:

``sandbox_factory`` (session)
    ``sandbox_factory()`` boots one machine and returns a :class:`~tests.sandbox.harness.Machine`;
    ``sandbox_factory.many(n)`` boots ``n`` in parallel.  Names are unique per call (safe with
    concurrent sessions); everything is torn down at session end, even after failures.
``sandbox_host`` (module)
    One machine shared by a test module.

Tests are skipped with the reason when the host cannot run sandboxes (not root, nspawn missing);
set ``JADA_SANDBOX_REQUIRE=1`` (CI) to make that an error instead.
"""

from __future__ import annotations

import atexit
import os
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.sandbox import harness


class SandboxFactory:
    """Creates sandbox hosts with unique names and remembers them for teardown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: list[str] = []

    def __call__(self, prefix: str = "t") -> harness.Machine:
        name = f"{prefix[:24]}-{secrets.token_hex(3)}"
        with self._lock:
            self._names.append(name)
        return harness.up(name)

    def many(self, count: int, prefix: str = "t") -> list[harness.Machine]:
        """Boot ``count`` machines in parallel."""
        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(lambda _: self(prefix), range(count)))

    def destroy(self, machine: harness.Machine | str) -> None:
        name = machine if isinstance(machine, str) else machine.name
        harness.down(name)
        with self._lock:
            if name in self._names:
                self._names.remove(name)

    def destroy_all(self) -> None:
        with self._lock:
            names, self._names = self._names, []
        errors = []
        for name in names:
            try:
                harness.down(name)
            except Exception as exc:  # keep tearing the others down
                errors.append(f"{name}: {exc}")
        if errors:
            raise harness.SandboxError("sandbox teardown failed: " + "; ".join(errors))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sandbox: needs sandbox hosts (root + systemd-nspawn)")


def _require_sandbox() -> None:
    reason = harness.preflight()
    if reason is None:
        return
    if os.environ.get("JADA_SANDBOX_REQUIRE") == "1":
        pytest.fail(f"sandbox hosts required (JADA_SANDBOX_REQUIRE=1) but: {reason}")
    pytest.skip(f"sandbox hosts unavailable: {reason}")


@pytest.fixture(scope="session")
def sandbox_factory() -> Iterator[SandboxFactory]:
    """Session-wide factory of sandbox hosts; all are removed at session end."""
    _require_sandbox()
    harness.build()
    factory = SandboxFactory()
    atexit.register(factory.destroy_all)  # belt and braces if the session is killed mid-way
    try:
        yield factory
    finally:
        factory.destroy_all()


@pytest.fixture(scope="module")
def sandbox_host(sandbox_factory: SandboxFactory) -> Iterator[harness.Machine]:
    """One sandbox host for the whole test module."""
    machine = sandbox_factory("host")
    try:
        yield machine
    finally:
        sandbox_factory.destroy(machine)
