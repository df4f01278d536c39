"""The statements on every request, over one plain pg8000 connection with prepared statements.

The authorizer (API key lookup) and token fetch (connection read) run on every API call. Through a SQLAlchemy
session with a tenant transaction they cost ~4 round trips; here each is one: the connection read is a
``SECURITY INVOKER`` function that binds the session to the tenant, so RLS stays in force, and while the session
stays bound a plain SELECT that filters on the tenant as well (migration 0090). Every other statement here sets
its own tenant for its own transaction or needs none (a definer), so the session's tenant reaches none of them. The
``last_used_at`` write is a separate call made at most once a minute per connection from each process, and the
rate limiter's shared count one made every N requests of a tenant (``services/rate_limits.py``).
On the token route that count rides on the read's own statement instead (``read_connection_counting``, migration
0086; for a bound session, a plain statement that updates the count and reads). One connection per process: a Lambda
runs one request at a time.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from connvault.connection_status import ConnectionStatus
from connvault.db.native import PreparedConnection, as_uuid, connect_as_app, run_reconnecting_once
from connvault.errors import NotFound
from connvault.once import once

if TYPE_CHECKING:
    from collections.abc import Callable


class ConnectionSnapshot(NamedTuple):
    """What token fetch needs of a connection; ``credentials`` is still sealed."""

    id: UUID
    status: ConnectionStatus
    credential_type: str
    credentials: bytes | None
    token_type: str | None
    scopes: tuple[str, ...]
    expires_at: datetime | None
    has_refresh_token: bool
    last_error_code: str | None
    refresh_margin_seconds: int
    issued_at: datetime | None
    """When the current token was issued (grant or last refresh): with ``expires_at``, its lifetime."""

    def ensure_servable(self) -> None:
        """See ``ConnectionStatus.ensure_servable``."""
        self.status.ensure_servable(self.id, has_refresh_token=self.has_refresh_token, reason=self.last_error_code)


class ProxyTarget(NamedTuple):
    """What the proxy needs of a connection: token fetch's snapshot, and where and how to call its provider.

    ``api_auth`` and ``config_keys`` are the provider's declarations as stored (parsed by the proxy);
    ``connection_config`` the connection's own values."""

    snapshot: ConnectionSnapshot
    provider_slug: str
    api_base_url: str | None
    api_auth: dict[str, Any]
    config_keys: dict[str, Any]
    connection_config: dict[str, str]
    last_refresh_at: datetime | None


class ApiKeyLookup(NamedTuple):
    tenant_id: UUID
    secret_sha256: bytes
    revoked: bool


# Ids go out as their 32 hex digits, which ``uuid`` input reads as it reads the hyphenated form: ``UUID.hex`` costs a
# third of ``str(UUID)``, twice per token fetch.
# The metadata column comes as its text (json's cast to text only relabels it), decoded once per connection and
# state (``_snapshot``).
_READ_CONNECTION = (
    "SELECT credentials, metadata::text FROM public.connvault_token_reads "
    "WHERE id = CAST(:id AS uuid) AND tenant_id = CAST(:tenant AS uuid)"
)
_READ_CONNECTION_BINDING = (
    "SELECT credentials, metadata::text "
    "FROM connvault_token_read_binding_session(CAST(:tenant AS uuid), CAST(:id AS uuid))"
)
_READ_CONNECTION_COUNTING = (
    "SELECT credentials, metadata::text, window_requests, window_left "
    "FROM connvault_token_read_counting(CAST(:tenant AS uuid), CAST(:id AS uuid), :requests, :window)"
)
# ``connvault_count_requests``'s update of a count row that exists, and the read, in one plain statement for a
# session bound to the tenant; both filter on the tenant as well as RLS does. It commits without waiting for a WAL
# flush, as the function does (the counts are UNLOGGED; measured here, a count waited ~0.2 ms otherwise). No count
# row (a tenant's first count, or the rows an UNLOGGED table loses in a crash) and a session bound elsewhere both
# answer no row: the function then counts.
_READ_CONNECTION_COUNTING_BOUND = """WITH clock AS (
    SELECT t.at, to_timestamp(floor(extract(epoch FROM t.at) / CAST(:window AS integer)) * CAST(:window AS integer))
        AS window_start,
        set_config('synchronous_commit', 'off', true) AS commit_mode
    FROM (SELECT clock_timestamp() AS at) t
), counted AS (
    UPDATE public.tenant_request_counts c
    SET requests = CASE WHEN c.window_start >= clock.window_start THEN c.requests + CAST(:requests AS integer)
                        ELSE CAST(:requests AS integer) END,
        window_start = greatest(c.window_start, clock.window_start)
    FROM clock
    WHERE c.tenant_id = CAST(:tenant AS uuid)
    RETURNING c.requests,
        extract(epoch FROM c.window_start + make_interval(secs => CAST(:window AS integer)) - clock.at)
            ::double precision AS window_left
)
SELECT r.credentials, r.metadata::text, counted.requests, counted.window_left
FROM counted LEFT JOIN public.connvault_token_reads r
    ON r.id = CAST(:id AS uuid) AND r.tenant_id = CAST(:tenant AS uuid)"""
_READ_PROXY_TARGET = (
    "SELECT credentials, metadata::text, provider_slug, api_base_url, api_auth, config_keys, connection_config, "
    "last_refresh_epoch FROM connvault_read_proxy_target(CAST(:tenant AS uuid), CAST(:id AS uuid))"
)
_TOUCH_CONNECTION = (
    "SELECT connvault_touch_connection(CAST(:tenant AS uuid), CAST(:id AS uuid), make_interval(secs => :every))"
)
_TOUCHED_MEMORY = 10_000
_FIND_API_KEY = "SELECT tenant_id, secret_sha256, revoked_at FROM connvault_find_api_key(:key_id)"
_TENANT_KEY_SALT = "SELECT connvault_tenant_key_salt(CAST(:tenant AS uuid))"
_COUNT_REQUESTS = "SELECT requests, window_left FROM connvault_count_requests(CAST(:tenant AS uuid), :added, :window)"


class RequestWindow(NamedTuple):
    """A tenant's requests in the current rate-limit window, over every process, and the seconds left in it."""

    requests: int
    seconds_left: float


class FastReads:
    def __init__(self, connect: Callable[[], PreparedConnection]) -> None:
        self._connect = connect
        self._touched: OrderedDict[UUID, float] = OrderedDict()
        self._lock = threading.Lock()
        self._connection: PreparedConnection | None = None
        self._session_tenant: UUID | None = None
        """The tenant the connection's session is bound to, as far as this process knows (migration 0090)."""

    def read_connection(self, tenant_id: UUID, connection_id: UUID) -> ConnectionSnapshot | None:
        """The connection as token fetch needs it, read under the tenant's RLS.

        While the session is bound to the tenant, a plain prepared SELECT that filters on the tenant too; otherwise,
        or when that finds nothing (not found, or a session bound elsewhere than this process believes), the
        function that binds the session and reads (migration 0090): one round trip, two for an id not found."""
        params = {"tenant": tenant_id.hex, "id": connection_id.hex}
        rows = self._plain_if_bound(tenant_id, _READ_CONNECTION, _READ_CONNECTION_BINDING, params, binds=True)
        return _snapshot(connection_id, *rows[0]) if rows else None

    def read_connection_counting(
        self, tenant_id: UUID, connection_id: UUID, requests: int, window_seconds: int
    ) -> tuple[ConnectionSnapshot | None, RequestWindow]:
        """``read_connection``, adding ``requests`` to the tenant's shared count in the same statement
        (``count_requests``; migration 0086): the rate limiter's report carried by the read, not a round trip.

        While the session is bound to the tenant, one plain statement that updates the count row and reads; the
        function when there is no row to update (nothing was counted then) or the session is not bound. The plain
        one costs a fetch in twenty about a fifth of what the function did, whose write and nested plpgsql also
        slowed the reads after it (docs/design.md)."""
        params = {"tenant": tenant_id.hex, "id": connection_id.hex, "requests": requests, "window": window_seconds}
        [[sealed, metadata, counted, seconds_left]] = self._plain_if_bound(
            tenant_id, _READ_CONNECTION_COUNTING_BOUND, _READ_CONNECTION_COUNTING, params, binds=False
        )
        snapshot = None if metadata is None else _snapshot(connection_id, sealed, metadata)
        return snapshot, _window(counted, seconds_left, window_seconds)

    def read_proxy_target(self, tenant_id: UUID, connection_id: UUID) -> ProxyTarget | None:
        """The connection as the proxy needs it (token fetch's snapshot and its provider's API), under RLS."""
        rows = self._run(_READ_PROXY_TARGET, tenant=tenant_id.hex, id=connection_id.hex)
        if not rows:
            return None
        sealed, metadata, slug, base_url, api_auth, config_keys, config, refreshed_epoch = rows[0]
        return ProxyTarget(
            _snapshot(connection_id, sealed, metadata),
            slug,
            base_url,
            api_auth,
            config_keys,
            config,
            None if refreshed_epoch is None else datetime.fromtimestamp(refreshed_epoch, UTC),
        )

    def record_use(self, tenant_id: UUID, connection_id: UUID, every_seconds: int) -> None:
        """Record a use: at most once per ``every_seconds`` from this process (the database keeps it to once per
        interval across processes)."""
        now = time.monotonic()
        last = self._touched.get(connection_id)
        if last is not None and now - last < every_seconds:
            return
        self._run(_TOUCH_CONNECTION, tenant=tenant_id.hex, id=connection_id.hex, every=every_seconds)
        with self._lock:  # the dev server runs functions side by side in one process
            self._touched[connection_id] = now
            self._touched.move_to_end(connection_id)
            while len(self._touched) > _TOUCHED_MEMORY:
                self._touched.popitem(last=False)

    def find_api_key(self, key_id: str) -> ApiKeyLookup | None:
        rows = self._run(_FIND_API_KEY, key_id=key_id)
        if not rows:
            return None
        tenant_id, secret_sha256, revoked_at = rows[0]
        return ApiKeyLookup(as_uuid(tenant_id), bytes(secret_sha256), revoked_at is not None)

    def tenant_key_salt(self, tenant_id: UUID) -> UUID:
        """The salt in the tenant's KMS encryption context (a SECURITY DEFINER function: read before any tenant is
        bound); ``NotFound`` once the tenant is deleted."""
        rows = self._run(_TENANT_KEY_SALT, tenant=tenant_id.hex)
        if not rows or rows[0][0] is None:
            raise NotFound(f"tenant {tenant_id} not found")
        return as_uuid(rows[0][0])

    def count_requests(self, tenant_id: UUID, added: int, window_seconds: int) -> RequestWindow:
        """Add ``added`` admitted requests to the tenant's shared count; the window's total (0 for a tenant that
        no longer exists)."""
        rows = self._run(_COUNT_REQUESTS, tenant=tenant_id.hex, added=added, window=window_seconds)
        if not rows:
            return _window(None, None, window_seconds)
        requests, seconds_left = rows[0]
        return _window(requests, seconds_left, window_seconds)

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()

    def _run(self, sql: str, **params: Any) -> list[list[Any]]:
        """Run a prepared statement on the process's one connection, one statement at a time (the lock): a
        connection that died while the Lambda was frozen is replaced once, one that saw an error mid-statement is
        never reused (``run_reconnecting_once``). A statement error that is not about the database being
        unavailable propagates as the driver's: nothing here can retry a bug away."""
        with self._lock:
            return self._statement(sql, params)

    def _plain_if_bound(
        self, tenant_id: UUID, plain: str, function: str, params: dict[str, Any], *, binds: bool
    ) -> list[list[Any]]:
        """``plain`` while the session is bound to ``tenant_id``; ``function``, which sets the tenant itself, when
        the session is not bound or ``plain`` answered no row (nothing there, or a session bound elsewhere than
        this process believes). ``binds``: the function binds the session to the tenant, for the next ``plain``."""
        with self._lock:
            bound = self._connection is not None and self._session_tenant == tenant_id
            rows = self._statement(plain, params) if bound else None
            if not rows:
                rows = self._statement(function, params)
                if binds:
                    self._session_tenant = tenant_id
        return rows

    def _statement(self, sql: str, params: dict[str, Any]) -> list[list[Any]]:
        """``_run`` with the lock held."""
        return run_reconnecting_once(self._take, self._keep, sql, params, statement_errors_retryable=False)

    def _take(self) -> PreparedConnection:
        """The connection, out of ``self`` while its statement runs (put back only if it succeeds), or a new one,
        bound to no tenant."""
        connection, self._connection = self._connection, None
        if connection is None:
            self._session_tenant = None
            connection = self._connect()
        return connection

    def _keep(self, connection: PreparedConnection) -> None:
        self._connection = connection


def _window(requests: int | None, seconds_left: float | None, window_seconds: int) -> RequestWindow:
    """What a count answered; its columns NULL (or no row) for a tenant that no longer exists: nothing counted."""
    if requests is None or seconds_left is None:
        return RequestWindow(0, float(window_seconds))
    return RequestWindow(int(requests), float(seconds_left))


_STATUSES = {status.value: status for status in ConnectionStatus}
"""``ConnectionStatus(value)`` without the enum's call machinery (a fifth of building a snapshot)."""
_DECODED_MEMORY = 4096


def _snapshot(connection_id: UUID, sealed: bytes | None, metadata: str) -> ConnectionSnapshot:
    """The snapshot from a read's two columns: the sealed credentials, and the rest as one json array (the driver
    decodes each column in Python; migration 0084), taken as its text."""
    return _decoded(connection_id, metadata)._replace(credentials=sealed)


@lru_cache(maxsize=_DECODED_MEMORY)
def _decoded(connection_id: UUID, metadata: str) -> ConnectionSnapshot:
    """The snapshot without its credentials, decoded once per connection and state: a backend fetches the same
    connections over and over, and decoding the array and building the snapshot cost 10-12 µs of a warm read
    (docs/design.md). The text names no secret: status, kinds, scopes, times, an error code."""
    status, kind, token_type, scopes, expires_epoch, has_refresh, error, margin, issued_epoch = json.loads(metadata)
    return ConnectionSnapshot(
        id=connection_id,
        status=_STATUSES[status],
        credential_type=kind,
        credentials=None,
        token_type=token_type,
        scopes=tuple(scopes or ()),
        expires_at=None if expires_epoch is None else datetime.fromtimestamp(expires_epoch, UTC),
        has_refresh_token=has_refresh,
        last_error_code=error,
        refresh_margin_seconds=margin,
        issued_at=None if issued_epoch is None else datetime.fromtimestamp(issued_epoch, UTC),
    )


@once
def get_fast_reads() -> FastReads:
    """The process's ``FastReads``, built on first use."""
    return FastReads(connect_as_app)


def reset_fast_reads() -> None:
    get_fast_reads.cache_clear(FastReads.close)
