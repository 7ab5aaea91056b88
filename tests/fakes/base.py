"""What every loopback fake shares: its server's life (start, stop, ``with``, its URL, running in
the foreground until a signal) and a quiet request handler.

A fake subclasses :class:`LoopbackFake` and says which handler serves it
(:meth:`handler_class`); its handler subclasses :class:`QuietHandler`. The fakes' protocols,
strictness and controls are their own.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LoopbackFake:
    """A threaded HTTP server on ``host:port`` (port 0: any free one, known after :meth:`start`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        """The request handler class bound to this fake (a subclass that knows it)."""
        raise NotImplementedError

    def start(self) -> Self:
        self._server = ThreadingHTTPServer((self.host, self.port), self.handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"fake-{type(self).__name__}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url

    def run_in_foreground(self, banner: str = "{url}") -> int:
        """``python -m tests.fakes.X``: start, print the banner (``{url}`` filled in), serve until
        SIGTERM, SIGINT or SIGHUP, then stop (so that :meth:`stop`'s clean-up runs on each)."""
        done = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda *_: done.set())
        try:
            self.start()
            print(banner.format(url=self.url), flush=True)
            done.wait()
        finally:
            self.stop()
        return 0


def command_line(description: str) -> argparse.ArgumentParser:
    """The command line of ``python -m tests.fakes.X``: ``--host`` and ``--port`` (0: any free one),
    then the fake's own options."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    return ap


class QuietHandler(BaseHTTPRequestHandler):
    """Logs nothing (the tests read what the fake recorded); answers with a body and its length."""

    # Headers and body in one write (True) or two. One write spares a client waiting for the
    # body the delayed ACK (40 ms) that a second small write meets: the Anthropic fake, whose
    # client makes many small turns, opts in; the others answer as they always have.
    one_write = False

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_body(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.one_write:
            self._headers_buffer.append(b"\r\n" + data)
            self.flush_headers()
        else:
            self.end_headers()
            self.wfile.write(data)

    def send_json(
        self,
        status: int,
        body: Any,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_body(status, json.dumps(body).encode(), content_type, headers)
