"""A token call goes out on a connection of its own that the guarded pool opens but never takes back
(``HttpTransport._send_alone``): whatever a broken provider answers on it is "unreachable", as through the pool
(where urllib3 wrapped ``http.client``'s own errors), never another exception or text naming the URL; and the
connection is closed once the answer is read."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import TYPE_CHECKING

import pytest

from connvault.errors import ProviderUnavailable
from connvault.oauth.http import UNREACHABLE_REASON, HttpTransport
from tests.support.raw_http import read_form_request

if TYPE_CHECKING:
    from collections.abc import Iterator

GOOD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class OneAnswerProvider:
    """Answers each connection's request with ``answer`` as given, then records what the client sent after it."""

    def __init__(self, answer: bytes) -> None:
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/token"
        self.after_answer: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _serve(self) -> None:
        with self._listener.accept()[0] as connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.settimeout(5.0)
            read_form_request(connection.makefile("rb"))
            connection.sendall(self._answer)
            with contextlib.suppress(OSError):  # a client still waiting for the rest of a short answer
                self.after_answer.append(connection.recv(65536))  # b"" once the client has closed


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> Iterator[OneAnswerProvider]:
    server = OneAnswerProvider(request.param)
    yield server
    server.close()


@pytest.mark.parametrize(
    "provider",
    [
        b"HTTP/1.1 abc\r\n\r\n",  # no status code
        b"SSH-2.0-OpenSSH_9.6\r\n",  # not HTTP
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",  # a header line past http.client's limit
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}",  # the body cut short
        b"",  # closed without a word
    ],
    indirect=True,
    ids=["bad status", "not http", "long header", "short body", "no answer"],
)
def test_a_broken_answer_on_a_token_calls_own_connection_is_unreachable(provider: OneAnswerProvider) -> None:
    transport = HttpTransport(deadline_seconds=2.0)
    try:
        with pytest.raises(ProviderUnavailable) as raised:
            transport.post_form(provider.url, {"grant_type": "refresh_token", "refresh_token": "rt-secret"})
    finally:
        transport.close()

    assert raised.value.reason == UNREACHABLE_REASON
    assert "127.0.0.1" not in str(raised.value)
    assert "rt-secret" not in str(raised.value)


@pytest.mark.parametrize("provider", [GOOD], indirect=True)
def test_a_token_calls_own_connection_is_closed_once_its_answer_is_read(provider: OneAnswerProvider) -> None:
    transport = HttpTransport(deadline_seconds=2.0)
    try:
        answer = transport.post_form(provider.url, {"grant_type": "refresh_token", "refresh_token": "rt"})
        for _ in range(100):  # the transport still open: nothing but the call itself closed the connection
            if provider.after_answer:
                break
            threading.Event().wait(0.02)
    finally:
        transport.close()

    assert (answer.status, answer.body) == (200, b"{}")
    assert provider.after_answer == [b""]
