"""Where the database is and how to reach it: one engine per process, built on first use.

The application logs in with the configured user and immediately ``SET ROLE``s to the non-owner app role,
so row-level security applies to everything it does; the migration runner keeps the owner's identity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pg8000.native
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from connvault.config import Settings, get_settings
from connvault.errors import InvalidInput
from connvault.redacted import Redacted


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
        if self.ssl:
            kwargs["ssl_context"] = True
        return kwargs

    def connect(self, *, role: str | None = None, statement_timeout_ms: int | None = None) -> pg8000.native.Connection:
        """A plain pg8000 connection (migrations, the token-fetch read path)."""
        connection = pg8000.native.Connection(**self.pg8000_kwargs())
        for statement in session_setup(role, statement_timeout_ms):
            connection.run(statement)
        return connection


def session_setup(role: str | None, statement_timeout_ms: int | None) -> list[str]:
    """Statements run once on every new application connection."""
    statements = []
    if role:
        statements.append(f"SET ROLE {quote_identifier(role)}")
    if statement_timeout_ms:
        statements.append(f"SET statement_timeout = {int(statement_timeout_ms)}")
    return statements


def quote_identifier(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise InvalidInput("database role name must be a plain identifier", field="db_app_role")
    return f'"{name}"'


def database_target(settings: Settings) -> DatabaseTarget:
    """Resolve the settings into a target; reads the Secrets Manager secret when one is configured."""
    if settings.database_url:
        url = make_url(settings.database_url)
        return DatabaseTarget(
            user=url.username or "postgres",
            password=Redacted(url.password) if url.password else None,
            database=url.database or "postgres",
            host=url.host,
            port=url.port or 5432,
            unix_sock=_query_value(url.query.get("unix_sock")),
            ssl=settings.db_ssl,
            connect_timeout=settings.db_connect_timeout_seconds,
        )
    if not settings.db_host:
        raise InvalidInput("set CONNVAULT_DATABASE_URL or CONNVAULT_DB_HOST", field="database_url")
    user, password = settings.db_user, None
    if settings.db_secret_arn:
        secret = _read_secret(settings.db_secret_arn)
        user = user or secret.get("username")
        password = Redacted(secret["password"]) if "password" in secret else None
    if not user:
        raise InvalidInput("no database user configured", field="db_user")
    return DatabaseTarget(
        user=user,
        password=password,
        database=settings.db_name,
        host=settings.db_host,
        port=settings.db_port,
        ssl=settings.db_ssl,
        connect_timeout=settings.db_connect_timeout_seconds,
    )


def _query_value(value: str | tuple[str, ...] | None) -> str | None:
    return value[0] if isinstance(value, tuple) else value


def _read_secret(arn: str) -> dict[str, Any]:
    # Imported here: only deployments with a secret pay for Powertools' parameters module.
    from aws_lambda_powertools.utilities.parameters import get_secret

    raw = get_secret(arn, max_age=300)
    try:
        secret = json.loads(raw if isinstance(raw, str) else raw.decode())
    except ValueError:
        raise InvalidInput("the database secret is not JSON", field="db_secret_arn") from None
    if not isinstance(secret, dict):
        raise InvalidInput("the database secret is not a JSON object", field="db_secret_arn")
    return secret


@lru_cache(maxsize=1)
def get_target() -> DatabaseTarget:
    return database_target(get_settings())


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    """The process's engine: a small pool, pre-ping (Lambda freezes kill idle sockets), the app role."""
    settings = get_settings()
    target = get_target()
    kwargs = target.pg8000_kwargs()
    url = URL.create("postgresql+pg8000", username=kwargs.pop("user"), database=kwargs.pop("database"))
    kwargs.pop("application_name")
    engine = create_engine(
        url,
        connect_args=kwargs,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        pool_recycle=900,
        pool_timeout=settings.db_connect_timeout_seconds * 2,
    )
    setup = session_setup(settings.db_app_role, settings.db_statement_timeout_ms)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for statement in setup:
            cursor.execute(statement)
        cursor.close()
        dbapi_connection.commit()

    return engine


@lru_cache(maxsize=1)
def get_session_factory() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False, autoflush=False)


def reset() -> None:
    """Forget the engine and target (tests switch databases and settings between runs)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_session_factory.cache_clear()
    get_engine.cache_clear()
    get_target.cache_clear()
