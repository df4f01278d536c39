"""The SQLAlchemy engine: one per process, built on first use.

The application logs in with the configured user and immediately ``SET ROLE``s to the non-owner app role,
so row-level security applies to everything it does; the migration runner keeps the owner's identity.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session, sessionmaker

from connvault.config import get_settings
from connvault.db.target import get_target, session_setup


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
