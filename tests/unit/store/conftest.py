"""Both store backends behind one fixture: SQLite in a temporary file, DynamoDB on moto's server."""

from __future__ import annotations

import itertools
import os

import pytest
from botocore.config import Config

from agent.config import DynamoSettings
from agent.store.sqlite import SQLiteStore

_tables = itertools.count()


@pytest.fixture(scope="session")
def moto_endpoint():
    """One moto server on 127.0.0.1 for the session; each test gets its own table."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def dynamo_settings(endpoint: str) -> DynamoSettings:
    return DynamoSettings(
        table_prefix=f"contract-{os.getpid()}-{next(_tables)}",
        region="us-east-1",
        endpoint_url=endpoint,
    )


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "store.db")
        yield s
        s.close()
        return
    from agent.store.dynamodb import DynamoStore

    endpoint = request.getfixturevalue("moto_endpoint")
    s = DynamoStore(dynamo_settings(endpoint), client_config=Config(retries={"max_attempts": 1}))
    yield s
    s.drop()


@pytest.fixture
def open_another(store):
    """Open another connection to the same store (as another process or host would)."""

    def opener():
        if isinstance(store, SQLiteStore):
            return SQLiteStore(store.path)
        from agent.store.dynamodb import DynamoStore

        return DynamoStore(store.settings, client_config=Config(retries={"max_attempts": 1}))

    return opener
