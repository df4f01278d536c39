"""A webhook receiver on a real local HTTP server, for the tests, the benchmark and ``make run``.

It records every POST it gets (headers and body) and answers with the status and after the delay it is set to,
so one instance can play a healthy receiver, a failing one (``status=500``) or a slow one (``delay_seconds``).
It verifies nothing itself: the tests verify what it recorded with the ``standardwebhooks`` library, the way a
tenant would. ``python -m devserver.webhook_receiver [--port 3002]`` prints each delivery as it arrives.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """``time.monotonic()`` when the request was read."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        super().server_bind()
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class WebhookReceiver:
    """``with WebhookReceiver() as receiver: receiver.url`` … ``receiver.received``."""

    def __init__(
        self, *, port: int = 0, status: int = 204, delay_seconds: float = 0.0, echo: bool = False, answer_bytes: int = 0
    ) -> None:
        self.status = status
        self.delay_seconds = delay_seconds
        self._answer = b"x" * answer_bytes
        self._echo = echo
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._in_flight = 0
        self.max_in_flight = 0
        self._server = _Server(("127.0.0.1", port), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return self.received
            time.sleep(0.02)
        raise AssertionError(f"expected {count} deliveries, got {len(self.received)}")

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, handler: BaseHTTPRequestHandler) -> None:
        length = min(int(handler.headers.get("Content-Length") or 0), MAX_BODY)
        body = handler.rfile.read(length)
        item = Received(handler.path, {k.lower(): v for k, v in handler.headers.items()}, body, time.monotonic())
        with self._lock:
            self._received.append(item)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        if self._echo:
            print(f"webhook {item.headers.get('webhook-id')} {body.decode(errors='replace')}", flush=True)
        try:
            if self.delay_seconds:
                time.sleep(self.delay_seconds)
            handler.send_response(self.status)
            handler.send_header("Content-Length", str(len(self._answer)))
            handler.end_headers()
            handler.wfile.write(self._answer)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                # The sender may give up (its deadline) before the answer; a real receiver would not notice either.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    receiver._record(self)

            def do_GET(self) -> None:
                self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devserver.webhook_receiver", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3002)
    args = parser.parse_args()
    with WebhookReceiver(port=args.port, echo=True) as receiver:
        print(f"receiving webhooks on {receiver.url} (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
