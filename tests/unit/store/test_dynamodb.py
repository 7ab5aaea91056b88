"""DynamoDB specifics: the table layout, optimistic task writes, the schema version."""

from __future__ import annotations

import pytest
from botocore.config import Config

from agent.store import StoreError
from agent.store.dynamodb import SCHEMA_VERSION, DynamoStore
from tests.unit.store.conftest import dynamo_settings

FAST = Config(retries={"max_attempts": 1})


@pytest.fixture
def dyn(moto_endpoint):
    s = DynamoStore(dynamo_settings(moto_endpoint), client_config=FAST)
    yield s
    s.drop()


def test_a_task_write_based_on_a_stale_read_is_refused_then_redone(dyn) -> None:
    a = dyn.add_task("a")
    b = dyn.add_task("b")
    c = dyn.add_task("c", depends_on=[a.id, b.id])
    stale = dyn._get(f"task#{c.id}")
    dyn.set_task_status(a.id, "done")  # another host: c's count drops to 1, its version moves on
    assert dyn._write_task_state(stale, "ready", "2026-05-13T00:00:00Z", pending=2) is False
    assert dyn._get(f"task#{c.id}")["pending"] == 1
    dyn.set_task_status(b.id, "done")
    assert dyn.next_ready_task().id == c.id


def test_only_runnable_tasks_are_in_the_pick_index(dyn) -> None:
    a = dyn.add_task("a")
    b = dyn.add_task("b", depends_on=[a.id])
    dyn.add_task("q", kind="needs_you", status="needs_you")
    assert _pick_index(dyn) == [a.id]
    dyn.set_task_status(a.id, "done")
    assert _pick_index(dyn) == [b.id]


def _pick_index(dyn) -> list[int]:
    """The task ids the sparse ``pick`` index holds."""
    items = dyn.table.query(
        IndexName="pick",
        KeyConditionExpression="pick_pk = :p",
        ExpressionAttributeValues={":p": "runnable"},
    )["Items"]
    return [int(i["id"]) for i in items]


def test_a_table_from_a_newer_schema_is_refused(dyn) -> None:
    dyn.table.put_item(Item={"pk": "meta#schema", "version": SCHEMA_VERSION + 1})
    with pytest.raises(StoreError, match="newer than this jada-agent"):
        DynamoStore(dyn.settings, client_config=FAST)


def test_an_unreachable_endpoint_is_a_store_error_naming_the_table(tmp_path) -> None:
    from agent.config import DynamoSettings

    settings = DynamoSettings(table_prefix="nowhere", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StoreError, match="dynamodb table nowhere-store"):
        DynamoStore(settings, client_config=Config(retries={"max_attempts": 1}, connect_timeout=1))


def test_a_look_creates_no_table_the_library_and_the_commands(moto_endpoint, tmp_path) -> None:
    """A read-only command on a DynamoDB store that does not exist yet changes nothing in the
    account (and so needs no CreateTable): an empty answer and a note on stderr."""
    import subprocess
    import sys
    from pathlib import Path

    import boto3
    import yaml

    from agent.store import StoreMissing

    ds = dynamo_settings(moto_endpoint)
    table = f"{ds.table_prefix}-store"
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_endpoint)

    def tables() -> list[str]:
        return client.list_tables()["TableNames"]

    with pytest.raises(StoreMissing, match=table):
        DynamoStore(ds, client_config=FAST, create=False)
    cfg = tmp_path / "agent.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "store": {
                    "backend": "dynamodb",
                    "dynamodb": {
                        "table_prefix": ds.table_prefix,
                        "region": "us-east-1",
                        "endpoint_url": moto_endpoint,
                    },
                },
            }
        )
    )
    root = Path(__file__).resolve().parents[3]
    for argv in (["tasks", "list"], ["sessions"], ["tasks", "list", "--json"]):
        r = subprocess.run(
            [sys.executable, "-m", "agent", "-c", str(cfg), *argv],
            capture_output=True,
            text=True,
            cwd=root,
            timeout=60,
            check=False,
        )
        assert r.returncode == 0, (argv, r.stderr)
        assert "no store yet" in r.stderr and table in r.stderr
    assert table not in tables()
    written = DynamoStore(ds, client_config=FAST)  # a command that writes still creates it
    assert table in tables()
    written.drop()
