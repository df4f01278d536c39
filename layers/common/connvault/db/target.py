"""Where the database is and how to log in, however it was configured (URL, or host + Secrets Manager).

Kept free of SQLAlchemy so that the authorizer and the token-fetch read path, which talk to PostgreSQL
through plain pg8000, do not pay for importing it.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.exceptions
import pg8000.native

from connvault.config import Settings, get_settings
from connvault.errors import ConfigurationError, DatabaseBusy
from connvault.redacted import Redacted

INVALID_PASSWORD = "28P01"
REFUSED_SQLSTATES = frozenset({"53300", "57P03"})
"""The server would not take a new connection: too_many_connections, cannot_connect_now (starting up, shutting
down, in recovery during a failover). Nothing to drop; the caller retries later."""
LOST_SQLSTATES = frozenset({"57P01", "57P02", "25006"})
"""The connection is gone or points at the wrong server: admin_shutdown and crash_shutdown (a failover or
restart ended the backend), read_only_sql_transaction (the host answered as a reader: an Aurora writer demoted
by a failover, reached through a stale DNS answer). Class 08 (connection_exception) belongs here too."""


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """Connection parameters, however they were given (URL, or host + Secrets Manager secret)."""

    user: str
    password: Redacted[str] | None
    database: str
    host: str | None = None
    port: int = 5432
    unix_sock: str | None = None
    ssl: bool = False
    ssl_ca_file: str | None = None
    connect_timeout: float = 5.0

    def pg8000_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "user": self.user,
            "database": self.database,
            "timeout": self.connect_timeout,
            "application_name": "connvault",
        }
        if self.password is not None:
            kwargs["password"] = self.password.reveal()
        if self.unix_sock:
            kwargs["unix_sock"] = self.unix_sock
        else:
            kwargs["host"] = self.host or "localhost"
            kwargs["port"] = self.port
        # pg8000's default (None) asks every server for TLS and, for that, builds a fresh SSLContext with the
        # system's CA store per connection (~30 ms of CPU): a context is built once here, or none asked for.
        kwargs["ssl_context"] = tls_context(self.ssl_ca_file or None) if self.ssl else False
        return kwargs

    def connect(self, *, role: str | None = None, limits: StatementLimits | None = None) -> pg8000.native.Connection:
        """A plain pg8000 connection (migrations, the token-fetch read path)."""
        connection = pg8000.native.Connection(**self.pg8000_kwargs())
        self.end_connect_timeout(connection, limits)
        for statement in session_setup(role, limits):
            connection.run(statement)
        return connection

    def end_connect_timeout(self, connection: Any, limits: StatementLimits | None) -> None:
        """pg8000 keeps its ``timeout`` as the socket's timeout for the connection's whole life, so a statement
        waiting on a lock for longer than the *connect* timeout failed on the client while the server went on
        (and the connection was left mid-statement). Once connected, the server's own limits bound statements;
        the socket keeps only a backstop past them, for a server that stopped answering at all (none for the
        migration runner, which sets its own limits and runs under the custom resource's timeout)."""
        backstop = None if limits is None else limits.backstop_seconds(self.connect_timeout)
        connection._usock.settimeout(backstop)


@lru_cache(maxsize=4)
def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The process's TLS context for database connections (``Settings.db_ssl_ca_file``): verifying the server's
    certificate and host name against ``ca_file``, or, without one, encrypting only."""
    if ca_file is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError):
        raise ConfigurationError(
            "CONNVAULT_DB_SSL_CA_FILE is not a readable PEM bundle", field="db_ssl_ca_file"
        ) from None


class StatementLimits(NamedTuple):
    """How long one statement may run, and wait for a row or advisory lock, before the server cancels it with a
    typed error (``57014`` / ``55P03``: ``DatabaseBusy``). Sized per job through the settings (the template
    gives token fetch and the authorizer short ones); the migration runner sets its own, long ones."""

    statement_timeout_ms: int
    lock_timeout_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> StatementLimits:
        return cls(settings.db_statement_timeout_ms, settings.db_lock_timeout_ms)

    def backstop_seconds(self, connect_timeout: float) -> float:
        return self.statement_timeout_ms / 1000 + connect_timeout


def session_setup(role: str | None, limits: StatementLimits | None) -> list[str]:
    """Statements run once on every new application connection."""
    statements = []
    if role:
        statements.append(f"SET ROLE {quote_identifier(role)}")
    if limits is not None:
        statements.append(f"SET statement_timeout = {int(limits.statement_timeout_ms)}")
        statements.append(f"SET lock_timeout = {int(limits.lock_timeout_ms)}")
    return statements


_TIMED_OUT = "the database did not answer in time; retry shortly"
_CONFLICTED = "the database ended the transaction in a conflict with another; retry shortly"
BUSY_SQLSTATES = {
    # query_canceled (``statement_timeout``) and lock_not_available (``lock_timeout``): the database was too busy
    # for this statement.
    "57014": _TIMED_OUT,
    "55P03": _TIMED_OUT,
    # deadlock_detected and serialization_failure: the server ended the transaction for another's sake.
    "40P01": _CONFLICTED,
    "40001": _CONFLICTED,
}
"""Server errors after which the same work, retried later, may go through: ``DatabaseBusy`` with these words."""


def busy(error: BaseException) -> DatabaseBusy | None:
    """``DatabaseBusy`` when ``error`` (pg8000's, or SQLAlchemy's wrapper of one) is the server cancelling a
    statement for time or ending a transaction in a conflict; None for any other error. One translation for the
    SQLAlchemy engine and the native statements alike."""
    message = BUSY_SQLSTATES.get(sqlstate(error) or "")
    return None if message is None else DatabaseBusy(message)


def quote_identifier(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise ConfigurationError("database role name must be a plain identifier", field="db_app_role")
    return f'"{name}"'


def database_target(settings: Settings, *, refresh: bool = False) -> DatabaseTarget:
    """Resolve the settings into a target; reads the Secrets Manager secret when one is configured."""
    if settings.database_url:
        return _from_url(settings.database_url, settings)
    if not settings.db_host:
        raise ConfigurationError("set CONNVAULT_DATABASE_URL or CONNVAULT_DB_HOST", field="database_url")
    user, password = settings.db_user, None
    if settings.db_iam_auth:
        # No password anywhere: a token signed with the function's role, valid 15 minutes, made for each new
        # connection (signing is local, no network call). RDS accepts it over TLS only.
        user = user or settings.db_app_role
        token = _rds_client(settings.region).generate_db_auth_token(
            DBHostname=settings.db_host, Port=settings.db_port, DBUsername=user, Region=settings.region
        )
        password = Redacted(token)
    elif settings.db_secret_arn:
        secret = _read_secret(settings.db_secret_arn, refresh=refresh)
        user = user or secret.get("username")
        password = Redacted(secret["password"]) if "password" in secret else None
    if not user:
        raise ConfigurationError("no database user configured", field="db_user")
    return DatabaseTarget(
        user=user,
        password=password,
        database=settings.db_name,
        host=settings.db_host,
        port=settings.db_port,
        ssl=settings.db_ssl or settings.db_iam_auth,
        ssl_ca_file=settings.db_ssl_ca_file,
        connect_timeout=settings.db_connect_timeout_seconds,
    )


def _from_url(url: str, settings: Settings) -> DatabaseTarget:
    """``postgresql[+pg8000]://user[:password]@[host][:port]/db[?unix_sock=/path/.s.PGSQL.5432]``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigurationError("CONNVAULT_DATABASE_URL is not a valid URL", field="database_url") from None
    if not parts.scheme.startswith("postgresql"):
        raise ConfigurationError("CONNVAULT_DATABASE_URL must be a postgresql:// URL", field="database_url")
    query = parse_qs(parts.query)
    return DatabaseTarget(
        user=unquote(parts.username or "postgres"),
        password=Redacted(unquote(parts.password)) if parts.password else None,
        database=unquote(parts.path.lstrip("/")) or "postgres",
        host=parts.hostname,
        port=port or 5432,
        unix_sock=query.get("unix_sock", [None])[0],
        ssl=settings.db_ssl,
        ssl_ca_file=settings.db_ssl_ca_file,
        connect_timeout=settings.db_connect_timeout_seconds,
    )


@lru_cache(maxsize=1)
def _rds_client(region: str) -> Any:
    # Imported here: only deployments with IAM authentication pay for an RDS client.
    import boto3

    return boto3.client("rds", region_name=region)


def _read_secret(arn: str, *, refresh: bool) -> dict[str, Any]:
    # Imported here: only deployments with a secret pay for Powertools' parameters module.
    from aws_lambda_powertools.utilities.parameters import get_secret

    raw = get_secret(arn, max_age=300, force_fetch=refresh)
    try:
        secret = json.loads(raw if isinstance(raw, str) else raw.decode())
    except ValueError:
        raise ConfigurationError("the database secret is not JSON", field="db_secret_arn") from None
    if not isinstance(secret, dict):
        raise ConfigurationError("the database secret is not a JSON object", field="db_secret_arn")
    return secret


def get_target(*, refresh: bool = False) -> DatabaseTarget:
    """The current target. With a Secrets Manager secret, its value is cached for five minutes by Powertools;
    ``refresh`` fetches it again (the password was rotated)."""
    return database_target(get_settings(), refresh=refresh)


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE the server answered with, from pg8000's error or from SQLAlchemy's wrapper of one."""
    original = getattr(error, "orig", None) or error
    details = original.args[0] if original.args and isinstance(original.args[0], dict) else {}
    code = details.get("C")
    return code if isinstance(code, str) else None


def connection_lost(error: BaseException) -> bool:
    """Whether the server ended or disowned the connection: it must be dropped, and the pool's others with it."""
    code = sqlstate(error)
    return code is not None and (code in LOST_SQLSTATES or code.startswith("08"))


def unreachable(error: BaseException) -> bool:
    """Whether the driver could not talk to the server at all (refused, reset, timed out on the socket): pg8000's
    ``InterfaceError`` and socket errors, or SQLAlchemy's wrapper of one."""
    original = getattr(error, "orig", None) or error
    return isinstance(original, pg8000.exceptions.InterfaceError | OSError)


def database_unavailable(error: BaseException) -> bool:
    """Whether the error means "the database cannot serve you now, retry" rather than "this statement is wrong"."""
    return sqlstate(error) in REFUSED_SQLSTATES or connection_lost(error)


def connect_with[T](connect: Callable[[DatabaseTarget], T]) -> T:
    """Open a connection through ``connect``; if the server refuses the password, fetch the secret again and
    retry once. Secrets Manager rotates managed database passwords, and a cached one goes stale."""
    try:
        return connect(get_target())
    except pg8000.exceptions.DatabaseError as exc:
        if sqlstate(exc) != INVALID_PASSWORD or not get_settings().db_secret_arn:
            raise
    return connect(get_target(refresh=True))
