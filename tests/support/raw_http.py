"""Reading an HTTP request off a raw socket, for test providers that must misbehave below what an HTTP server
library lets them do (answer twice, answer garbage, watch the connection close, see the request byte by byte)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import parse_qs


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
