"""The DynamoDB backend of the progress dashboard: one table shared by a fleet of hosts.

Layout (single table ``<table_prefix>-store``, key ``pk``):

- ``task#<id>``, ``session#<id>``, ``sync#<id>``, ``incident#<id>``: one item per record, with
  ``rtype``/``rsort`` feeding the ``by_type`` index (records of one kind in order: tasks and
  incidents by id, sessions and sync runs by start time).
- ``counter#<kind>``: the id sequences (atomic ``ADD``).
- ``lease#<name>``: the session lease, taken and renewed with conditional writes.
- ``meta#schema``: the schema version; a newer version than this code knows is refused.

A task that can run now (ready, kind ``task``, no unfinished dependency) carries ``pick_pk`` and
``pick_sk`` (inverted priority, creation time, id): the sparse ``pick`` index then holds only
runnable tasks in picking order, so choosing the next one is a one-item query whatever the queue
depth. Each task keeps ``deps`` and ``dependents`` so that finishing a task re-evaluates exactly
the tasks that wait for it.

Over 450 lines on purpose: one backend implements the whole :class:`~agent.store.model.Store`
contract on one table, with the conditional writes above; the contract is in ``model.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from agent.config import DynamoSettings
from agent.store.model import (
    INCIDENT_STATUSES,
    PRIORITY_LIMIT,
    SESSION_OUTCOMES,
    Incident,
    Lease,
    NewTask,
    Session,
    Store,
    StoreError,
    StoreMissing,
    SyncRun,
    Task,
    check_choice,
    check_task_status,
    found,
    iso,
    parse_iso,
    parse_stamp,
    utcnow,
)

SCHEMA_VERSION = 1


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


class DynamoStore(Store):
    """The dashboard in one DynamoDB table (created on first use, pay per request)."""

    def __init__(
        self,
        settings: DynamoSettings,
        *,
        client_config: Config | None = None,
        create: bool = True,
    ):
        self.settings = settings
        self.table_name = f"{settings.table_prefix}-store"
        try:
            self.resource = boto3.resource(
                "dynamodb",
                region_name=settings.region,
                endpoint_url=settings.endpoint_url,
                config=client_config or Config(retries={"max_attempts": 4, "mode": "standard"}),
            )
            self.table = self.resource.Table(self.table_name)
            self._ensure_table(create)
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"dynamodb table {self.table_name}: {exc}") from None

    # ------------------------------------------------------------------ plumbing
    def _ensure_table(self, create: bool = True) -> None:
        client = self.resource.meta.client
        try:
            client.describe_table(TableName=self.table_name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            if not create:
                raise StoreMissing(f"dynamodb table {self.table_name} does not exist yet") from None
            index = [
                ("by_type", "rtype", "rsort"),
                ("pick", "pick_pk", "pick_sk"),
            ]
            try:
                client.create_table(
                    TableName=self.table_name,
                    BillingMode="PAY_PER_REQUEST",
                    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                    AttributeDefinitions=[
                        {"AttributeName": a, "AttributeType": "S"}
                        for a in ("pk", "rtype", "rsort", "pick_pk", "pick_sk")
                    ],
                    GlobalSecondaryIndexes=[
                        {
                            "IndexName": name,
                            "KeySchema": [
                                {"AttributeName": h, "KeyType": "HASH"},
                                {"AttributeName": r, "KeyType": "RANGE"},
                            ],
                            "Projection": {"ProjectionType": "ALL"},
                        }
                        for name, h, r in index
                    ],
                )
            except ClientError as create_exc:
                # Another host created it at the same moment: fine.
                if create_exc.response["Error"]["Code"] != "ResourceInUseException":
                    raise
            client.get_waiter("table_exists").wait(
                TableName=self.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        meta = self.table.get_item(Key={"pk": "meta#schema"}, ConsistentRead=True).get("Item")
        if meta is None:
            self.table.put_item(Item={"pk": "meta#schema", "version": SCHEMA_VERSION})
        elif _int(meta["version"]) > SCHEMA_VERSION:
            raise StoreError(
                f"dynamodb table {self.table_name}: schema version {meta['version']} is newer"
                f" than this jada-agent ({SCHEMA_VERSION}); upgrade the package"
            )

    def _next_id(self, kind: str) -> int:
        out = self.table.update_item(
            Key={"pk": f"counter#{kind}"},
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": 1},
            ReturnValues="UPDATED_NEW",
        )
        return int(out["Attributes"]["n"])

    def _get(self, pk: str) -> dict[str, Any] | None:
        return self.table.get_item(Key={"pk": pk}, ConsistentRead=True).get("Item")

    def _by_type(self, rtype: str, *, descending: bool = False) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "IndexName": "by_type",
            "KeyConditionExpression": "rtype = :t",
            "ExpressionAttributeValues": {":t": rtype},
            "ScanIndexForward": not descending,
        }
        while True:
            page = self.table.query(**kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _batch_get(self, pks: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = sorted(set(pks))
        found: dict[str, dict[str, Any]] = {}
        client = self.resource
        for i in range(0, len(wanted), 100):
            keys: Any = {self.table_name: {"Keys": [{"pk": k} for k in wanted[i : i + 100]]}}
            keys[self.table_name]["ConsistentRead"] = True
            while keys:
                out = client.batch_get_item(RequestItems=keys)
                for item in out["Responses"].get(self.table_name, []):
                    found[item["pk"]] = item
                keys = out.get("UnprocessedKeys") or {}
        return found

    # ------------------------------------------------------------------ tasks
    @staticmethod
    def _pick_sk(priority: int, created: str, task_id: int, turn: int = 0) -> str:
        # Ascending sort key = descending priority, then the turn (round robin at the turn
        # cap, see yield_task), then oldest, then lowest id. Turn 0 keeps the original form; a
        # yielded turn sorts after it ("~" after the digits of a creation time).
        head = f"{PRIORITY_LIMIT - priority:010d}#"
        if turn:
            head += f"~{turn:010d}#"
        return f"{head}{created}#{task_id:012d}"

    @staticmethod
    def _task(item: dict[str, Any]) -> Task:
        return Task(
            id=_int(item["id"]),
            title=item["title"],
            body=item.get("body", ""),
            priority=_int(item.get("priority")),
            status=item["status"],
            kind=item.get("kind", "task"),
            depends_on=sorted(_int(d) for d in item.get("deps", [])),
            workspace=item.get("workspace"),
            created=parse_stamp(item["created"]),
            updated=parse_stamp(item["updated"]),
            notes=[{"at": n["at"], "text": n["text"]} for n in item.get("notes", [])],
        )

    def _insert_task(self, new: NewTask) -> Task:
        deps, stamp = new.deps, new.stamp
        found = self._batch_get(f"task#{d}" for d in deps)
        for dep in deps:
            if f"task#{dep}" not in found:
                raise StoreError(f"dependency {dep} is not a known task")
        pending = sum(found[f"task#{d}"]["status"] != "done" for d in deps)
        task_id = self._next_id("task")
        item: dict[str, Any] = {
            "pk": f"task#{task_id}",
            "rtype": "task",
            "rsort": f"{task_id:012d}",
            "id": task_id,
            "title": new.title,
            "body": new.body,
            "priority": new.priority,
            "status": new.status,
            "kind": new.kind,
            "deps": deps,
            "dependents": [],
            "pending": pending,
            "created": stamp,
            "updated": stamp,
            "notes": [],
        }
        if new.workspace is not None:
            item["workspace"] = new.workspace
        if new.status == "ready" and new.kind == "task" and pending == 0:
            item["pick_pk"] = "runnable"
            item["pick_sk"] = self._pick_sk(new.priority, stamp, task_id)
        self.table.put_item(Item=item)
        for dep in deps:
            self.table.update_item(
                Key={"pk": f"task#{dep}"},
                UpdateExpression="SET dependents = list_append(dependents, :me)",
                ExpressionAttributeValues={":me": [task_id]},
            )
        return self._task(item)

    def get_task(self, task_id: int) -> Task | None:
        item = self._get(f"task#{task_id}")
        return self._task(item) if item else None

    def list_tasks(self, statuses: Iterable[str] | None = None) -> list[Task]:
        wanted = set(statuses) if statuses is not None else None
        return [
            self._task(i) for i in self._by_type("task") if wanted is None or i["status"] in wanted
        ]

    def _write_task_state(
        self,
        item: dict[str, Any],
        status: str,
        stamp: str,
        note: str | None = None,
        pending: int | None = None,
    ) -> bool:
        """Set status and pending count, keeping the sparse pick index in step.

        Optimistic: the write holds only if the item's version is still the one read, so two
        hosts finishing two dependencies at once cannot leave a waiting task's count stale.
        Returns False on a lost race (the caller re-reads and retries).
        """
        pending = _int(item.get("pending")) if pending is None else pending
        names = {"#s": "status"}
        values: dict[str, Any] = {":s": status, ":u": stamp, ":p": pending, ":one": 1}
        sets = ["#s = :s", "updated = :u", "pending = :p"]
        removes: list[str] = []
        if status == "ready" and item.get("kind", "task") == "task" and pending == 0:
            sets += ["pick_pk = :pk", "pick_sk = :sk"]
            values[":pk"] = "runnable"
            values[":sk"] = self._pick_sk(
                _int(item["priority"]), item["created"], _int(item["id"]), _int(item.get("turn", 0))
            )
        else:
            removes += ["pick_pk", "pick_sk"]
        if note:
            sets.append("notes = list_append(if_not_exists(notes, :empty), :n)")
            values[":n"] = [{"at": stamp, "text": note}]
            values[":empty"] = []
        expr = "SET " + ", ".join(sets) + " ADD ver :one"
        if removes:
            expr += " REMOVE " + ", ".join(removes)
        if "ver" in item:
            cond = "ver = :v"
            values[":v"] = item["ver"]
        else:
            cond = "attribute_exists(pk) AND attribute_not_exists(ver)"
        try:
            self.table.update_item(
                Key={"pk": item["pk"]},
                UpdateExpression=expr,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ConditionExpression=cond,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _recompute(self, task_id: int, stamp: str, unblock: bool) -> None:
        """Re-count a task's unfinished dependencies from their current states, and write it."""
        for _attempt in range(20):
            item = self._get(f"task#{task_id}")
            if item is None:
                return
            deps = [_int(d) for d in item.get("deps", [])]
            states = self._batch_get(f"task#{d}" for d in deps)
            pending = sum(states.get(f"task#{d}", {}).get("status") != "done" for d in deps)
            status = item["status"]
            if unblock and status == "blocked" and pending == 0:
                status = "ready"
            if pending == _int(item.get("pending")) and status == item["status"]:
                return
            when = stamp if status != item["status"] else item["updated"]
            if self._write_task_state(item, status, when, pending=pending):
                return
            time.sleep(0.005)
        raise StoreError(f"task {task_id}: too many concurrent updates")

    def set_task_status(
        self, task_id: int, status: str, note: str | None = None, now: datetime | None = None
    ) -> Task:
        check_task_status(status)
        stamp = iso(now or utcnow())
        for _attempt in range(20):
            item = self._get(f"task#{task_id}")
            if item is None:
                raise StoreError(f"no task {task_id}")
            if self._write_task_state(item, status, stamp, note):
                break
            time.sleep(0.005)
        else:
            raise StoreError(f"task {task_id}: too many concurrent updates")
        if (item["status"] == "done") != (status == "done"):
            for dependent in item.get("dependents", []):
                self._recompute(_int(dependent), stamp, unblock=status == "done")
        return found(self.get_task(task_id), f"task {task_id}")

    def add_dependency(self, task_id: int, depends_on: int, now: datetime | None = None) -> Task:
        stamp = iso(now or utcnow())
        pair = self._batch_get([f"task#{task_id}", f"task#{depends_on}"])
        for tid in (task_id, depends_on):
            if f"task#{tid}" not in pair:
                raise StoreError(f"no task {tid}")
        # Walk up from depends_on: reaching task_id means the new edge closes a cycle.
        seen: set[int] = set()
        frontier = {depends_on}
        while frontier:
            if task_id in frontier:
                raise StoreError(f"task {depends_on} already waits for task {task_id}: a cycle")
            seen |= frontier
            items = self._batch_get(f"task#{t}" for t in frontier)
            frontier = {_int(d) for i in items.values() for d in i.get("deps", [])} - seen
        item = pair[f"task#{task_id}"]
        if depends_on not in {_int(d) for d in item.get("deps", [])}:
            self.table.update_item(
                Key={"pk": f"task#{task_id}"},
                UpdateExpression="SET deps = list_append(deps, :d)",
                ExpressionAttributeValues={":d": [depends_on]},
            )
            self.table.update_item(
                Key={"pk": f"task#{depends_on}"},
                UpdateExpression="SET dependents = list_append(dependents, :me)",
                ExpressionAttributeValues={":me": [task_id]},
            )
            self._recompute(task_id, stamp, unblock=False)
        return found(self.get_task(task_id), f"task {task_id}")

    def add_note(self, task_id: int, text: str, now: datetime | None = None) -> None:
        stamp = iso(now or utcnow())
        try:
            self.table.update_item(
                Key={"pk": f"task#{task_id}"},
                UpdateExpression="SET notes = list_append(if_not_exists(notes, :e), :n), updated = :u",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={
                    ":n": [{"at": stamp, "text": text}],
                    ":e": [],
                    ":u": stamp,
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise StoreError(f"no task {task_id}") from None
            raise

    def next_ready_task(self) -> Task | None:
        kwargs: dict[str, Any] = {
            "IndexName": "pick",
            "KeyConditionExpression": "pick_pk = :p",
            "ExpressionAttributeValues": {":p": "runnable"},
            "Limit": 5,
        }
        while True:
            page = self.table.query(**kwargs)
            for candidate in page.get("Items", []):
                # The index is eventually consistent: confirm on the item itself.
                item = self._get(candidate["pk"])
                if item and item.get("pick_pk") == "runnable":
                    return self._task(item)
            if "LastEvaluatedKey" not in page:
                return None
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def yield_task(self, task_id: int) -> None:
        item = self._get(f"task#{task_id}")
        if item is None:
            raise StoreError(f"no task {task_id}")
        prefix = f"{PRIORITY_LIMIT - _int(item['priority']):010d}#~"
        # The last runnable task of this priority in picking order holds the highest turn.
        page = self.table.query(
            IndexName="pick",
            KeyConditionExpression="pick_pk = :p AND begins_with(pick_sk, :prefix)",
            ExpressionAttributeValues={":p": "runnable", ":prefix": prefix},
            ScanIndexForward=False,
            Limit=1,
        )
        last = page.get("Items", [])
        top = int(last[0]["pick_sk"][len(prefix) : len(prefix) + 10]) if last else 0
        self.table.update_item(
            Key={"pk": f"task#{task_id}"},
            UpdateExpression="SET turn = :t",
            ExpressionAttributeValues={":t": top + 1},
        )

    # ------------------------------------------------------------------ sessions
    @staticmethod
    def _session(item: dict[str, Any]) -> Session:
        return Session(
            id=_int(item["id"]),
            task_id=_int(item["task_id"]) if item.get("task_id") is not None else None,
            started=parse_stamp(item["started"]),
            ended=parse_iso(item.get("ended")),
            outcome=item["outcome"],
            turns=_int(item.get("turns")),
            input_tokens=_int(item.get("input_tokens")),
            output_tokens=_int(item.get("output_tokens")),
            exit_code=_int(item["exit_code"]) if item.get("exit_code") is not None else None,
            owner=item.get("owner"),
        )

    def start_session(
        self, task_id: int | None, now: datetime | None = None, owner: str | None = None
    ) -> Session:
        sid = self._next_id("session")
        started = iso(now or utcnow())
        item: dict[str, Any] = {
            "pk": f"session#{sid}",
            "rtype": "session",
            "rsort": f"{started}#{sid:012d}",
            "id": sid,
            "task_id": task_id,
            "started": started,
            "outcome": "running",
            "turns": 0,
            "input_tokens": 0,
            "output_tokens": 0,
        }
        if owner is not None:
            item["owner"] = owner
        self.table.put_item(Item=item)
        return self._session(item)

    def finish_session(
        self,
        session_id: int,
        outcome: str,
        turns: int = 0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        exit_code: int | None = None,
        now: datetime | None = None,
    ) -> Session:
        check_choice(outcome, SESSION_OUTCOMES, "session outcome")
        try:
            out = self.table.update_item(
                Key={"pk": f"session#{session_id}"},
                UpdateExpression="SET ended = :e, outcome = :o, turns = :t, input_tokens = :i,"
                " output_tokens = :x, exit_code = :c",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={
                    ":e": iso(now or utcnow()),
                    ":o": outcome,
                    ":t": turns,
                    ":i": input_tokens,
                    ":x": output_tokens,
                    ":c": exit_code,
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise StoreError(f"no session {session_id}") from None
            raise
        return self._session(out["Attributes"])

    def update_session(
        self, session_id: int, turns: int, input_tokens: int = 0, output_tokens: int = 0
    ) -> None:
        try:
            self.table.update_item(
                Key={"pk": f"session#{session_id}"},
                UpdateExpression="SET turns = :t, input_tokens = :i, output_tokens = :x",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":t": turns, ":i": input_tokens, ":x": output_tokens},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise StoreError(f"no session {session_id}") from None
            raise

    def list_sessions(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        outcomes: Iterable[str] | None = None,
    ) -> list[Session]:
        lo, hi = (iso(since) if since else ""), (iso(until) if until else "~")
        kwargs: dict[str, Any] = {
            "IndexName": "by_type",
            "KeyConditionExpression": "rtype = :t AND rsort BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {":t": "session", ":lo": lo or " ", ":hi": hi},
        }
        wanted = set(outcomes) if outcomes is not None else None
        found: list[Session] = []
        while True:
            page = self.table.query(**kwargs)
            for item in page.get("Items", []):
                # BETWEEN is inclusive and rsort carries a suffix: apply [since, until) exactly.
                if lo <= item["started"] < hi and (wanted is None or item["outcome"] in wanted):
                    found.append(self._session(item))
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # ------------------------------------------------------------------ leases
    def acquire_lease(
        self,
        name: str,
        owner: str,
        ttl: float,
        now: datetime | None = None,
        replace: str | None = None,
    ) -> Lease | None:
        at = now or utcnow()
        expires = iso(at + timedelta(seconds=ttl))
        current = self._get(f"lease#{name}")
        acquired = current["acquired"] if current and current["owner"] == owner else iso(at)
        cond = "attribute_not_exists(pk) OR #o = :me OR expires <= :now"
        values: dict[str, Any] = {":me": owner, ":now": iso(at)}
        if replace is not None:
            cond += " OR #o = :dead"
            values[":dead"] = replace
        try:
            self.table.put_item(
                Item={
                    "pk": f"lease#{name}",
                    "owner": owner,
                    "acquired": acquired,
                    "expires": expires,
                },
                ConditionExpression=cond,
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return Lease(name, owner, parse_stamp(acquired), parse_stamp(expires))

    def release_lease(self, name: str, owner: str) -> bool:
        try:
            self.table.delete_item(
                Key={"pk": f"lease#{name}"},
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": owner},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get_lease(self, name: str) -> Lease | None:
        item = self._get(f"lease#{name}")
        if item is None:
            return None
        return Lease(
            name,
            item["owner"],
            parse_stamp(item["acquired"]),
            parse_stamp(item["expires"]),
        )

    # ------------------------------------------------------------------ sync runs
    def record_sync_run(self, run: SyncRun) -> SyncRun:
        rid = self._next_id("sync")
        started = iso(run.started)
        item = {
            "pk": f"sync#{rid}",
            "rtype": "sync",
            "rsort": f"{started}#{rid:012d}",
            "id": rid,
            "started": started,
            "finished": iso(run.finished),
            "outcome": run.outcome,
            "rows": run.rows,
            "requests": run.requests,
            "error_class": run.error_class,
        }
        self.table.put_item(Item=item)
        run.id = rid
        return run

    def list_sync_runs(self, limit: int = 50) -> list[SyncRun]:
        runs: list[SyncRun] = []
        for item in self._by_type("sync", descending=True):
            runs.append(
                SyncRun(
                    id=_int(item["id"]),
                    started=parse_stamp(item["started"]),
                    finished=parse_iso(item.get("finished")),
                    outcome=item["outcome"],
                    rows=_int(item.get("rows")),
                    requests=_int(item.get("requests")),
                    error_class=item.get("error_class"),
                )
            )
            if len(runs) >= limit:
                break
        return runs

    # ------------------------------------------------------------------ incidents
    @staticmethod
    def _incident(item: dict[str, Any]) -> Incident:
        return Incident(
            id=_int(item["id"]),
            rule=item["rule"],
            group=dict(item.get("grp", {})),
            status=item["status"],
            opened=parse_stamp(item["opened"]),
            updated=parse_stamp(item["updated"]),
            resolved=parse_iso(item.get("resolved")),
            cause=item.get("cause"),
            summary=item.get("summary", ""),
            # Stored as JSON text: remediation records may hold floats, which DynamoDB refuses.
            remediations=json.loads(item.get("remediations", "[]")),
            notified=parse_iso(item.get("notified")),
        )

    def open_incident(
        self, rule: str, group: dict[str, str], summary: str = "", now: datetime | None = None
    ) -> Incident:
        iid = self._next_id("incident")
        stamp = iso(now or utcnow())
        item = {
            "pk": f"incident#{iid}",
            "rtype": "incident",
            "rsort": f"{iid:012d}",
            "id": iid,
            "rule": rule,
            "grp": dict(group),
            "status": "open",
            "opened": stamp,
            "updated": stamp,
            "summary": summary,
            "remediations": "[]",
        }
        self.table.put_item(Item=item)
        return self._incident(item)

    def update_incident(
        self,
        incident_id: int,
        *,
        status: str | None = None,
        cause: str | None = None,
        summary: str | None = None,
        remediation: dict[str, Any] | None = None,
        notified: datetime | None = None,
        now: datetime | None = None,
    ) -> Incident:
        if status is not None:
            check_choice(status, INCIDENT_STATUSES, "incident status")
        stamp = iso(now or utcnow())
        for _attempt in range(10):
            item = self._get(f"incident#{incident_id}")
            if item is None:
                raise StoreError(f"no incident {incident_id}")
            runs = json.loads(item.get("remediations", "[]"))
            if remediation is not None:
                runs.append(remediation)
            new = dict(item)
            new.update(
                status=status or item["status"],
                remediations=json.dumps(runs, default=str),
                updated=stamp,
            )
            if cause is not None:
                new["cause"] = cause
            if summary is not None:
                new["summary"] = summary
            if notified is not None:
                new["notified"] = iso(notified)
            if status == "resolved":
                new["resolved"] = stamp
            try:
                # Optimistic: another writer's remediation record must not be lost.
                self.table.put_item(
                    Item=new,
                    ConditionExpression="updated = :seen AND remediations = :runs",
                    ExpressionAttributeValues={
                        ":seen": item["updated"],
                        ":runs": item.get("remediations", "[]"),
                    },
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    time.sleep(0.01)
                    continue
                raise
            return self._incident(new)
        raise StoreError(f"incident {incident_id}: too many concurrent updates")

    def get_incident(self, incident_id: int) -> Incident | None:
        item = self._get(f"incident#{incident_id}")
        return self._incident(item) if item else None

    def list_incidents(self, statuses: Iterable[str] | None = None) -> list[Incident]:
        wanted = set(statuses) if statuses is not None else None
        return [
            self._incident(i)
            for i in self._by_type("incident")
            if wanted is None or i["status"] in wanted
        ]

    # ------------------------------------------------------------------ housekeeping
    def purge(self, older_than: datetime) -> int:
        cut = iso(older_than)
        doomed: list[str] = []
        for item in self._by_type("session"):
            if item.get("ended") and item["ended"] < cut:
                doomed.append(item["pk"])
        for item in self._by_type("sync"):
            if item["started"] < cut:
                doomed.append(item["pk"])
        for item in self._by_type("incident"):
            if item["status"] == "resolved" and (item.get("resolved") or "~") < cut:
                doomed.append(item["pk"])
        tasks = {i["pk"]: i for i in self._by_type("task")}
        for pk, item in tasks.items():
            if item["status"] not in ("done", "failed") or item["updated"] >= cut:
                continue
            # Keep a finished task that an open task still waits for.
            waiting = [tasks.get(f"task#{_int(d)}") for d in item.get("dependents", [])]
            if any(w and w["status"] not in ("done", "failed") for w in waiting):
                continue
            doomed.append(pk)
        with self.table.batch_writer() as batch:
            for pk in doomed:
                batch.delete_item(Key={"pk": pk})
        return len(doomed)

    def drop(self) -> None:
        """Delete the whole table (tests and teardown of a throw-away fleet store)."""
        self.resource.meta.client.delete_table(TableName=self.table_name)
