"""seed_catalog on a real, migrated PostgreSQL: inserts, idempotence, change detection, and what it never touches."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pytest

from connvault.catalog.loader import load_catalog
from connvault.catalog.seed import CATALOG_COLUMNS, catalog_record, seed_catalog

if TYPE_CHECKING:
    import pg8000.native

    from tests.support.database import TestDatabase

_COLUMNS = ["slug", *(name for name, _ in CATALOG_COLUMNS)]
_SELECT_GLOBAL = f"SELECT {', '.join(_COLUMNS)} FROM providers WHERE tenant_id IS NULL ORDER BY slug"


@pytest.fixture
def owner(db: TestDatabase) -> Iterator[pg8000.native.Connection]:
    """The owner's connection on a database whose global catalog has been emptied.

    ``db`` has already removed every tenant, so nothing references the global rows. Afterwards the
    original rows come back with their original ids, so ids other fixtures looked up stay valid.
    """
    connection = db.owner_target.connect()
    connection.run("CREATE TEMP TABLE saved_catalog AS SELECT * FROM providers WHERE tenant_id IS NULL")
    connection.run("DELETE FROM providers WHERE tenant_id IS NULL")
    try:
        yield connection
    finally:
        connection.run("DELETE FROM providers WHERE tenant_id IS NULL")
        connection.run("INSERT INTO providers SELECT * FROM saved_catalog")
        connection.close()


def _global_rows(connection: pg8000.native.Connection) -> dict[str, dict[str, Any]]:
    return {row[0]: dict(zip(_COLUMNS, row, strict=True)) for row in connection.run(_SELECT_GLOBAL)}


def _updated_at(connection: pg8000.native.Connection) -> dict[str, Any]:
    rows = connection.run("SELECT slug, updated_at FROM providers WHERE tenant_id IS NULL")
    return {slug: updated_at for slug, updated_at in rows}


def test_the_first_seed_inserts_every_entry_and_the_second_changes_nothing(
    owner: pg8000.native.Connection,
) -> None:
    entries = load_catalog()

    first = seed_catalog(owner)
    stamps = _updated_at(owner)
    second = seed_catalog(owner)

    assert first == len(entries)
    assert second == 0
    assert _updated_at(owner) == stamps


def test_the_seeded_rows_equal_the_catalog(owner: pg8000.native.Connection) -> None:
    seed_catalog(owner)

    rows = _global_rows(owner)

    assert rows == {entry.slug: catalog_record(entry) for entry in load_catalog()}
    assert rows["google"]["authorize_params"] == {"access_type": "offline", "prompt": "consent"}
    assert rows["slack"]["token_response_shape"] == "nested_authed_user"
    assert rows["slack"]["scope_separator"] == ","
    assert rows["openai"]["authorization_url"] is None
    assert rows["openai"]["pkce"] is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("display_name", "Google Workspace"),
        ("default_scopes", ("openid", "email")),
        ("authorize_params", MappingProxyType({"access_type": "offline"})),
        ("revocation_url", None),
        ("max_concurrent_refreshes", 4),
    ],
)
def test_changing_one_entry_updates_exactly_that_row(
    owner: pg8000.native.Connection, field: str, value: object
) -> None:
    entries = load_catalog()
    seed_catalog(owner)
    before = _updated_at(owner)
    changed = [dataclasses.replace(e, **{field: value}) if e.slug == "google" else e for e in entries]

    count = seed_catalog(owner, changed)
    after = _updated_at(owner)

    assert count == 1
    assert after["google"] > before["google"]
    assert {slug: stamp for slug, stamp in after.items() if slug != "google"} == {
        slug: stamp for slug, stamp in before.items() if slug != "google"
    }
    assert _global_rows(owner)["google"][field] == catalog_record(changed[0])[field]
    assert seed_catalog(owner, changed) == 0


def test_a_provider_that_left_the_catalog_is_kept(owner: pg8000.native.Connection) -> None:
    entries = load_catalog()
    seed_catalog(owner)

    count = seed_catalog(owner, entries[1:])

    assert count == 0
    assert entries[0].slug in _global_rows(owner)


def test_a_tenant_provider_with_a_catalog_slug_is_left_alone(owner: pg8000.native.Connection) -> None:
    tenant_id = owner.run("INSERT INTO tenants (name) VALUES ('acme') RETURNING id")[0][0]
    owner.run(
        "INSERT INTO providers (tenant_id, slug, display_name, auth_type) VALUES (:t, 'google', 'Ours', 'api_key')",
        t=tenant_id,
    )

    count = seed_catalog(owner)

    assert count == len(load_catalog())
    custom = owner.run("SELECT display_name, auth_type FROM providers WHERE tenant_id = :t", t=tenant_id)
    assert custom == [["Ours", "api_key"]]
    assert _global_rows(owner)["google"]["display_name"] == "Google"
