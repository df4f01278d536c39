"""Reading an HTTP request off a raw socket, for test providers that must misbehave below what an HTTP server
library lets them do (answer twice, answer garbage, watch the connection close)."""

from __future__ import annotations

from typing import BinaryIO
from urllib.parse import parse_qs


def read_form_request(reader: BinaryIO) -> dict[str, list[str]] | None:
    """The next request's form fields, its body read to its ``Content-Length``; None when the client has closed."""
    lines = []
    while (line := reader.readline()) not in (b"\r\n", b""):
        lines.append(line.decode("latin-1"))
    if not lines:
        return None
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    return parse_qs(reader.read(length).decode())
