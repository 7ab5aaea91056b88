"""A loopback heartbeat receiver (healthchecks.io style), strict about what it accepts.

``POST``/``GET`` ``/ping/<uuid>`` records a ping and ``/ping/<uuid>/fail`` a failure signal,
each with its time and body (``ok`` / ``degraded ...`` from ``jada-agent notify heartbeat``);
anything else is 404 and recorded as rejected. Like healthchecks, :meth:`status` says ``new``
(never pinged), ``up``, ``down`` (the last ping is older than ``period + grace``, or the last
signal was a failure) and :meth:`gaps` lists the silences longer than a period.

Control: in Python and over HTTP (``GET /_control/pings``, ``GET /_control/status?period=P&grace=G``,
``POST /_control/reset``). ``python -m tests.fakes.heartbeat --host H --port P`` runs one.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.base import LoopbackFake, QuietHandler, command_line


class HeartbeatReceiver(LoopbackFake):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, check: str | None = None):
        super().__init__(host, port)
        self.check = check or str(uuid.uuid4())
        self.pings: list[dict[str, Any]] = []
        self.rejected: list[tuple[int, str]] = []
        self._lock = threading.Condition()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"{self.base_url}/ping/{self.check}"

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self._lock:
            self._lock.wait_for(lambda: len(self.pings) >= n, timeout)
            return list(self.pings)

    def status(self, period: float, grace: float, now: float | None = None) -> str:
        now = time.time() if now is None else now
        with self._lock:
            if not self.pings:
                return "new"
            last = self.pings[-1]
        if last["kind"] == "fail" or now - last["t"] > period + grace:
            return "down"
        return "up"

    def gaps(self, period: float, now: float | None = None) -> list[tuple[float, float]]:
        """Silences longer than ``period`` (between pings, and from the last one to now)."""
        now = time.time() if now is None else now
        with self._lock:
            times = [p["t"] for p in self.pings]
        out = [(a, b) for a, b in itertools.pairwise(times) if b - a > period]
        if times and now - times[-1] > period:
            out.append((times[-1], now))
        return out

    def reset(self) -> None:
        with self._lock:
            self.pings.clear()
            self.rejected.clear()

    def handler_class(self) -> type[QuietHandler]:
        fake = self

        class Handler(QuietHandler):
            def _reply(self, status: int, body: Any) -> None:
                self.send_json(status, body)

            def _ping(self, body: bytes) -> None:
                parts = urlsplit(self.path)
                if parts.path.startswith("/_control/"):
                    return self._control(parts)
                base = f"/ping/{fake.check}"
                kind = {base: "ok", base + "/fail": "fail"}.get(parts.path.rstrip("/"))
                if kind is None:
                    with fake._lock:
                        fake.rejected.append((404, parts.path))
                    return self._reply(404, {"error": "no such check"})
                with fake._lock:
                    fake.pings.append(
                        {"t": time.time(), "kind": kind, "body": body.decode("utf-8", "replace")}
                    )
                    fake._lock.notify_all()
                self.send_body(200, b"OK", "text/plain")

            def _control(self, parts: Any) -> None:
                q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/_control/pings":
                    with fake._lock:
                        return self._reply(200, {"pings": fake.pings, "rejected": fake.rejected})
                if parts.path == "/_control/status":
                    period, grace = float(q.get("period", 300)), float(q.get("grace", 60))
                    return self._reply(
                        200,
                        {"status": fake.status(period, grace), "gaps": fake.gaps(period)},
                    )
                if parts.path == "/_control/reset":
                    fake.reset()
                    return self._reply(200, {"ok": True})
                return self._reply(404, {"error": "unknown control"})

            def do_GET(self) -> None:
                self._ping(b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._ping(self.rfile.read(min(length, 100_000)))

        return Handler


def main() -> None:
    ap = command_line(__doc__)
    ap.add_argument("--check", default="jada-demo")
    args = ap.parse_args()
    HeartbeatReceiver(args.host, args.port, args.check).run_in_foreground()


if __name__ == "__main__":
    main()
