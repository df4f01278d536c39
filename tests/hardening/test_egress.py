"""The egress guard (issue 13.2) and the total deadline of a provider call (13.4).

Name resolution is faked in-process and every connect attempt is recorded, so the refusals are proven to
happen before any packet is sent; the only sockets that do open are to servers this test runs on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from connvault import egress
from connvault.egress import BLOCKED_MESSAGE, UNREACHABLE_MESSAGE, BlockedAddress, EgressPolicy, check_url
from connvault.errors import InvalidInput, ProviderUnavailable
from connvault.oauth.http import HttpTransport
from connvault.validation import require_outbound_url
from tests.support.keys import certificate_chain

ROOT = Path(__file__).resolve().parents[2]

BLOCKED_URLS = [
    # the list
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.5/",
    "https://[fd00::1]/",
    "https://[::ffff:169.254.169.254]/",
    "https://2852039166/",
    "https://0xa9fea9fe/",
    "https://0.0.0.0/",
    "http://127.0.0.1:9001/2018-06-01/runtime/invocation/next",
    "http://localhost:5432/",
    # the same families in other spellings
    "https://127.0.0.1/",
    "https://localhost/",
    "https://[::1]/",
    "https://[::]/",
    "https://127.1/",
    "https://0251.0376.0251.0376/",
    "https://0xa9.0xfe.0xa9.0xfe/",
    "https://169.254.169.254./",
    "https://example.com./",
    "https://user:pw@example.com/",
    "https://example.com@169.254.169.254/",
    "https://example.com:0/token",
    # names Python's codec (IDNA 2003) maps to another name, which urllib3 (IDNA 2008) would not: one stored URL,
    # two hosts (outside probe, 2026-11-30); and an IPvFuture literal, otherwise resolved as a DNS name
    "https://fa\u00df.example/token",
    "https://ex\u00adample.com/",
    "https://\uff45xample.com/",
    "https://[v1.x]/",  # port 0: urllib3 tried it, http.client took the default port (outside probe)
    "https://[::ffff:a9fe:a9fe]/",
    "https://[::ffff:10.0.0.1]/",
    "https://[::169.254.169.254]/",
    "https://[64:ff9b::169.254.169.254]/",
    "https://[64:ff9b:1::a00:1]/",
    "https://[2002:a9fe:a9fe::1]/",
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    "https://[fe80::1]/",
    "https://[fe80::1%25eth0]/",
    "https://[fec0::1]/",
    "https://[ff02::1]/",
    "https://172.16.0.1/",
    "https://192.168.1.1/",
    "https://100.64.0.1/",
    "https://100.127.255.254/",
    "https://192.0.0.1/",
    "https://198.18.0.1/",
    "https://224.0.0.1/",
    "https://239.255.255.250/",
    "https://240.0.0.1/",
    "https://255.255.255.255/",
    # non-global blocks Python 3.12.1's tables call global (an outside probe's finds), in every spelling
    "https://192.0.0.8/",
    "https://192.0.0.9/",
    "https://192.0.0.10/",
    "https://192.0.0.200/",
    "https://192.88.99.1/",
    "https://[3fff::1]/",
    "https://[5f00::1]/",
    "https://[2001:1::1]/",
    "https://[::ffff:192.0.0.8]/",
    "https://[::192.0.0.200]/",
    "https://[64:ff9b::c000:9]/",
    "https://[2002:c000:a::1]/",
    "ftp://example.com/",
    "http://example.com/",
    "file:///etc/passwd",
]

PRIVATE_ANSWERS = [
    "169.254.169.254",
    "10.0.0.5",
    "fd00::1",
    "::ffff:169.254.169.254",
    "0.0.0.0",
    "127.0.0.1",
    "::1",
    "100.64.0.1",
    "64:ff9b::a9fe:a9fe",
    "2002:a00:1::1",
    "fe80::1%2",
    "224.0.0.1",
    "192.168.0.10",
    "192.0.0.8",
    "3fff::1",
    "::ffff:192.0.0.10",
    "2002:c000:c8::1",
]
"""What a tenant's DNS name may resolve to; each one refuses the name."""


IANA_NOT_GLOBALLY_REACHABLE = [
    # https://www.iana.org/assignments/iana-ipv4-special-registry: "Globally Reachable" False
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",  # refused whole, its PCP and TURN anycast addresses (.9, .10) with it
    "192.0.0.0/29",
    "192.0.0.8/32",
    "192.0.0.170/32",
    "192.0.0.171/32",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "240.0.0.0/4",
    "255.255.255.255/32",
    # https://www.iana.org/assignments/iana-ipv6-special-registry: "Globally Reachable" False (::ffff:0:0/96 is
    # judged by the IPv4 address it carries, above)
    "::1/128",
    "::/128",
    "64:ff9b:1::/48",
    "100::/64",
    "100:0:0:1::/64",
    "2001::/23",  # refused whole, its anycast sub-blocks with it
    "2001:2::/48",
    "2001:10::/28",
    "2001:db8::/32",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
]


@dataclass
class FakeNetwork:
    """A resolver answering from a table, and a record of every connect the guard attempted."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)
    connects: list[tuple[str, int]] = field(default_factory=list)

    def resolve(self, host: str, _port: int) -> Sequence[str]:
        self.lookups.append(host)
        return self.answers.get(host, [])

    def policy(self, *, allow_insecure_loopback: bool = False) -> EgressPolicy:
        return EgressPolicy(allow_insecure_loopback=allow_insecure_loopback, resolve=self.resolve)


REUSE = pytest.mark.parametrize("reuse", [True, False], ids=["pooled", "own connection"])
"""Both ways a call goes out: on the guarded pool's kept-alive connections, or, as a token call, on ``http.client``'s
own connection (``egress.GuardedConnection``)."""


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> FakeNetwork:
    fake = FakeNetwork()
    real_connect = egress._DeadlineSocket.connect

    def recording_connect(sock: socket.socket, address: tuple[str, int]) -> None:
        fake.connects.append(address)
        real_connect(sock, address)

    monkeypatch.setattr(egress._DeadlineSocket, "connect", recording_connect)
    return fake


@REUSE
@pytest.mark.parametrize("url", BLOCKED_URLS)
def test_every_internal_address_and_odd_spelling_is_refused_before_any_connect(
    url: str, network: FakeNetwork, reuse: bool
) -> None:
    with pytest.raises(BlockedAddress):
        check_url(url, network.policy())
    transport = HttpTransport(2.0, policy=network.policy())
    with pytest.raises(ProviderUnavailable) as caught:
        transport.request("GET", url, reuse=reuse)
    assert (caught.value.message, caught.value.reason) == (BLOCKED_MESSAGE, "blocked_address")
    assert network.connects == []


@pytest.mark.parametrize("block", IANA_NOT_GLOBALLY_REACHABLE)
@pytest.mark.parametrize("allow_insecure_loopback", [False, True], ids=["production", "development"])
def test_every_block_iana_marks_not_globally_reachable_is_refused_in_every_spelling(
    block: str, allow_insecure_loopback: bool
) -> None:
    network = ipaddress.ip_network(block)
    if network.is_loopback and allow_insecure_loopback:
        pytest.skip("the development setting allows loopback by design")
    policy = EgressPolicy(allow_insecure_loopback=allow_insecure_loopback)
    for address in {network[0], network[network.num_addresses // 2], network[-1]}:
        for spelling in _spellings(address):
            with pytest.raises(BlockedAddress):
                egress.vet_address(spelling, policy)


def _spellings(address: egress.IPAddress) -> list[egress.IPAddress]:
    """The address, and for IPv4 the IPv6 forms that carry it: IPv4-mapped, IPv4-compatible, NAT64, 6to4."""
    if isinstance(address, ipaddress.IPv6Address):
        return [address]
    value = int(address)
    return [
        address,
        ipaddress.IPv6Address(0xFFFF << 32 | value),
        ipaddress.IPv6Address(value),
        ipaddress.IPv6Address(0x64FF9B << 96 | value),
        ipaddress.IPv6Address(0x2002 << 112 | value << 80 | 1),
    ]


@REUSE
@pytest.mark.parametrize("answer", PRIVATE_ANSWERS)
def test_a_dns_name_resolving_to_an_internal_address_is_refused_before_any_connect(
    answer: str, network: FakeNetwork, reuse: bool
) -> None:
    network.answers["innocent.example"] = [answer]
    transport = HttpTransport(2.0, policy=network.policy())

    with pytest.raises(ProviderUnavailable) as caught:
        transport.request("POST", "https://innocent.example/token", body=b"grant_type=refresh_token", reuse=reuse)

    assert caught.value.message == BLOCKED_MESSAGE
    assert network.lookups == ["innocent.example"]
    assert network.connects == []


@REUSE
def test_one_internal_answer_among_public_ones_refuses_the_name(network: FakeNetwork, reuse: bool) -> None:
    network.answers["mixed.example"] = ["93.184.216.34", "169.254.169.254"]

    with pytest.raises(ProviderUnavailable) as caught:
        HttpTransport(2.0, policy=network.policy()).request("GET", "https://mixed.example/", reuse=reuse)

    assert caught.value.message == BLOCKED_MESSAGE
    assert network.connects == []


def test_loopback_is_allowed_only_by_the_development_setting(network: FakeNetwork) -> None:
    allowed = network.policy(allow_insecure_loopback=True)
    assert check_url("http://127.0.0.1:8080/token", allowed).port == 8080
    assert check_url("http://localhost:8080/token", allowed).host == "localhost"
    # but the setting widens loopback only: the rest stays refused
    for url in ("http://10.0.0.5/", "https://169.254.169.254/", "http://example.com/", "https://[fd00::1]/"):
        with pytest.raises(BlockedAddress):
            check_url(url, allowed)


def test_public_hosts_pass_the_static_check(network: FakeNetwork) -> None:
    policy = network.policy()
    assert check_url("https://oauth2.googleapis.com/token", policy).host == "oauth2.googleapis.com"
    assert check_url("https://8.8.8.8/", policy).port == 443
    assert check_url("https://[2606:4700:4700::1111]:8443/", policy).port == 8443
    assert check_url("https://bücher.example/", policy).host == "xn--bcher-kva.example"


@pytest.mark.parametrize("url", BLOCKED_URLS[:9])
def test_registration_refuses_what_the_guard_would_refuse(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EgressPolicy, "from_settings", classmethod(lambda cls: cls()))

    with pytest.raises(InvalidInput) as caught:
        require_outbound_url(url, "custom_provider.token_url")

    assert caught.value.field == "custom_provider.token_url"
    assert url not in caught.value.message


def test_the_template_never_allows_loopback_urls() -> None:
    template = (ROOT / "template.yaml").read_text()
    assert "ALLOW_INSECURE_LOOPBACK" not in template


# ---- one resolution, TLS checked for the hostname ------------------------------------------------------------


@dataclass
class TlsServer:
    port: int
    ca_file: str
    server_names: list[str | None]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    """An https server on 127.0.0.1 whose certificate names ``provider.test``; it records each SNI it is sent."""
    ca, leaf, key = certificate_chain(tmp_path, "provider.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf, key)
    names: list[str | None] = []
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            raw.settimeout(2)
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield TlsServer(listener.getsockname()[1], str(ca), names)
    stop.set()
    thread.join(5)
    listener.close()


@REUSE
def test_a_name_is_resolved_once_and_tls_is_checked_for_the_name_not_the_address(
    tls_server: TlsServer, network: FakeNetwork, reuse: bool
) -> None:
    network.answers["provider.test"] = ["127.0.0.1"]
    transport = HttpTransport(5.0, policy=network.policy(allow_insecure_loopback=True), ca_certs=tls_server.ca_file)

    url = f"https://provider.test:{tls_server.port}/.well-known/openid-configuration"
    response = transport.request("GET", url, reuse=reuse)

    assert response.status == 200
    assert network.lookups == ["provider.test"]
    assert network.connects == [("127.0.0.1", tls_server.port)]
    assert tls_server.server_names == ["provider.test"]
    transport.close()


@REUSE
def test_a_certificate_for_another_name_is_unreachable(
    tls_server: TlsServer, network: FakeNetwork, reuse: bool
) -> None:
    network.answers["impostor.test"] = ["127.0.0.1"]
    transport = HttpTransport(5.0, policy=network.policy(allow_insecure_loopback=True), ca_certs=tls_server.ca_file)

    with pytest.raises(ProviderUnavailable) as caught:
        transport.request("GET", f"https://impostor.test:{tls_server.port}/", reuse=reuse)

    assert caught.value.message == UNREACHABLE_MESSAGE


# ---- no port-scan oracle ---------------------------------------------------------------------------------------


@REUSE
def test_refused_silent_and_non_tls_ports_fail_with_one_message(network: FakeNetwork, reuse: bool) -> None:
    """Whatever listens (or not) at a port, the caller learns only that the provider could not be reached."""
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) and never answers
    plain = socket.create_server(("127.0.0.1", 0))  # answers plain text to a TLS hello
    stop = threading.Event()

    def answer_plain() -> None:
        plain.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = plain.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    thread = threading.Thread(target=answer_plain, daemon=True)
    thread.start()
    policy = network.policy(allow_insecure_loopback=True)
    transport = HttpTransport(0.5, policy=policy)
    messages = set()
    try:
        for port in (closed_port, silent.getsockname()[1], plain.getsockname()[1]):
            with pytest.raises(ProviderUnavailable) as caught:
                transport.request("GET", f"https://127.0.0.1:{port}/", reuse=reuse)
            messages.add((caught.value.message, caught.value.reason, str(caught.value)))
    finally:
        stop.set()
        thread.join(5)
        silent.close()
        plain.close()
    assert messages == {(UNREACHABLE_MESSAGE, "unreachable", UNREACHABLE_MESSAGE)}


# ---- the total deadline (13.4) ---------------------------------------------------------------------------------


def _trickling_server(payload: bytes, interval: float, stop: threading.Event) -> socket.socket:
    """A server that reads the request and sends ``payload`` one byte every ``interval`` seconds."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.recv(65536)
                for byte in payload:
                    if stop.wait(interval):
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break

    threading.Thread(target=serve, daemon=True).start()
    return listener


@pytest.mark.parametrize(
    "payload",
    [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n" + b" " * 40,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n" + b"X-Pad: a\r\n" * 40,
    ],
    ids=["trickled_body", "trickled_headers"],
)
def test_a_trickling_provider_is_cut_off_at_the_total_deadline(payload: bytes) -> None:
    stop = threading.Event()
    listener = _trickling_server(payload, 0.25, stop)
    transport = HttpTransport(1.0)
    try:
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable) as caught:
            transport.post_form(f"http://127.0.0.1:{listener.getsockname()[1]}/token", {"grant_type": "x"})
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        listener.close()
        transport.close()
    assert caught.value.message == UNREACHABLE_MESSAGE
    # The deadline is 1 s; each byte arrives well within any per-read timeout, so only a total deadline stops it.
    assert 0.9 <= elapsed < 2.0


@REUSE
def test_a_slow_name_lookup_is_cut_off_at_the_total_deadline(reuse: bool) -> None:
    """``getaddrinfo`` takes no timeout: a tenant's slow nameserver held a call past its deadline (an outside probe
    measured 6 s against 2)."""
    release = threading.Event()

    def slow(host: str, port: int) -> list[str]:
        release.wait(10)
        return ["93.184.216.34"]

    transport = HttpTransport(1.0, policy=EgressPolicy(resolve=slow))
    try:
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable) as caught:
            transport.request("GET", "https://slow.example/", reuse=reuse)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        transport.close()
    assert caught.value.message == UNREACHABLE_MESSAGE
    assert elapsed < 2.0


def test_names_behind_a_dead_nameserver_never_hold_up_another_names_lookup() -> None:
    """With a shared pool of eight lookup workers, eight names behind a dead nameserver (one tenant's custom
    providers) held every worker, and another tenant's call waited in the queue until its deadline (outside probe,
    2026-11-30). Twenty such names are being resolved here while a fast name resolves at once."""
    release = threading.Event()

    def resolve(host: str, port: int) -> list[str]:
        if host.startswith("slow"):
            release.wait(10)
        return ["93.184.216.34"]

    policy = EgressPolicy(resolve=resolve)
    stuck = [
        threading.Thread(target=_lookup_ignoring_failure, args=(f"slow{n}.example", policy), daemon=True)
        for n in range(20)
    ]
    try:
        for thread in stuck:
            thread.start()
        time.sleep(0.2)  # every slow name's call is waiting on its lookup (which the old pool had queued)
        started = time.monotonic()
        with egress.deadline(1.0):
            answers = egress.resolve_vetted("fast.example", 443, policy)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        for thread in stuck:
            thread.join(5)
    assert [str(address) for address in answers] == ["93.184.216.34"]
    assert elapsed < 0.5


def _lookup_ignoring_failure(host: str, policy: EgressPolicy) -> None:
    with egress.deadline(0.5), contextlib.suppress(egress.Unreachable):
        egress.resolve_vetted(host, 443, policy)


def test_calls_resolving_one_name_meanwhile_share_its_lookup() -> None:
    release = threading.Event()
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        release.wait(10)
        return ["93.184.216.34"]

    policy = EgressPolicy(resolve=resolve)
    answers: list[list[egress.IPAddress]] = []

    def call() -> None:
        with egress.deadline(5.0):
            answers.append(egress.resolve_vetted("shared.example", 443, policy))

    callers = [threading.Thread(target=call, daemon=True) for _ in range(8)]
    for caller in callers:
        caller.start()
    time.sleep(0.2)
    release.set()
    for caller in callers:
        caller.join(5)
    assert lookups == ["shared.example"]
    assert len(answers) == 8


def test_past_the_names_resolved_at_once_a_call_is_unreachable_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def slow(host: str, port: int) -> list[str]:
        release.wait(10)
        return ["93.184.216.34"]

    monkeypatch.setattr(egress, "_LOOKUPS_AT_MOST", 2)
    policy = EgressPolicy(resolve=slow)
    holding = [threading.Thread(target=_lookup_ignoring_failure, args=(f"h{n}.example", policy)) for n in range(2)]
    try:
        for thread in holding:
            thread.start()
        time.sleep(0.1)
        started = time.monotonic()
        with egress.deadline(2.0), pytest.raises(egress.Unreachable):
            egress.resolve_vetted("third.example", 443, policy)
        assert time.monotonic() - started < 0.5
    finally:
        release.set()
        for thread in holding:
            thread.join(5)
