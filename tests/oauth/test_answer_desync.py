"""A provider (or a proxy in front of it) that answers one token request twice must not hand the second copy to the
next request: token answers say nothing about the request they answer, and the next request on a kept-alive
connection may be another end user's refresh, or another tenant's (an outside probe got one tenant's user's tokens
into another tenant's connection that way). ``HttpTransport.post_form`` uses a connection per call."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from typing import TYPE_CHECKING

import pytest

from connvault.oauth.http import HttpTransport
from tests.support.raw_http import RawServer, read_form_request

if TYPE_CHECKING:
    from collections.abc import Iterator


class TwiceAnsweringProvider(RawServer):
    """Answers each token request with an access token named after its refresh token, and sends the first answer
    on each connection a second time a little later, while holding back its answers to any later request on that
    connection until the copy has gone out."""

    DUPLICATE_AFTER = 0.3

    def __init__(self) -> None:
        self.connections = 0
        super().__init__()

    def handle(self, connection: socket.socket) -> None:
        self.connections += 1
        reader = connection.makefile("rb")
        first = True
        with connection:
            while request := read_form_request(reader):
                answer = _answer(request)
                if first:
                    connection.sendall(answer)
                    threading.Timer(self.DUPLICATE_AFTER, _send_quietly, (connection, answer)).start()
                    first = False
                else:
                    time.sleep(2 * self.DUPLICATE_AFTER)
                    _send_quietly(connection, answer)


def _answer(fields: dict[str, list[str]]) -> bytes:
    body = json.dumps({"access_token": f"at-for-{fields['refresh_token'][0]}", "token_type": "Bearer"}).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _send_quietly(connection: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the client closed it: exactly what it should do
        connection.sendall(data)


@pytest.fixture
def provider() -> Iterator[TwiceAnsweringProvider]:
    server = TwiceAnsweringProvider()
    yield server
    server.close()


def test_a_second_copy_of_an_answer_never_reaches_the_next_token_request(provider: TwiceAnsweringProvider) -> None:
    transport = HttpTransport(deadline_seconds=2.0)
    try:
        alice = transport.post_form(provider.url, {"grant_type": "refresh_token", "refresh_token": "alice"})
        bob = transport.post_form(provider.url, {"grant_type": "refresh_token", "refresh_token": "bob"})
    finally:
        transport.close()

    assert json.loads(alice.body)["access_token"] == "at-for-alice"
    assert json.loads(bob.body)["access_token"] == "at-for-bob"
    assert provider.connections == 2
