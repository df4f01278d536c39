"""A token call goes out on ``http.client``'s own connection through the egress guard
(``HttpTransport._send_alone``, ``egress.GuardedConnection``), not through urllib3's pool: the request it sends is
the one the pool sent; whatever a broken provider answers on it is "unreachable", as through the pool (where
urllib3 wrapped ``http.client``'s own errors), never another exception or text naming the URL; a body compressed
although ``identity`` was asked for is decoded as urllib3 decoded it, within the same cap; and the connection is
closed once the answer is read."""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import threading
import tracemalloc
import zlib
from typing import TYPE_CHECKING

import pytest
import urllib3.connection

from connvault.egress import EgressPolicy, GuardedConnection, check_url
from connvault.errors import ProviderUnavailable
from connvault.oauth.http import MAX_BODY_BYTES, UNREACHABLE_REASON, HttpResponse, HttpTransport
from tests.support.raw_http import RawRequest, RawServer, read_request

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

GOOD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
FORM = {"grant_type": "refresh_token", "refresh_token": "rt-secret"}


class RawProvider(RawServer):
    """Answers each connection's request with ``answer`` as given, then ``then(connection)`` if given (which writes
    more as it likes); records the request, then what the client sent after the answer."""

    def __init__(self, answer: bytes, then: Callable[[socket.socket], None] | None = None) -> None:
        self._answer = answer
        self._then = then
        self.requests: list[RawRequest | None] = []
        self.after_answer: list[bytes] = []
        super().__init__()

    def handle(self, connection: socket.socket) -> None:
        # OSError: the client closed first (it stopped reading, or gave up on a short answer).
        with connection, contextlib.suppress(OSError):
            connection.settimeout(5.0)
            self.requests.append(read_request(connection.makefile("rb")))
            connection.sendall(self._answer)
            if self._then is not None:
                self._then(connection)
            self.after_answer.append(connection.recv(65536))  # b"" once the client has closed


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> Iterator[RawProvider]:
    server = RawProvider(request.param)
    yield server
    server.close()


def _answer(body: bytes, *headers: str) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json", f"Content-Length: {len(body)}", *headers]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


def _token_call(url: str) -> HttpResponse:
    transport = HttpTransport(deadline_seconds=2.0)
    try:
        return transport.post_form(url, FORM)
    finally:
        transport.close()


def _token_call_refused(url: str) -> ProviderUnavailable:
    """What a token call to ``url`` raised; it must raise."""
    with pytest.raises(ProviderUnavailable) as raised:
        _token_call(url)
    return raised.value


@pytest.mark.parametrize(
    "provider",
    [
        b"HTTP/1.1 abc\r\n\r\n",  # no status code
        b"SSH-2.0-OpenSSH_9.6\r\n",  # not HTTP
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",  # a header line past http.client's limit
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}",  # the body cut short
        b"",  # closed without a word
        _answer(b"not gzip at all", "Content-Encoding: gzip"),  # a body that is not what it says it is
        _answer(gzip.compress(b'{"access_token": "at"}')[:-12], "Content-Encoding: gzip"),  # a stream ending early
    ],
    indirect=True,
    ids=["bad status", "not http", "long header", "short body", "no answer", "bad gzip", "gzip cut short"],
)
def test_a_broken_answer_on_a_token_calls_own_connection_is_unreachable(provider: RawProvider) -> None:
    refused = _token_call_refused(provider.url)

    assert refused.reason == UNREACHABLE_REASON
    assert "127.0.0.1" not in str(refused)
    assert "rt-secret" not in str(refused)


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
    assert _token_call(provider.url).body == TOKEN


@pytest.mark.parametrize("provider", [_answer(b"\x00\x01br?", "Content-Encoding: br")], indirect=True)
def test_an_encoding_urllib3_would_not_decode_is_left_as_it_came(provider: RawProvider) -> None:
    assert _token_call(provider.url).body == b"\x00\x01br?"


@pytest.mark.parametrize(
    "provider", [_answer(gzip.compress(b" " * (MAX_BODY_BYTES * 8)), "Content-Encoding: gzip")], indirect=True
)
def test_a_compressed_answer_past_the_cap_once_decoded_is_too_large(provider: RawProvider) -> None:
    """A few KiB on the wire that inflate to 8 MiB: the cap counts decoded bytes, and no more are decoded."""
    assert _token_call_refused(provider.url).reason == "response_too_large"


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


# ---- an answer read no further than it says (outside probe, 2026-11-30) ------------------------------------------


def _stream_forever(connection: socket.socket) -> None:
    for _ in range(64):  # 64 MiB, far past the cap, unless the client stops reading first
        connection.sendall(b"A" * 2**20)


REUSE = pytest.mark.parametrize("reuse", [False, True], ids=["own connection", "pooled"])


@REUSE
def test_a_negative_chunk_size_is_refused_not_read_to_the_end_of_the_stream(reuse: bool) -> None:
    """``int("-1", 16)`` is -1, and ``http.client`` (and urllib3 through it) read "-1 bytes" as everything until
    the connection ends: a provider streamed hundreds of MiB into the process's memory past the 1 MiB cap."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n"
    provider = RawProvider(head, _stream_forever)
    transport = HttpTransport(deadline_seconds=10.0)
    tracemalloc.start()
    try:
        with pytest.raises(ProviderUnavailable) as raised:
            transport.request("POST", provider.url, body=b"grant_type=x", reuse=reuse)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        transport.close()
        provider.close()

    assert raised.value.reason == UNREACHABLE_REASON
    assert peak < 4 * MAX_BODY_BYTES


@REUSE
def test_a_body_ending_before_its_content_length_is_unreachable_not_a_shorter_answer(reuse: bool) -> None:
    """The provider closes cleanly after part of its body: taken as complete, a form-encoded answer would carry a
    truncated refresh token, stored as the rotated one."""
    body = b"access_token=AT&refresh_token=RT_ROTATED_0123456789"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % len(
        body
    )
    provider = RawProvider(head + body[:36], lambda connection: connection.shutdown(socket.SHUT_WR))
    transport = HttpTransport(deadline_seconds=2.0)
    try:
        with pytest.raises(ProviderUnavailable) as raised:
            transport.request("POST", provider.url, body=b"grant_type=x", reuse=reuse)
    finally:
        transport.close()
        provider.close()

    assert raised.value.reason == UNREACHABLE_REASON


@pytest.mark.parametrize(
    "provider", [_answer(gzip.compress(os.urandom(MAX_BODY_BYTES - 100)), "Content-Encoding: gzip")], indirect=True
)
def test_a_compressed_answer_past_the_cap_as_it_came_is_too_large_not_cut_short(provider: RawProvider) -> None:
    """Random bytes grow when compressed: the body is past the cap on the wire though not once decoded. Read no
    further than the cap, it could only be decoded in part, which was returned as if whole."""
    assert _token_call_refused(provider.url).reason == "response_too_large"


def _final_answer_later(connection: socket.socket) -> None:
    threading.Event().wait(0.4)
    connection.sendall(_answer(b'{"tenant": "A", "data": "private-of-A"}'))


@pytest.mark.parametrize(
    "provider", [(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n", _final_answer_later)]
)
def test_an_interim_answer_leaves_no_connection_whose_final_answer_the_next_call_would_read(
    provider: tuple[bytes, Callable[[socket.socket], None]],
) -> None:
    """``http.client`` returns a 103 or 102 as the answer; the final one follows on the same connection. Put back in
    the pool, that connection handed it to the next call to the host, another tenant's proxied call included
    (outside probe, 2026-11-30). Each call here gets the interim answer on a connection of its own."""
    server = RawProvider(*provider)
    transport = HttpTransport(deadline_seconds=2.0)
    try:
        first = transport.request("GET", server.url)
        second = transport.request("GET", server.url)
    finally:
        transport.close()
        server.close()

    assert (first.status, second.status) == (103, 103)
    assert b"private-of-A" not in second.body
