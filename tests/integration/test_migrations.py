"""The migration runner on real PostgreSQL: idempotence, edited history, atomic files, concurrent runners,
reversal (every shipped migration round-trips to the same catalog), status, and the
``python -m connvault.migrations`` command. Each test that changes history gets its own database."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from connvault.errors import MigrationError
from connvault.migrations import (
    ADVISORY_LOCK_KEY,
    BASE_VERSION,
    SCHEMA_DIR,
    MigrationResult,
    MigrationState,
    RollbackResult,
    load_migrations,
    migrate,
    rollback,
    status,
)
from tests.support.schema_catalog import Catalog, differences, snapshot

if TYPE_CHECKING:
    from connvault.db.target import DatabaseTarget
    from tests.support.database import TestDatabase

REPO = Path(__file__).resolve().parents[2]
SHIPPED = tuple(sorted(path.name for path in SCHEMA_DIR.glob("*.sql") if not path.name.endswith(".down.sql")))
LAST_SHIPPED = SHIPPED[-1][:4]


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


def catalog(target: DatabaseTarget) -> Catalog:
    connection = target.connect()
    try:
        return snapshot(connection)
    finally:
        connection.close()


def test_every_migration_has_a_down_file() -> None:
    """Also for the files other version ranges add later: a migration without its reversal cannot land."""
    missing = [migration.name for migration in load_migrations(SCHEMA_DIR) if migration.down_sql is None]

    assert missing == []


def test_every_migration_goes_down_and_up_again_to_the_same_catalog(fresh: DatabaseTarget) -> None:
    """From the newest version down to none, one version at a time: at each, down then up gives back the catalog
    (tables, columns, types, constraints, indexes, triggers, policies, functions, comments, grants) as it was,
    and down again gives back the catalog of the version below. Generic over whatever files exist."""
    migrate(fresh)
    versions = [BASE_VERSION, *(migration.version for migration in load_migrations(SCHEMA_DIR))]
    mismatches = {}
    for below, version in reversed(list(itertools.pairwise(versions))):
        at_version = catalog(fresh)
        rollback(fresh, to=below, allow_data_loss=True)
        at_below = catalog(fresh)
        migrate(fresh, to=version)
        if diff := differences(at_version, catalog(fresh)):
            mismatches[f"{version}: down then up"] = diff
        rollback(fresh, to=below, allow_data_loss=True)
        if diff := differences(at_below, catalog(fresh)):
            mismatches[f"{version}: down again"] = diff

    assert mismatches == {}
    assert recorded(fresh) == []
    assert [row[0] for row in catalog(fresh)["relations"]] == ["schema_migrations", "schema_migrations_pkey"]


def test_reverting_a_migration_keeps_the_rows_of_the_tables_it_leaves(fresh: DatabaseTarget) -> None:
    migrate(fresh)
    reversible = [m for m in load_migrations(SCHEMA_DIR) if not m.data_loss and m.version != SHIPPED[0][:4]]
    below = SHIPPED[SHIPPED.index(reversible[-1].name) - 1][:4]
    admin = fresh.connect()
    try:
        tenant = admin.run("INSERT INTO tenants (name) VALUES ('kept') RETURNING id")[0][0]
    finally:
        admin.close()

    reverted = rollback(fresh, to=below, allow_data_loss=True)  # newer files may drop data of their own
    migrate(fresh)

    admin = fresh.connect()
    try:
        assert admin.run("SELECT name FROM tenants WHERE id = :t", t=tenant) == [["kept"]]
    finally:
        admin.close()
    assert reverted.reverted[-1] == reversible[-1].name
    assert recorded(fresh) == list(SHIPPED)


def test_up_to_a_version_applies_no_further_and_seeds_only_at_the_newest(fresh: DatabaseTarget) -> None:
    first = migrate(fresh, to=SHIPPED[0][:4])
    rest = migrate(fresh)

    assert first == MigrationResult(applied=(SHIPPED[0],), seeded_providers=0)
    assert rest.applied == SHIPPED[1:]
    assert rest.seeded_providers > 0


def test_down_refuses_a_migration_whose_down_file_declares_data_loss_unless_allowed(
    fresh: DatabaseTarget, schema_dir: Path
) -> None:
    (schema_dir / "9001_probe.sql").write_text("CREATE TABLE probe (id integer);\n")
    (schema_dir / "9001_probe.down.sql").write_text("-- data-loss: the probe rows\nDROP TABLE probe;\n")
    migrate(fresh, schema_dir=schema_dir, seed=False)

    with pytest.raises(MigrationError) as error:
        rollback(fresh, to=LAST_SHIPPED, schema_dir=schema_dir)
    kept = table_exists(fresh, "probe")
    allowed = rollback(fresh, to=LAST_SHIPPED, schema_dir=schema_dir, allow_data_loss=True)

    assert "9001_probe.sql" in str(error.value)
    assert "data-loss" in str(error.value)
    assert kept
    assert allowed == RollbackResult(("9001_probe.sql",))
    assert not table_exists(fresh, "probe")
    assert recorded(fresh) == list(SHIPPED)


def test_down_checks_every_file_before_reverting_any(fresh: DatabaseTarget, schema_dir: Path) -> None:
    (schema_dir / "9001_first.sql").write_text("CREATE TABLE first (id integer);\n")
    (schema_dir / "9002_second.sql").write_text("CREATE TABLE second (id integer);\n")
    (schema_dir / "9002_second.down.sql").write_text("DROP TABLE second;\n")
    migrate(fresh, schema_dir=schema_dir, seed=False)

    with pytest.raises(MigrationError) as error:
        rollback(fresh, to=LAST_SHIPPED, schema_dir=schema_dir)

    assert "no down file for 9001_first.sql" in str(error.value)
    assert table_exists(fresh, "second")
    assert recorded(fresh) == [*SHIPPED, "9001_first.sql", "9002_second.sql"]


def test_down_refuses_edited_history(fresh: DatabaseTarget, schema_dir: Path) -> None:
    probe = schema_dir / "9001_probe.sql"
    probe.write_text("CREATE TABLE probe (id integer);\n")
    (schema_dir / "9001_probe.down.sql").write_text("DROP TABLE probe;\n")
    migrate(fresh, schema_dir=schema_dir, seed=False)
    probe.write_text("CREATE TABLE probe (id bigint);\n")

    with pytest.raises(MigrationError) as error:
        rollback(fresh, to=LAST_SHIPPED, schema_dir=schema_dir)

    assert "9001_probe.sql changed after it was applied" in str(error.value)
    assert table_exists(fresh, "probe")


def test_down_refuses_a_database_with_migrations_this_code_does_not_know(
    fresh: DatabaseTarget, schema_dir: Path
) -> None:
    (schema_dir / "9001_later.sql").write_text("CREATE TABLE later (id integer);\n")
    migrate(fresh, schema_dir=schema_dir, seed=False)

    with pytest.raises(MigrationError) as error:
        rollback(fresh, to=SHIPPED[-2][:4])

    assert "9001" in str(error.value)
    assert recorded(fresh) == [*SHIPPED, "9001_later.sql"]


@pytest.mark.parametrize("to", ["9999", "v1", "12345"])
def test_down_refuses_a_target_that_is_not_a_version(fresh: DatabaseTarget, to: str) -> None:
    migrate(fresh, seed=False)

    with pytest.raises(MigrationError) as error:
        rollback(fresh, to=to)

    assert "version" in str(error.value)
    assert recorded(fresh) == list(SHIPPED)


def test_a_failing_down_file_reverts_nothing_of_itself(fresh: DatabaseTarget, schema_dir: Path) -> None:
    (schema_dir / "9001_probe.sql").write_text("CREATE TABLE probe (id integer);\n")
    (schema_dir / "9001_probe.down.sql").write_text("DROP TABLE probe;\nSELECT 1 / 0;\n")
    migrate(fresh, schema_dir=schema_dir, seed=False)

    with pytest.raises(MigrationError) as error:
        rollback(fresh, to=LAST_SHIPPED, schema_dir=schema_dir)

    assert "9001_probe.sql failed to revert: 22012" in str(error.value)
    assert table_exists(fresh, "probe")
    assert recorded(fresh) == [*SHIPPED, "9001_probe.sql"]


def test_a_statement_may_run_longer_than_the_connect_timeout(fresh: DatabaseTarget, schema_dir: Path) -> None:
    """pg8000 reads with its connect timeout; the runner's statements are bounded by statement_timeout instead
    (an index built on a large table takes minutes, a connect should fail in seconds)."""
    (schema_dir / "9001_slow.sql").write_text("SELECT pg_sleep(1.5);\n")

    result = migrate(replace(fresh, connect_timeout=0.5), schema_dir=schema_dir, seed=False)

    assert result.applied[-1] == "9001_slow.sql"


def test_down_waits_for_a_runner_holding_the_lock(fresh: DatabaseTarget) -> None:
    migrate(fresh, seed=False)
    holder = fresh.connect()
    holder.run("SELECT pg_advisory_lock(:key)", key=ADVISORY_LOCK_KEY)
    results: list[RollbackResult] = []
    worker = threading.Thread(target=lambda: results.append(rollback(fresh, to=SHIPPED[-2][:4], allow_data_loss=True)))
    try:
        worker.start()
        time.sleep(0.5)
        waited = worker.is_alive() and recorded(fresh) == list(SHIPPED)
        report = status(fresh)
    finally:
        holder.run("SELECT pg_advisory_unlock(:key)", key=ADVISORY_LOCK_KEY)
        holder.close()
        worker.join(timeout=60)

    assert waited
    assert report.runner_active
    assert results == [RollbackResult((SHIPPED[-1],))]


def test_status_names_each_migration_state_without_writing_anything(fresh: DatabaseTarget, schema_dir: Path) -> None:
    before = status(fresh, schema_dir=schema_dir)
    nothing_created = not table_exists(fresh, "schema_migrations")
    probe = schema_dir / "9001_probe.sql"
    probe.write_text("SELECT 1;\n")
    (schema_dir / "9002_later.sql").write_text("SELECT 2;\n")
    migrate(fresh, schema_dir=schema_dir, seed=False)
    probe.write_text("SELECT 11;\n")
    (schema_dir / "9002_later.sql").unlink()
    (schema_dir / "9003_pending.sql").write_text("SELECT 3;\n")

    after = status(fresh, schema_dir=schema_dir)

    assert nothing_created
    assert {m.state for m in before.migrations} == {MigrationState.PENDING}
    assert before.consistent
    assert not before.runner_active
    states = {m.name: m.state for m in after.migrations}
    assert states == {
        **dict.fromkeys(SHIPPED, MigrationState.APPLIED),
        "9001_probe.sql": MigrationState.CHANGED,
        "9002_later.sql": MigrationState.UNKNOWN,
        "9003_pending.sql": MigrationState.PENDING,
    }
    assert not after.consistent
    first = next(m for m in after.migrations if m.name == SHIPPED[0])
    assert first.reversible
    assert first.applied_at is not None


def test_the_runner_leaves_a_newer_schema_alone_when_asked_to(fresh: DatabaseTarget, schema_dir: Path) -> None:
    """What a CloudFormation rollback needs: the previous release's runner meets the failed release's schema."""
    (schema_dir / "9001_later.sql").write_text("SELECT 1;\n")
    migrate(fresh, schema_dir=schema_dir, seed=False)
    before = catalog(fresh)

    result = migrate(fresh, allow_newer_schema=True)

    assert result == MigrationResult(applied=(), seeded_providers=0, newer_in_database=("9001_later.sql",))
    assert differences(before, catalog(fresh)) == {}


def test_a_newer_schema_that_misses_one_of_this_releases_files_is_still_refused(
    fresh: DatabaseTarget, schema_dir: Path
) -> None:
    (schema_dir / "9001_later.sql").write_text("SELECT 1;\n")
    migrate(fresh, schema_dir=schema_dir, seed=False)
    connection = fresh.connect()
    try:
        connection.run("DELETE FROM schema_migrations WHERE version = :v", v=SHIPPED[-1][:4])
    finally:
        connection.close()

    with pytest.raises(MigrationError) as error:
        migrate(fresh, allow_newer_schema=True)

    assert "9001" in str(error.value)


def test_down_and_status_run_as_commands(fresh: DatabaseTarget) -> None:
    env = command_env(fresh)
    command = [sys.executable, "-m", "connvault.migrations"]
    migrate(fresh)

    refused = subprocess.run([*command, "down", "--to", "0"], env=env, capture_output=True, text=True, check=False)
    down = subprocess.run(
        [*command, "down", "--to", SHIPPED[-2][:4], "--allow-data-loss"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    report = subprocess.run([*command, "status"], env=env, capture_output=True, text=True, check=False)
    up = subprocess.run([*command, "up"], env=env, capture_output=True, text=True, check=False)

    assert refused.returncode == 1
    assert "0001_init.sql" in refused.stderr
    assert "--allow-data-loss" in refused.stderr
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == f"reverted: {SHIPPED[-1]}"
    assert report.returncode == 0, report.stderr
    assert f"{SHIPPED[-1][:4]}  pending" in report.stdout
    assert f"{SHIPPED[0][:4]}  applied" in report.stdout
    assert up.returncode == 0, up.stderr
    assert f"applied: {SHIPPED[-1]}" in up.stdout
