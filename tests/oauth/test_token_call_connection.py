"""A token call goes out on ``http.client``'s own connection through the egress guard
(``HttpTransport._send_alone``, ``egress.GuardedConnection``), not through urllib3's pool: the request it sends is
the one the pool sent; whatever a broken provider answers on it is "unreachable", as through the pool (where
urllib3 wrapped ``http.client``'s own errors), never another exception or text naming the URL; a body compressed
although ``identity`` was asked for is decoded as urllib3 decoded it, within the same cap; and the connection is
closed once the answer is read."""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import zlib
from typing import TYPE_CHECKING

import pytest
import urllib3.connection

from connvault.egress import EgressPolicy, GuardedConnection, check_url
from connvault.errors import ProviderUnavailable
from connvault.oauth.http import MAX_BODY_BYTES, UNREACHABLE_REASON, HttpTransport
from tests.support.raw_http import RawRequest, read_request

if TYPE_CHECKING:
    from collections.abc import Iterator

GOOD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
FORM = {"grant_type": "refresh_token", "refresh_token": "rt-secret"}


class RawProvider:
    """Answers each connection's request with ``answer`` as given, records the request, then records what the client
    sent after the answer."""

    def __init__(self, answer: bytes) -> None:
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/token"
        self.requests: list[RawRequest | None] = []
        self.after_answer: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _serve(self) -> None:
        while True:
            try:
                accepted, _ = self._listener.accept()
            except OSError:
                return
            accepted.settimeout(5.0)
            self.requests.append(read_request(accepted.makefile("rb")))
            threading.Thread(target=self._answer_on, args=(accepted,), daemon=True).start()

    def _answer_on(self, accepted: socket.socket) -> None:
        with accepted as connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.sendall(self._answer)
            with contextlib.suppress(OSError):  # a client still waiting for the rest of a short answer
                self.after_answer.append(connection.recv(65536))  # b"" once the client has closed


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> Iterator[RawProvider]:
    server = RawProvider(request.param)
    yield server
    server.close()


def _answer(body: bytes, *headers: str) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json", f"Content-Length: {len(body)}", *headers]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    "provider",
    [
        b"HTTP/1.1 abc\r\n\r\n",  # no status code
        b"SSH-2.0-OpenSSH_9.6\r\n",  # not HTTP
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",  # a header line past http.client's limit
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}",  # the body cut short
        b"",  # closed without a word
        _answer(b"not gzip at all", "Content-Encoding: gzip"),  # a body that is not what it says it is
    ],
    indirect=True,
    ids=["bad status", "not http", "long header", "short body", "no answer", "bad gzip"],
)
def test_a_broken_answer_on_a_token_calls_own_connection_is_unreachable(provider: RawProvider) -> None:
    transport = HttpTransport(deadline_seconds=2.0)
    try:
        with pytest.raises(ProviderUnavailable) as raised:
            transport.post_form(provider.url, FORM)
    finally:
        transport.close()

    assert raised.value.reason == UNREACHABLE_REASON
    assert "127.0.0.1" not in str(raised.value)
    assert "rt-secret" not in str(raised.value)


@pytest.mark.parametrize("provider", [GOOD], indirect=True)
def test_a_token_calls_own_connection_is_closed_once_its_answer_is_read(provider: RawProvider) -> None:
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


@pytest.mark.parametrize("provider", [GOOD], indirect=True)
@pytest.mark.parametrize("path", ["/token", "/oauth 2/tøken?tenant=a b&x=ü"])
def test_a_token_call_sends_the_request_the_pool_sends(provider: RawProvider, path: str) -> None:
    """Byte for byte: request line (the target spelled as urllib3 spells it), every header, the body."""
    url = provider.url.removesuffix("/token") + path
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Connection": "close", "Accept": "application/json"}
    body = b"grant_type=refresh_token&refresh_token=rt"
    transport = HttpTransport(deadline_seconds=2.0)
    try:
        transport.request("POST", url, body=body, headers=headers, reuse=True)
        transport.request("POST", url, body=body, headers=headers, reuse=False)
    finally:
        transport.close()

    pooled, alone = provider.requests
    assert alone == pooled
    assert alone is not None
    assert alone.head[0].startswith("POST /")
    assert "Accept-Encoding: identity" in alone.head


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


TOKEN = b'{"access_token": "at", "token_type": "Bearer"}'


@pytest.mark.parametrize(
    "provider",
    [
        _answer(gzip.compress(TOKEN), "Content-Encoding: gzip"),
        _answer(gzip.compress(TOKEN), "Content-Encoding: X-GZIP"),
        _answer(zlib.compress(TOKEN), "Content-Encoding: deflate"),
        _answer(_raw_deflate(TOKEN), "Content-Encoding: deflate"),
    ],
    indirect=True,
    ids=["gzip", "x-gzip", "deflate", "raw deflate"],
)
def test_a_token_answer_compressed_although_identity_was_asked_is_decoded(provider: RawProvider) -> None:
    transport = HttpTransport(deadline_seconds=2.0)
    try:
        answer = transport.post_form(provider.url, FORM)
    finally:
        transport.close()

    assert answer.body == TOKEN


@pytest.mark.parametrize("provider", [_answer(b"\x00\x01br?", "Content-Encoding: br")], indirect=True)
def test_an_encoding_urllib3_would_not_decode_is_left_as_it_came(provider: RawProvider) -> None:
    transport = HttpTransport(deadline_seconds=2.0)
    try:
        answer = transport.post_form(provider.url, FORM)
    finally:
        transport.close()

    assert answer.body == b"\x00\x01br?"


@pytest.mark.parametrize(
    "provider", [_answer(gzip.compress(b" " * (MAX_BODY_BYTES * 8)), "Content-Encoding: gzip")], indirect=True
)
def test_a_compressed_answer_past_the_cap_once_decoded_is_too_large(provider: RawProvider) -> None:
    """A few KiB on the wire that inflate to 8 MiB: the cap counts decoded bytes, and no more are decoded."""
    transport = HttpTransport(deadline_seconds=2.0)
    try:
        with pytest.raises(ProviderUnavailable) as raised:
            transport.post_form(provider.url, FORM)
    finally:
        transport.close()

    assert raised.value.reason == "response_too_large"


@pytest.mark.parametrize(
    "url",
    [
        "https://provider.example/token",
        "https://provider.example:8443/token",
        "http://127.0.0.1/token",
        "https://[2606:4700::1111]/token",
    ],
)
def test_the_host_header_is_urllib3s_default_ports_included(url: str) -> None:
    """Over https to port 443 too, which a loopback provider cannot show: no port named when it is the scheme's
    default (``http.client``'s plain connection would write ``:443``). Each connection writes into one end of a
    socket pair, in place of the socket the guard would connect."""
    destination = check_url(url, EgressPolicy(allow_insecure_loopback=True))
    pool_class = (
        urllib3.connection.HTTPSConnection if destination.scheme == "https" else urllib3.connection.HTTPConnection
    )
    ours = GuardedConnection(destination, EgressPolicy(), connect_timeout=1.0, tls=None)
    theirs = pool_class(destination.host, destination.port)
    heads = []
    for connection in (ours, theirs):
        sending, receiving = socket.socketpair()
        with sending, receiving:
            connection.sock = sending
            connection.request(
                "POST", "/token", body=b"grant_type=x", headers={"User-Agent": "connvault", "Connection": "close"}
            )
            request = read_request(receiving.makefile("rb"))
        assert request is not None
        heads.append(request.head)

    assert heads[0] == heads[1]
    host = next(line for line in heads[0] if line.startswith("Host: "))
    assert (":443" in host, ":80" in host) == (False, False)
