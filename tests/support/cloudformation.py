"""CloudFormation's side of the custom resource protocol: a local HTTP server playing the pre-signed ResponseURL.

Used by the migration resource tests (handler in-process) and by the artifact tests (handler in a child
process): both see the answer exactly as CloudFormation would, as a PUT with a JSON body.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

EVENTS = Path(__file__).resolve().parents[2] / "events"


@dataclass(frozen=True)
class CfnAnswer:
    """One PUT received at the ResponseURL."""

    received_at: float
    """``time.monotonic()`` when it arrived."""
    path: str
    content_type: str | None
    document: dict[str, Any]


class ResponseUrlServer:
    """Records every answer PUT to it; ``url()`` hands out pre-signed-looking URLs with a fresh signature."""

    def __init__(self) -> None:
        self.answers: list[CfnAnswer] = []
        self.signatures: list[str] = []
        self._arrived = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                document = json.loads(self.rfile.read(length))
                answer = CfnAnswer(time.monotonic(), self.path, self.headers.get("Content-Type"), document)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with server._arrived:
                    server.answers.append(answer)
                    server._arrived.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: the request line holds the signature."""

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def url(self, request_id: str) -> str:
        signature = secrets.token_hex(32)
        self.signatures.append(signature)
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/cfn/{request_id}?X-Amz-Expires=7199&X-Amz-Signature={signature}"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[CfnAnswer]:
        """The first ``count`` answers, waiting up to ``timeout`` seconds for them to arrive."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.answers) >= count, timeout=timeout)
            assert len(self.answers) >= count, f"expected {count} answers, got {len(self.answers)}"
            return list(self.answers[:count])


def cfn_event(kind: str, server: ResponseUrlServer, **overrides: Any) -> dict[str, Any]:
    """``events/migrations_<kind>.json`` with a fresh RequestId and a ResponseURL at ``server``."""
    event = json.loads((EVENTS / f"migrations_{kind}.json").read_text(encoding="utf-8"))
    request_id = str(uuid.uuid4())
    event.update(RequestId=request_id, ResponseURL=server.url(request_id), **overrides)
    return event
