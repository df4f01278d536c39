"""A provider's fields are declared in several places (issue 15.4): the domain's ``Provider``, the catalog's
``CatalogEntry``, the ``providers`` table (its column defaults and CHECK on the slug) and its ORM row. They must
agree: a default that differs between two of them (``pkce`` was false in the catalog and true everywhere else)
gives a provider different behaviour depending on where it was written from."""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

from connvault.catalog.loader import CatalogEntry
from connvault.db.rows import ProviderRow
from connvault.models import PROVIDER_SLUG, Provider
from tests.support.factories import owner

if TYPE_CHECKING:
    from tests.support.database import TestDatabase


def defaults(cls: type) -> dict[str, Any]:
    found = {}
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            found[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            found[field.name] = field.default_factory()
    return found


def sql_literal(value: Any) -> str:
    """How PostgreSQL prints ``value`` as a column default."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        return "'{}'::text[]" if not value else repr(value)
    if isinstance(value, dict):
        return "'{}'::jsonb" if not value else repr(value)
    return f"'{value}'::text"


DOCUMENT_FIELDS = frozenset({"connection_config", "api_auth"})
"""Structured catalog values the table keeps as a JSON document: the domain's empty value (no keys, no
declaration) is the empty document."""


def expected_default(name: str, value: Any) -> str:
    if name in DOCUMENT_FIELDS and not value:
        return "'{}'::jsonb"
    return sql_literal(value)


def test_the_catalog_declares_the_same_defaults_as_the_domain() -> None:
    provider, entry = defaults(Provider), defaults(CatalogEntry)
    shared = provider.keys() & entry.keys()

    assert {name: entry[name] for name in shared} == {name: provider[name] for name in shared}
    assert "pkce" in shared


def test_the_table_and_its_row_default_as_the_domain_does(db: TestDatabase) -> None:
    with owner(db) as connection:
        columns = dict(
            connection.run(
                "SELECT column_name, column_default FROM information_schema.columns "
                "WHERE table_name = 'providers' AND column_default IS NOT NULL"
            )
        )
    provider = defaults(Provider)
    compared = {name: columns[name] for name in provider if name in columns}
    orm = {
        name: str(column.server_default.arg)  # type: ignore[union-attr]
        for name, column in ProviderRow.__table__.columns.items()
        if name in compared
    }

    assert compared == {name: expected_default(name, provider[name]) for name in compared}
    assert orm == {name: re.sub(r"::\w+(\[\])?$", "", value) for name, value in compared.items()}
    assert {"pkce", "rotates_refresh_tokens", "refresh_margin_seconds", "token_endpoint_auth_method"} <= set(compared)


def test_the_slug_pattern_is_the_one_the_table_checks(db: TestDatabase) -> None:
    with owner(db) as connection:
        checks = [
            row[0]
            for row in connection.run(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'providers'::regclass AND contype = 'c'"
            )
        ]
    slug_checks = [check for check in checks if "slug" in check and "~" in check]

    assert slug_checks, checks
    assert all(f"'{PROVIDER_SLUG}'" in check for check in slug_checks), slug_checks
