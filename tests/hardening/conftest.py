"""Fixtures shared by the hardening tests: the API harness of ``tests/api`` (a tenant with an integration for a
running demo provider), a snapshot of every row connvault keeps, and a guard that keeps a test on loopback."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.api.conftest import api, provider, reconfigure  # noqa: F401 - fixtures, shared as they are
from tests.support.database import TestDatabase
from tests.support.factories import owner

TABLES = ("tenants", "tenant_api_keys", "providers", "integrations", "connections", "oauth_sessions")

type Snapshot = dict[str, str]


@pytest.fixture
def snapshot(db: TestDatabase) -> Iterator[Callable[..., Snapshot]]:
    """``snapshot()``: every row of every table connvault writes, whole, as the owner (past RLS). Two equal
    snapshots mean nothing was written in between; ``ignore`` names columns left out. One connection for the
    test, so it can be called often."""
    with owner(db) as sql:

        def take(ignore: tuple[str, ...] = ()) -> Snapshot:
            row = "to_jsonb(t)" + "".join(f" - '{column}'" for column in ignore)
            return {
                table: sql.run(f"SELECT coalesce(jsonb_agg({row} ORDER BY t.id), '[]')::text FROM {table} t")[0][0]
                for table in TABLES
            }

        yield take


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Name resolution refuses every host but loopback: generated input can never send connvault to the network."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in ("127.0.0.1", "localhost", "::1"):
            raise socket.gaierror(socket.EAI_NONAME, "only loopback in these tests")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
