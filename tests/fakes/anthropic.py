"""A fake Anthropic Messages API: a real HTTP server that the real ``anthropic`` SDK talks to.

It speaks ``POST /v1/messages`` and ``GET /v1/models`` with the shapes the SDK expects
(``reference/emulators.md``), and is strict about what it accepts: the API key (``Authorization:
Bearer`` as SDK 2.x sends it, or ``x-api-key``), ``anthropic-version``, and the body (model,
max_tokens, roles alternating from ``user``, every ``tool_use`` of an assistant message answered by
exactly one ``tool_result`` in the next user message, tool names among the declared tools). A
wrong request gets a 400 ``invalid_request_error`` and is recorded, so a test sees why.

Replies are scripted: a queue per API key (or a shared queue), a Python handler, or a default
reply; errors (401/429/529/500...) on demand with ``retry-after-ms`` so SDK retries are fast.

Control from another process over HTTP (the demo, a sandbox host):

- ``POST /_control/reset``
- ``POST /_control/keys`` ``{"keys": ["k1", ...]}``
- ``POST /_control/script`` ``{"key": "k1" | null, "replies": [reply, ...]}``
- ``POST /_control/fail`` ``{"status": 429, "count": 1, "retry_after_ms": 1}``
- ``POST /_control/default`` ``{"reply": reply | null}``
- ``POST /_control/route`` ``{"match": "text", "replies": [reply, ...], "then": reply | null}``:
  a conversation whose first user message contains ``match`` gets these replies in order, then
  ``then`` for ever (a tool loop that never ends, for a session that must hit its turn cap)
- ``GET /_control/requests`` recorded requests (``{"path", "key", "body", "status"}``)

A reply is ``{"content": [{"type": "text", "text": ...} | {"type": "tool_use", "name": ...,
"input": {...}}], "stop_reason"?: ..., "usage"?: {"input_tokens": N, "output_tokens": N}}`` or
``{"error": 429, "message"?: ..., "retry_after_ms"?: N}``.

``python -m tests.fakes.anthropic --host H --port P [--key K]...`` runs it in the foreground.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from tests.fakes.base import LoopbackFake, QuietHandler, command_line

Reply = dict[str, Any]
Handler = Callable[[dict[str, Any]], Reply | None]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
TOP_LEVEL = {
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "stream",
    "thinking",
    "service_tier",
}
BLOCK_KEYS = {
    "text": {"type", "text", "citations", "cache_control"},
    "tool_use": {"type", "id", "name", "input", "cache_control"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
}
MODELS = ("claude-sonnet-4-6", "claude-opus-4-7", "claude-haiku-4-5")


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(
    name: str, input: dict[str, Any] | None = None, id: str | None = None
) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_use", "name": name, "input": input or {}}
    if id is not None:
        block["id"] = id
    return block


def reply(
    *blocks: dict[str, Any], stop_reason: str | None = None, usage: tuple[int, int] | None = None
) -> Reply:
    out: Reply = {"content": list(blocks)}
    if stop_reason is not None:
        out["stop_reason"] = stop_reason
    if usage is not None:
        out["usage"] = {"input_tokens": usage[0], "output_tokens": usage[1]}
    return out


def error(status: int, message: str | None = None, retry_after_ms: int = 1) -> Reply:
    return {"error": status, "message": message, "retry_after_ms": retry_after_ms}


class BadRequest(Exception):
    pass


def validate(body: Any) -> None:
    """Raise BadRequest when the Messages API would refuse this body."""
    if not isinstance(body, dict):
        raise BadRequest("body: expected a JSON object")
    unknown = sorted(set(body) - TOP_LEVEL)
    if unknown:
        raise BadRequest(f"{unknown[0]}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("model: Field required")
    mt = body.get("max_tokens")
    if isinstance(mt, bool) or not isinstance(mt, int) or mt < 1:
        raise BadRequest("max_tokens: expected an integer >= 1")
    if body.get("stream"):
        raise BadRequest("stream: this fake does not stream")
    tools = body.get("tools", [])
    if not isinstance(tools, list):
        raise BadRequest("tools: expected a list")
    names = set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise BadRequest(f"tools.{i}.name: Field required")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise BadRequest(f"tools.{i}.input_schema: expected a JSON schema of type object")
        if tool["name"] in names:
            raise BadRequest(f"tools: tool names must be unique ({tool['name']})")
        names.add(tool["name"])
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise BadRequest("system: expected a string or a list of text blocks")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: at least one message is required")
    pending: list[str] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise BadRequest(f"messages.{i}.role: expected user or assistant")
        want = "user" if i % 2 == 0 else "assistant"
        if msg["role"] != want:
            raise BadRequest(
                f"messages.{i}.role: roles must alternate between user and assistant, from user"
            )
        content = msg.get("content")
        if isinstance(content, str):
            blocks: list[Any] = [{"type": "text", "text": content}]
        elif isinstance(content, list) and content:
            blocks = content
        else:
            raise BadRequest(f"messages.{i}.content: expected a string or a non-empty list")
        answered: list[str] = []
        uses: list[str] = []
        for j, block in enumerate(blocks):
            where = f"messages.{i}.content.{j}"
            if not isinstance(block, dict):
                raise BadRequest(f"{where}: expected a content block")
            kind = block.get("type")
            extra = sorted(set(block) - BLOCK_KEYS.get(kind, set(block)))
            if extra:
                raise BadRequest(f"{where}.{extra[0]}: Extra inputs are not permitted")
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    raise BadRequest(f"{where}.text: Field required")
            elif kind == "tool_use" and msg["role"] == "assistant":
                if not isinstance(block.get("id"), str) or not isinstance(block.get("input"), dict):
                    raise BadRequest(f"{where}: tool_use needs id, name and an input object")
                if block.get("name") not in names:
                    raise BadRequest(f"{where}.name: tool {block.get('name')!r} is not declared")
                uses.append(block["id"])
            elif kind == "tool_result" and msg["role"] == "user":
                if not isinstance(block.get("tool_use_id"), str):
                    raise BadRequest(f"{where}.tool_use_id: Field required")
                c = block.get("content", "")
                if not isinstance(c, str | list):
                    raise BadRequest(f"{where}.content: expected a string or a list of blocks")
                answered.append(block["tool_use_id"])
            else:
                raise BadRequest(
                    f"{where}.type: {kind!r} is not allowed in a {msg['role']} message"
                )
        if msg["role"] == "user":
            if sorted(answered) != sorted(pending) or len(set(answered)) != len(answered):
                if pending:
                    raise BadRequest(
                        f"messages.{i}: `tool_use` ids were found without `tool_result` blocks"
                        f" immediately after: {', '.join(sorted(set(pending) - set(answered)))}"
                        if set(pending) - set(answered)
                        else f"messages.{i}: unexpected `tool_use_id` in `tool_result` blocks"
                    )
                raise BadRequest(
                    f"messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks:"
                    f" {', '.join(answered)}. Each `tool_result` block must have a corresponding"
                    " `tool_use` block in the previous message."
                )
            pending = []
        else:
            pending = uses
    if messages[-1]["role"] != "user":
        raise BadRequest("messages: the last message must be a user message")


def _first_text(body: dict[str, Any]) -> str:
    content = body["messages"][0].get("content")
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content if b.get("type") == "text")


class FakeAnthropic(LoopbackFake):
    """The fake server; ``with FakeAnthropic() as fake: fake.url``."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, keys: tuple[str, ...] = ("test-key",)
    ):
        super().__init__(host, port)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.keys: set[str] = set(keys)
        self.queues: dict[str | None, deque[Reply]] = {}
        self.failures: deque[Reply] = deque()
        self.handler: Handler | None = None
        self.default_reply: Reply | None = None
        self.routes: list[tuple[str, deque[Reply], Reply | None]] = []
        self.requests: list[dict[str, Any]] = []

    def handler_class(self) -> type[_RequestHandler]:
        return type("Handler", (_RequestHandler,), {"owner": self})

    # ---- control
    def reset(self) -> None:
        with self._lock:
            self.queues.clear()
            self.failures.clear()
            self.handler = None
            self.default_reply = None
            self.routes.clear()
            self.requests.clear()

    def set_keys(self, keys: list[str] | tuple[str, ...]) -> None:
        with self._lock:
            self.keys = set(keys)

    def script(self, replies: list[Reply], key: str | None = None) -> None:
        with self._lock:
            self.queues.setdefault(key, deque()).extend(replies)

    def fail(
        self, status: int, count: int = 1, retry_after_ms: int = 1, message: str | None = None
    ) -> None:
        with self._lock:
            for _ in range(count):
                self.failures.append(error(status, message, retry_after_ms))

    def route(self, match: str, replies: list[Reply], then: Reply | None = None) -> None:
        """Answer conversations whose first user message contains ``match`` (the task's title
        is in the daemon's prompt) with ``replies``, then ``then`` for ever; replaces a route
        with the same ``match``."""
        if not match:
            raise ValueError("route: match must be a non-empty string")
        with self._lock:
            self.routes = [r for r in self.routes if r[0] != match]
            self.routes.append((match, deque(replies), then))

    def set_handler(self, handler: Handler | None) -> None:
        with self._lock:
            self.handler = handler

    def set_default(self, value: Reply | None) -> None:
        with self._lock:
            self.default_reply = value

    def message_requests(self) -> list[dict[str, Any]]:
        """The accepted ``POST /v1/messages`` bodies, in order."""
        with self._lock:
            return [
                r["body"]
                for r in self.requests
                if r["path"] == "/v1/messages" and r["status"] == 200
            ]

    # ---- serving
    def _next_reply(self, key: str, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self.failures:
                return self.failures.popleft()
            first = _first_text(body)
            for match, queue, then in self.routes:
                if match in first:
                    if queue:
                        return queue.popleft()
                    if then is not None:
                        return then
            for k in (key, None):
                q = self.queues.get(k)
                if q:
                    return q.popleft()
            handler, default = self.handler, self.default_reply
        if handler is not None:
            got = handler(body)
            if got is not None:
                return got
        if default is not None:
            return default
        return error(500, "fake anthropic: no scripted reply left")

    def _message(self, body: dict[str, Any], spec: Reply) -> dict[str, Any]:
        content = []
        for block in spec.get("content", []):
            block = dict(block)
            if block["type"] == "tool_use":
                block.setdefault("id", f"toolu_fake_{next(self._ids):06d}")
                block.setdefault("input", {})
            content.append(block)
        has_tools = any(b["type"] == "tool_use" for b in content)
        usage = spec.get("usage") or {
            "input_tokens": len(json.dumps(body["messages"])) // 4,
            "output_tokens": 5 + len(json.dumps(content)) // 4,
        }
        return {
            "id": f"msg_fake_{next(self._ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": spec.get("stop_reason") or ("tool_use" if has_tools else "end_turn"),
            "stop_sequence": None,
            "usage": usage,
        }


class _RequestHandler(QuietHandler):
    owner: FakeAnthropic
    protocol_version = "HTTP/1.1"
    one_write = True  # the SDK's many small turns would each wait out a delayed ACK

    def _send(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        request_id = {"request-id": f"req_fake_{next(self.owner._ids):06d}"}
        self.send_json(status, data, headers={**request_id, **(headers or {})})

    def _error(self, status: int, message: str, retry_after_ms: int | None = None) -> None:
        headers = {}
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
            headers["retry-after"] = str(max(0, retry_after_ms // 1000))
        self._send(
            status,
            {
                "type": "error",
                "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
            },
            headers,
        )

    def _body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except ValueError:
            return None

    def _key(self) -> str | None:
        auth = self.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer ") :]
        return self.headers.get("x-api-key")

    def _record(
        self, path: str, key: str | None, body: Any, status: int, error_text: str = ""
    ) -> None:
        with self.owner._lock:
            self.owner.requests.append(
                {"path": path, "key": key, "body": body, "status": status, "error": error_text}
            )

    def _authorised(self, path: str, body: Any) -> str | None:
        key = self._key()
        if not self.headers.get("anthropic-version"):
            self._record(path, key, body, 400, "anthropic-version header missing")
            self._error(400, "anthropic-version: header is required")
            return None
        if key is None or key not in self.owner.keys:
            self._record(path, key, body, 401, "invalid key")
            self._error(401, "invalid x-api-key")
            return None
        return key

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/_control/requests":
            with self.owner._lock:
                self._send(200, list(self.owner.requests))
            return
        if path == "/v1/models":
            if self._authorised(path, None) is None:
                return
            self._record(path, self._key(), None, 200)
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-09-29T00:00:00Z"}
                for m in MODELS
            ]
            self._send(
                200, {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}
            )
            return
        self._error(404, f"not found: {path}")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._body()
        if path.startswith("/_control/"):
            self._control(path, body if isinstance(body, dict) else {})
            return
        if path != "/v1/messages":
            self._error(404, f"not found: {path}")
            return
        key = self._authorised(path, body)
        if key is None:
            return
        try:
            validate(body)
        except BadRequest as exc:
            self._record(path, key, body, 400, str(exc))
            self._error(400, str(exc))
            return
        spec = self.owner._next_reply(key, body)
        if "error" in spec:
            status = int(spec["error"])
            self._record(path, key, body, status, spec.get("message") or "")
            self._error(
                status,
                spec.get("message") or f"fake {ERROR_TYPES.get(status, 'error')}",
                spec.get("retry_after_ms", 1),
            )
            return
        self._record(path, key, body, 200)
        self._send(200, self.owner._message(body, spec))

    def _control(self, path: str, data: dict[str, Any]) -> None:
        fake = self.owner
        if path == "/_control/reset":
            fake.reset()
        elif path == "/_control/keys":
            fake.set_keys(list(data.get("keys", [])))
        elif path == "/_control/script":
            fake.script(list(data.get("replies", [])), data.get("key"))
        elif path == "/_control/fail":
            fake.fail(
                int(data.get("status", 500)),
                int(data.get("count", 1)),
                int(data.get("retry_after_ms", 1)),
            )
        elif path == "/_control/default":
            fake.set_default(data.get("reply"))
        elif path == "/_control/route":
            if not isinstance(data.get("match"), str) or not data["match"]:
                self._error(400, "route: match must be a non-empty string")
                return
            fake.route(data["match"], list(data.get("replies", [])), data.get("then"))
        else:
            self._error(404, f"no control {path}")
            return
        self._send(200, {"ok": True})


def main(argv: list[str] | None = None) -> int:
    ap = command_line(__doc__.splitlines()[0])
    ap.add_argument("--key", action="append", help="an accepted API key (repeatable)")
    args = ap.parse_args(argv)
    fake = FakeAnthropic(args.host, args.port, tuple(args.key or ["test-key"]))
    return fake.run_in_foreground("fake anthropic listening on {url}")


if __name__ == "__main__":
    raise SystemExit(main())
