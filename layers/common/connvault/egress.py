"""The one egress guard: every outbound call to a URL a tenant can influence connects through here.

Tenants name URLs connvault calls (discovery, token, revocation endpoints; later webhooks and the proxy). Without
a guard such a URL reaches whatever it names: the instance metadata service, the Lambda Runtime API on
127.0.0.1:9001, the database, anything in the VPC. The guard refuses those by *address*, not by spelling:

- statically (``check_url``, also used at registration by ``validation.require_outbound_url``): https only,
  no userinfo, no trailing dot, no IPv4 spelled as an integer / octal / hex, and an IP literal must be a
  public address;
- at connect time (``guarded_pool_manager``'s connections, ``GuardedConnection``): the host is resolved *once*,
  every address it resolves to must be public (one private answer refuses the whole name, so mixed answers cannot
  be raced), and the socket connects to a vetted address. TLS then runs over that socket with SNI and the
  certificate checked for the hostname, so nothing resolves the name a second time (no DNS rebinding
  between the check and the connect). Redirects are never followed: the transport turns them off.

"Public" means ``is_global`` and none of loopback, private, link-local, CGNAT, multicast, reserved or
unspecified, nor in ``NON_GLOBAL_NETWORKS`` (the IANA special-purpose blocks Python 3.12.1's tables call global);
an IPv6 address that embeds an IPv4 one (IPv4-mapped, IPv4-compatible, NAT64 ``64:ff9b::/96``
and ``64:ff9b:1::/48``, 6to4 ``2002::/16``) is judged by the IPv4 address it carries as well.

Loopback (and plain http to it) is allowed only when the policy says so: ``CONNVAULT_ALLOW_INSECURE_LOOPBACK_URLS``,
which ``make run`` and the tests set and ``template.yaml`` never does.

Errors say "blocked address" or "could not reach the provider" and nothing else: a caller must not be able to
tell a refused port from a timeout from a TLS failure (that would make connvault a port scanner).

The total deadline: a socket timeout bounds each read, so a server trickling one byte every 0.25 s holds a
10-second-timeout call for ever. Inside ``deadline(seconds)`` every socket operation of a guarded connection
(connect, TLS handshake, send, each receive) is given only the time left, and fails once none is.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.ssl_ import create_urllib3_context

if TYPE_CHECKING:
    from concurrent.futures import Future

BLOCKED_MESSAGE = "blocked address"
UNREACHABLE_MESSAGE = "could not reach the provider"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port)`` → the addresses the name resolves to, as strings. Tests fake it; nothing else may."""

NON_GLOBAL_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(block)
    for block in (
        # IANA's special-purpose registries: blocks not globally reachable, or anycast service addresses inside
        # them, where no provider lives. Python 3.12.1's tables call 192.0.0.8-255, 192.88.99.0/24 and 3fff::/20
        # global; later 3.12 patch releases (a Lambda runtime may run one) also call PCP/TURN anycast in
        # 192.0.0.0/24 and sub-blocks of 2001::/23 global; local-use NAT64, 5f00::/16 and the dummy prefix are
        # refused today only because they fall in blocks ``ipaddress`` calls reserved. Listed whole, none of it
        # matters.
        "192.0.0.0/24",  # IETF protocol assignments (3.12.1 knows only .0/29 and .170/31)
        "192.88.99.0/24",  # the 6to4 relay anycast, deprecated by RFC 7526: no longer a destination
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): translates into the operator's own network
        "2001::/23",  # IETF protocol assignments, Teredo and benchmarking among them
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # segment routing SIDs (RFC 9602)
        "100:0:0:1::/64",  # the dummy IPv6 prefix (RFC 9780)
    )
)
"""Refused in addition to what ``ipaddress`` flags: the guard must not depend on how current its tables are."""

_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"^{_OCTET}(\.{_OCTET}){{3}}$")
_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


class BlockedAddress(Exception):
    """The URL names, or its host resolves to, an address the policy refuses. Its text is always the same."""

    def __init__(self) -> None:
        super().__init__(BLOCKED_MESSAGE)


class Unreachable(Exception):
    """Name resolution, connecting, TLS or the deadline failed; which one is deliberately not said."""

    def __init__(self) -> None:
        super().__init__(UNREACHABLE_MESSAGE)


def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer for ``host``, TCP only; an unknown name is ``Unreachable``, not a leak of why."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise Unreachable from None
    return [str(answer[4][0]) for answer in answers]


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """What the guard lets through. The default refuses loopback; only local development widens it."""

    allow_insecure_loopback: bool = False
    resolve: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def from_settings(cls) -> EgressPolicy:
        from connvault.config import get_settings

        return cls(allow_insecure_loopback=get_settings().allow_insecure_loopback_urls)


@dataclass(frozen=True, slots=True)
class Destination:
    """A URL that passed the static checks: its scheme, its (lower-case, ASCII) host and port."""

    scheme: str
    host: str
    port: int
    parts: SplitResult


def check_url(url: str, policy: EgressPolicy) -> Destination:
    """The static half of the guard: everything that can be refused without a DNS answer.

    Raises ``BlockedAddress`` for a scheme, spelling or literal address the policy refuses.
    """
    try:
        parts = urlsplit(url)
        raw_host = parts.hostname
        port = parts.port
    except ValueError:
        raise BlockedAddress from None
    if not raw_host or "@" in parts.netloc or parts.scheme not in ("https", "http"):
        raise BlockedAddress
    if "[" in parts.netloc and ":" not in raw_host:
        raise BlockedAddress  # an IPvFuture literal, ``[v1.x]``: resolved as the DNS name ``v1.x`` otherwise
    host = _ascii_host(raw_host)
    literal = _literal_address(host)
    loopback = literal.is_loopback if literal is not None else host == "localhost"
    if parts.scheme == "http" and not (policy.allow_insecure_loopback and loopback):
        raise BlockedAddress
    if literal is not None:
        vet_address(literal, policy)
    elif host == "localhost" and not policy.allow_insecure_loopback:
        raise BlockedAddress
    if port == 0:
        raise BlockedAddress  # no service listens there, and urllib3 and http.client read it differently
    return Destination(parts.scheme, host, port or (443 if parts.scheme == "https" else 80), parts)


def vet_address(address: IPAddress, policy: EgressPolicy) -> None:
    """Refuse an address that is not public (see the module docstring), in any of its IPv6 disguises."""
    if address.is_loopback:
        if policy.allow_insecure_loopback:
            return
        raise BlockedAddress
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            vet_address(embedded, policy)
            if address.ipv4_mapped is not None or int(address) >> 32 == 0:
                return  # a plain IPv4 address written as IPv6: judged by the IPv4 address alone
    if not _is_public(address):
        raise BlockedAddress


def resolve_vetted(host: str, port: int, policy: EgressPolicy) -> list[IPAddress]:
    """Resolve ``host`` once and vet every answer; one refused answer refuses the name."""
    host = _ascii_host(host)
    literal = _literal_address(host)
    if literal is not None:
        vet_address(literal, policy)
        return [literal]
    if host == "localhost" and not policy.allow_insecure_loopback:
        raise BlockedAddress
    answers = _resolve_in_time(policy.resolve, host, port)
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer.split("%", 1)[0])
        except ValueError:
            raise BlockedAddress from None
        vet_address(address, policy)
        addresses.append(address)
    if not addresses:
        raise Unreachable
    return addresses


def _resolve_in_time(resolve: Resolver, host: str, port: int) -> Sequence[str]:
    """``resolve(host, port)`` within the time left before the deadline. ``getaddrinfo`` takes no timeout, and a
    name served by a slow nameserver (a tenant can run one) held a call past its total deadline, and a refresh past
    its lease. So the lookup goes on in a thread of its own, and the call is ``Unreachable`` when time runs out.

    One thread per name being resolved, shared by every call resolving that name meanwhile, and no pool: with a
    pool of eight workers, eight names behind a dead nameserver (one tenant's custom providers) held them all, and
    every other call's lookup, any tenant's, waited in its queue until its own deadline (an outside probe). A slow
    name now holds one thread until its lookup ends, and other names never wait for it."""
    left = _time_left()
    if left is None:
        return resolve(host, port)
    from concurrent.futures import Future
    from concurrent.futures import TimeoutError as LookupTimedOut

    key = (resolve, host, port)
    with _LOOKUPS_LOCK:
        lookup = _LOOKUPS.get(key)
        if lookup is None:
            if len(_LOOKUPS) >= _LOOKUPS_AT_MOST:
                raise Unreachable
            lookup = _LOOKUPS[key] = Future()
            threading.Thread(target=_look_up, args=(key, lookup), name="connvault-lookup", daemon=True).start()
    try:
        answers = lookup.result(timeout=left)
    except LookupTimedOut:
        raise Unreachable from None
    if answers is None:
        raise Unreachable
    return answers


def _look_up(key: tuple[Resolver, str, int], lookup: Future[Sequence[str] | None]) -> None:
    """One lookup for every call waiting on it: the answers, or None when the name did not resolve (each caller
    then raises an ``Unreachable`` of its own)."""
    resolve, host, port = key
    answers: Sequence[str] | None = None
    try:
        with contextlib.suppress(Exception):  # the name did not resolve, whichever way
            answers = resolve(host, port)
    finally:  # whatever ended the lookup, the name is free again and no caller is left waiting on it
        with _LOOKUPS_LOCK:
            del _LOOKUPS[key]
        lookup.set_result(answers)


_LOOKUPS_LOCK = threading.Lock()
_LOOKUPS: dict[tuple[Resolver, str, int], Future[Sequence[str] | None]] = {}
"""The names being resolved, each with the one lookup every call resolving it waits on."""
_LOOKUPS_AT_MOST = 1024
"""Names resolved at once in a process, each on a thread of its own; past that a call is ``Unreachable`` at once
(a guard against a runaway, far above what the per-tenant quotas of custom providers and endpoints allow one
tenant)."""


_HOSTS_REMEMBERED = 1024
"""Host spellings whose checked form is kept (``_ascii_host``); a spelling past that is checked again."""


@functools.lru_cache(maxsize=_HOSTS_REMEMBERED)
def _ascii_host(host: str) -> str:
    """The host as it will be resolved: lower case, IDNA-encoded; refused with a trailing dot or odd labels.
    Kept per spelling (a refusal is not kept, and raised again): every call checks its host twice, and with
    Python's IDNA codec this was 3% of a scheduled refresh's CPU in a profile of the refresh bench.

    A trailing dot and numeric spellings (``2852039166``, ``0xa9fea9fe``, ``0251.0376.0251.0376``,
    ``127.1``) are refused outright rather than interpreted: the WHATWG URL parser, glibc's ``inet_aton`` and
    Python's ``ipaddress`` disagree on them, and no provider needs them.
    """
    host = host.strip("[]").lower()
    if not host or host.endswith("."):
        raise BlockedAddress
    if ":" in host:
        return host  # an IPv6 literal; ``_literal_address`` parses it
    try:
        spelled = host.encode("idna").decode("ascii")
        # A name Python's codec (IDNA 2003) maps to another is refused: ``faß`` became ``fass``, a soft hyphen
        # vanished, while urllib3 (IDNA 2008) and browsers keep them, so one stored URL reached two hosts.
        if spelled != host and spelled.encode("ascii").decode("idna") != host:
            raise BlockedAddress
    except UnicodeError:
        raise BlockedAddress from None
    host = spelled
    labels = host.split(".")
    if _NUMERIC_LABEL.match(labels[-1]) and not _CANONICAL_IPV4.match(host):
        raise BlockedAddress
    if not all(_HOST_LABEL.match(label) for label in labels):
        raise BlockedAddress
    return host


def _literal_address(host: str) -> IPAddress | None:
    if "%" in host:
        raise BlockedAddress  # an IPv6 zone: a link-local interface, never a provider
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        if ":" in host:
            raise BlockedAddress from None
        return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in _NAT64) or int(address) >> 32 == 0:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_public(address: IPAddress) -> bool:
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and (address.is_site_local or address.teredo is not None))
        or any(address in network for network in NON_GLOBAL_NETWORKS)
    )


# ---- the total deadline -------------------------------------------------------------------------------------

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("connvault_egress_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound every socket operation of guarded connections inside the block by one monotonic deadline."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _time_left(cap: float | None = None) -> float | None:
    """Seconds left before the current deadline (``cap`` if smaller); raises once it has passed."""
    end = _DEADLINE.get()
    if end is None:
        return cap
    left = end - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline")
    return left if cap is None else min(cap, left)


if TYPE_CHECKING:
    _Socket = socket.socket
else:
    _Socket = object  # a mixin at run time: the socket class comes after it in each subclass's bases


class _DeadlineMixin(_Socket):
    """Re-arms the socket's timeout with the time left before each operation http.client and ssl make."""

    def _arm(self) -> None:
        left = _time_left()
        if left is not None:
            self.settimeout(left)

    def recv(self, *args: Any) -> bytes:
        self._arm()
        return super().recv(*args)

    def recv_into(self, *args: Any) -> int:
        self._arm()
        return super().recv_into(*args)

    def send(self, *args: Any) -> int:
        self._arm()
        return super().send(*args)

    def sendall(self, *args: Any) -> None:
        self._arm()
        return super().sendall(*args)


class _DeadlineSocket(_DeadlineMixin, socket.socket):
    pass


class _DeadlineSSLSocket(_DeadlineMixin, ssl.SSLSocket):
    def do_handshake(self, *args: Any) -> None:
        self._arm()
        super().do_handshake(*args)


def _connect_vetted(host: str, port: int, policy: EgressPolicy, connect_timeout: float | None) -> socket.socket:
    """A TCP socket to the first vetted address of ``host`` that accepts, within the deadline."""
    for address in resolve_vetted(host, port, policy):
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = _DeadlineSocket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(_time_left(connect_timeout))
            sock.connect((str(address), port))
        except OSError:
            sock.close()
            continue
        return sock
    raise Unreachable


class _StrictResponse(http.client.HTTPResponse):
    """An answer read no further than it says, for every guarded connection (urllib3 reads through it too).

    ``http.client`` parses a chunk size with ``int(line, 16)``, which takes ``-1``, and then reads "-1 bytes": the
    whole stream, to the connection's end, past any cap (an outside probe streamed 300 MiB into a refresh
    process). And a body that ends before its Content-Length is returned short, as if complete (a truncated refresh
    token stored as the rotated one). Both are ``IncompleteRead`` here: "unreachable" to the caller."""

    def _safe_read(self, amt: int) -> bytes:
        if amt < 0:
            raise http.client.IncompleteRead(b"")
        data: bytes = super()._safe_read(amt)  # type: ignore[misc]
        return data

    def read(self, amt: int | None = None) -> bytes:
        owed = self.length
        data = super().read(amt)
        if owed is not None and amt is not None and len(data) < min(amt, owed):
            raise http.client.IncompleteRead(b"", min(amt, owed) - len(data))
        return data


class _GuardedConnect:
    """``_new_conn`` for urllib3's connections: vet, then connect to the vetted address, never re-resolve."""

    response_class: type[http.client.HTTPResponse] = _StrictResponse

    egress_policy: EgressPolicy
    _dns_host: str
    port: int
    timeout: Any

    def _new_conn(self) -> socket.socket:
        timeout = self.timeout if isinstance(self.timeout, int | float) else None
        # ``_dns_host``, not ``host``: urllib3's ``host`` drops a trailing dot, which the guard refuses.
        return _connect_vetted(self._dns_host, self.port, self.egress_policy, timeout)


class _GuardedHTTPConnection(_GuardedConnect, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnect, HTTPSConnection):
    pass


def guarded_tls_context(ca_certs: str | None = None) -> ssl.SSLContext:
    """The TLS settings of every guarded connection: urllib3's (TLS 1.2 at least, no compression, no tickets),
    certificates required and checked for the URL's hostname by OpenSSL, the deadline on the handshake and on each
    read and write. ``ca_certs`` replaces the system trust store (tests use a local CA); either is loaded once."""
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.sslsocket_class = _DeadlineSSLSocket
    if ca_certs is None:
        context.load_default_certs()
    else:
        context.load_verify_locations(ca_certs)
    context.set_alpn_protocols(["http/1.1"])
    return context


def guarded_pool_manager(
    policy: EgressPolicy, *, maxsize: int, timeout: urllib3.Timeout, tls: ssl.SSLContext
) -> urllib3.PoolManager:
    """A urllib3 ``PoolManager`` whose every connection goes through the guard (no retries, no redirects), with
    ``tls`` (``guarded_tls_context``) for https."""
    http_connection = type("GuardedHTTPConnection", (_GuardedHTTPConnection,), {"egress_policy": policy})
    https_connection = type("GuardedHTTPSConnection", (_GuardedHTTPSConnection,), {"egress_policy": policy})
    manager = urllib3.PoolManager(
        maxsize=maxsize, retries=False, timeout=timeout, ssl_context=tls, cert_reqs="CERT_REQUIRED"
    )
    manager.pool_classes_by_scheme = {
        "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_connection}),
        "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_connection}),
    }
    return manager


class GuardedConnection(http.client.HTTPConnection):
    """One request on ``http.client``'s own connection, connected through the guard and, for https, over ``tls``.

    For calls that never share a connection (token calls, ``HttpTransport.post_form``): without urllib3's pool and
    response wrappers around it, a token call costs about a third less client CPU here (docs/design.md). The Host
    header, ``Accept-Encoding: identity`` and Content-Length it sends are those urllib3 sent through it."""

    response_class = _StrictResponse

    def __init__(
        self, destination: Destination, policy: EgressPolicy, *, connect_timeout: float, tls: ssl.SSLContext | None
    ) -> None:
        super().__init__(destination.host, destination.port, timeout=connect_timeout)
        self._policy = policy
        self._tls = tls if destination.scheme == "https" else None
        self.default_port = 443 if destination.scheme == "https" else 80  # the Host header names no default port

    def connect(self) -> None:
        sock = _connect_vetted(self.host, self.port, self._policy, self.timeout)
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock
