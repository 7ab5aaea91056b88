"""Fixtures shared by the integration tests of several parts: one moto server for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A real moto server on 127.0.0.1 (AWS's APIs); tests reset it or use their own tables."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
