"""Reading an HTTP request off a raw socket, for test providers that must misbehave below what an HTTP server
library lets them do (answer twice, answer garbage, watch the connection close, see the request byte by byte)."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import parse_qs


class RawServer:
    """A server on 127.0.0.1 (``url`` names its ``/token``) that hands each connection, with Nagle off, to
    ``handle`` on a thread of its own. Subclasses set what ``handle`` needs before calling ``__init__``."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/token"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def handle(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.handle, args=(connection,), daemon=True).start()


@dataclass(frozen=True)
class RawRequest:
    head: tuple[str, ...]
    """The request line and each header line as sent, line ends dropped."""
    body: bytes


def read_request(reader: BinaryIO) -> RawRequest | None:
    """The next request, its body read to its ``Content-Length``; None when the client has closed."""
    lines = []
    while (line := reader.readline()) not in (b"\r\n", b""):
        lines.append(line.decode("latin-1").rstrip("\r\n"))
    if not lines:
        return None
    length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
    return RawRequest(tuple(lines), reader.read(length))


def read_form_request(reader: BinaryIO) -> dict[str, list[str]] | None:
    """The next request's form fields; None when the client has closed."""
    request = read_request(reader)
    return None if request is None else parse_qs(request.body.decode())
