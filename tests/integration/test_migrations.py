"""The migration runner on real PostgreSQL: idempotence, edited history, atomic files, concurrent runners,
and the ``python -m connvault.migrations`` command. Each test that changes history gets its own database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from connvault.errors import MigrationError
from connvault.migrations import SCHEMA_DIR, MigrationResult, load_migrations, migrate

if TYPE_CHECKING:
    from connvault.db.target import DatabaseTarget
    from tests.support.database import TestDatabase

REPO = Path(__file__).resolve().parents[2]
SHIPPED = tuple(sorted(path.name for path in SCHEMA_DIR.glob("*.sql") if not path.name.endswith(".down.sql")))


@pytest.fixture
def fresh(database: TestDatabase) -> Iterator[DatabaseTarget]:
    """An empty database on the test server, dropped afterwards."""
    name = f"connvault_mig_{uuid.uuid4().hex[:12]}"
    admin = database.owner_target.connect()
    admin.run(f'CREATE DATABASE "{name}"')
    try:
        yield replace(database.owner_target, database=name)
    finally:
        admin.run(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def schema_dir(tmp_path: Path) -> Path:
    """A copy of the real schema directory that a test may add files to."""
    directory = tmp_path / "schema"
    shutil.copytree(SCHEMA_DIR, directory)
    return directory


def recorded(target: DatabaseTarget) -> list[str]:
    connection = target.connect()
    try:
        return [row[0] for row in connection.run("SELECT name FROM schema_migrations ORDER BY version")]
    finally:
        connection.close()


def table_exists(target: DatabaseTarget, table: str) -> bool:
    connection = target.connect()
    try:
        return connection.run("SELECT to_regclass(:t) IS NOT NULL", t=table)[0][0]
    finally:
        connection.close()


def test_a_second_run_applies_nothing_and_changes_no_catalog_row(db: TestDatabase) -> None:
    result = migrate(db.owner_target)

    assert result == MigrationResult(applied=(), seeded_providers=0)


def test_a_fresh_database_gets_every_file_applied_and_recorded(fresh: DatabaseTarget) -> None:
    result = migrate(fresh)

    assert result.applied == SHIPPED
    assert result.seeded_providers > 0
    assert recorded(fresh) == list(SHIPPED)


def test_an_applied_migration_that_was_edited_is_refused_with_its_file_named(
    fresh: DatabaseTarget, schema_dir: Path
) -> None:
    probe = schema_dir / "9001_probe.sql"
    probe.write_text("CREATE TABLE probe (id integer);\n")
    migrate(fresh, schema_dir=schema_dir, seed=False)
    probe.write_text("CREATE TABLE probe (id bigint);\n")

    with pytest.raises(MigrationError) as error:
        migrate(fresh, schema_dir=schema_dir, seed=False)

    assert "9001_probe.sql" in str(error.value)
    assert recorded(fresh) == [*SHIPPED, "9001_probe.sql"]


def test_a_failing_migration_leaves_nothing_half_applied_and_can_be_fixed(
    fresh: DatabaseTarget, schema_dir: Path
) -> None:
    broken = schema_dir / "9001_broken.sql"
    broken.write_text("CREATE TABLE probe (id integer);\nINSERT INTO probe VALUES (1);\nSELECT 1 / 0;\n")

    with pytest.raises(MigrationError) as error:
        migrate(fresh, schema_dir=schema_dir, seed=False)
    half_applied = table_exists(fresh, "probe")
    history = recorded(fresh)
    broken.write_text("CREATE TABLE probe (id integer);\n")
    retry = migrate(fresh, schema_dir=schema_dir, seed=False)

    assert "9001_broken.sql" in str(error.value)
    assert "22012" in str(error.value)  # division_by_zero: the server's code, not the statement's values
    assert not half_applied
    assert history == list(SHIPPED)
    assert retry.applied == ("9001_broken.sql",)


def test_a_database_with_migrations_this_code_does_not_know_is_refused(fresh: DatabaseTarget, schema_dir: Path) -> None:
    (schema_dir / "9001_later.sql").write_text("SELECT 1;\n")
    migrate(fresh, schema_dir=schema_dir, seed=False)

    with pytest.raises(MigrationError) as error:
        migrate(fresh, seed=False)

    assert "9001" in str(error.value)


def test_a_misnamed_migration_file_is_refused(fresh: DatabaseTarget, schema_dir: Path) -> None:
    (schema_dir / "2-add-things.sql").write_text("SELECT 1;\n")

    with pytest.raises(MigrationError) as error:
        migrate(fresh, schema_dir=schema_dir, seed=False)

    assert "2-add-things.sql" in str(error.value)
    assert not table_exists(fresh, "tenants")


def test_two_runners_at_once_both_succeed_and_each_file_is_applied_once(
    fresh: DatabaseTarget, schema_dir: Path
) -> None:
    # A slow second file keeps the first runner inside the lock while the second one arrives.
    (schema_dir / "9001_slow.sql").write_text("SELECT pg_sleep(0.5);\n")
    start = threading.Barrier(2)
    results: list[MigrationResult] = []
    failures: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            results.append(migrate(fresh, schema_dir=schema_dir))
        except BaseException as exc:
            failures.append(exc)

    runners = [threading.Thread(target=run) for _ in range(2)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(timeout=60)

    assert failures == []
    assert sorted(result.applied for result in results) == [(), (*SHIPPED, "9001_slow.sql")]
    assert recorded(fresh) == [*SHIPPED, "9001_slow.sql"]


def command_env(target: DatabaseTarget) -> dict[str, str]:
    login = quote(target.user)
    if target.password is not None:
        login += ":" + quote(target.password.reveal(), safe="")
    if target.unix_sock:
        url = f"postgresql://{login}@/{target.database}?unix_sock={target.unix_sock}"
    else:
        url = f"postgresql://{login}@{target.host}:{target.port}/{target.database}"
    pythonpath = os.pathsep.join(filter(None, [str(REPO / "layers" / "common"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "CONNVAULT_DATABASE_URL": url, "PYTHONPATH": pythonpath}


def test_the_migrations_module_runs_as_a_command(fresh: DatabaseTarget) -> None:
    env = command_env(fresh)
    command = [sys.executable, "-m", "connvault.migrations"]

    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    assert first.returncode == 0, first.stderr
    assert "applied: 0001_init.sql" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "nothing to apply" in second.stdout
    assert "catalog providers changed: 0" in second.stdout


def test_a_down_file_pairs_with_its_migration_and_leaves_the_checksum_alone(schema_dir: Path) -> None:
    (schema_dir / "9001_probe.sql").write_text("CREATE TABLE probe (id integer);\n")
    before = {m.name: m.checksum for m in load_migrations(schema_dir)}
    (schema_dir / "9001_probe.down.sql").write_text("DROP TABLE probe;\n")

    loaded = {m.name: m for m in load_migrations(schema_dir)}

    assert "9001_probe.down.sql" not in loaded
    assert loaded["9001_probe.sql"].down_sql == "DROP TABLE probe;\n"
    assert {name: m.checksum for name, m in loaded.items()} == before


def test_a_down_file_without_its_migration_is_refused(schema_dir: Path) -> None:
    (schema_dir / "9001_gone.down.sql").write_text("DROP TABLE gone;\n")

    with pytest.raises(MigrationError) as error:
        load_migrations(schema_dir)

    assert "9001_gone.sql" in str(error.value)
