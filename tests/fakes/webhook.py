"""A loopback webhook receiver (Slack-compatible incoming webhook), strict about what it accepts.

It accepts ``POST <path>`` with ``Content-Type: application/json`` and a JSON object holding a
non-empty string ``text`` (what Slack requires); anything else gets 400/404/405/415 and is
recorded as rejected, so a wrong request fails the test. Received payloads are kept in order.

``accept="apprise"`` makes it apprise's ``json://`` receiver instead: an object with string
``title`` and ``message``, ``version`` and ``type`` (what apprise's custom JSON plugin sends).

Control: in Python (``.received``, ``.rejected``, ``.fail_next(n, status)``,
``.trickle_next(n, seconds)``: answer the next n requests one byte a second, like a stuck
proxy) and over HTTP (``GET /_control/received``, ``POST /_control/fail {"count": n, "status":
500}``, ``POST /_control/trickle {"count": n, "seconds": s}``, ``POST /_control/reset``).
``python -m tests.fakes.webhook --host H --port P`` runs one.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from tests.fakes.base import LoopbackFake, QuietHandler, command_line


class WebhookReceiver(LoopbackFake):
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/hooks/incident",
        accept: str = "slack",
    ):
        super().__init__(host, port)
        self.path = path
        self.accept = accept
        self._trickle: list[float] = []
        self.trickled = 0  # requests answered by trickling
        self.received: list[dict[str, Any]] = []
        self.rejected: list[tuple[int, str]] = []
        self._fail: list[int] = []
        self._lock = threading.Lock()
        self._got = threading.Condition(self._lock)

    # ------------------------------------------------------------ control
    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return self.base_url + self.path

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        with self._lock:
            self._fail.extend([status] * count)

    def trickle_next(self, count: int = 1, seconds: float = 60.0) -> None:
        with self._lock:
            self._trickle.extend([seconds] * count)

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
            self.rejected.clear()
            self._fail.clear()
            self._trickle.clear()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self._got:
            self._got.wait_for(lambda: len(self.received) >= n, timeout)
            return list(self.received)

    # ------------------------------------------------------------ the server
    def handler_class(self) -> type[QuietHandler]:
        fake = self

        class Handler(QuietHandler):
            def _reply(self, status: int, body: Any) -> None:
                self.send_json(status, body)

            def _reject(self, status: int, why: str) -> None:
                with fake._lock:
                    fake.rejected.append((status, why))
                self._reply(status, {"ok": False, "error": why})

            def do_GET(self) -> None:
                if self.path == "/_control/received":
                    with fake._lock:
                        self._reply(200, {"received": fake.received, "rejected": fake.rejected})
                    return
                self._reject(405 if self.path == fake.path else 404, "GET not allowed")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.startswith("/_control/"):
                    return self._control(raw)
                if self.path != fake.path:
                    return self._reject(404, f"unknown path {self.path}")
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if ctype != "application/json":
                    return self._reject(
                        415, f"Content-Type must be application/json, got {ctype!r}"
                    )
                try:
                    doc = json.loads(raw)
                except ValueError:
                    return self._reject(400, "invalid_payload: not JSON")
                if fake.accept == "apprise":
                    if not isinstance(doc, dict) or not all(
                        isinstance(doc.get(k), str) for k in ("title", "message", "type")
                    ):
                        return self._reject(400, "apprise JSON needs title, message and type")
                elif (
                    not isinstance(doc, dict)
                    or not isinstance(doc.get("text"), str)
                    or not doc["text"]
                ):
                    return self._reject(400, "no_text: a non-empty string 'text' is required")
                with fake._lock:
                    trickle = fake._trickle.pop(0) if fake._trickle else 0.0
                    if trickle:
                        fake.trickled += 1
                if trickle:
                    return self._dribble(trickle)
                with fake._lock:
                    status = fake._fail.pop(0) if fake._fail else 200
                if status != 200:
                    return self._reply(status, {"ok": False, "error": "injected failure"})
                with fake._got:
                    fake.received.append(doc)
                    fake._got.notify_all()
                self.send_body(200, b"ok", "text/plain")

            def _dribble(self, seconds: float) -> None:
                # Headers at once, then one byte a second: every read succeeds, none ends.
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(int(seconds) + 1))
                self.end_headers()
                try:
                    for _ in range(int(seconds)):
                        self.wfile.write(b".")
                        self.wfile.flush()
                        time.sleep(1)
                    self.wfile.write(b"\n")
                except OSError:
                    pass  # the client gave up: what we want to see

            def _control(self, raw: bytes) -> None:
                try:
                    doc = json.loads(raw or b"{}")
                except ValueError:
                    return self._reply(400, {"error": "not JSON"})
                if self.path == "/_control/fail":
                    fake.fail_next(int(doc.get("count", 1)), int(doc.get("status", 500)))
                elif self.path == "/_control/trickle":
                    fake.trickle_next(int(doc.get("count", 1)), float(doc.get("seconds", 60)))
                elif self.path == "/_control/reset":
                    fake.reset()
                else:
                    return self._reply(404, {"error": "unknown control"})
                self._reply(200, {"ok": True})

        return Handler


def main() -> None:
    ap = command_line(__doc__)
    ap.add_argument("--path", default="/hooks/incident")
    args = ap.parse_args()
    WebhookReceiver(args.host, args.port, args.path).run_in_foreground()


if __name__ == "__main__":
    main()
