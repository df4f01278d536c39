"""SQL migrations from ``schema/``: applied in order, reverted in reverse, under one advisory lock.

Each file runs in its own transaction together with its row in ``schema_migrations``, so a file is applied
(or reverted) wholly or not at all. A file whose checksum differs from the one recorded when it was applied
stops the runner, in both directions: migrations are history, and editing history silently is how two
databases drift apart. A database holding versions this code does not know is refused too, with one
exception for the custom resource (``allow_newer_schema``): a CloudFormation rollback runs the previous
release's runner against the schema the failed release left, and that must succeed without touching it.

``NNNN_name.down.sql`` beside a file is its reversal (not part of the checksum, so one written after its
migration was applied does not make history look edited). A reversal that cannot give back the data its
migration holds says so with a ``-- data-loss: <why>`` line, and ``rollback`` refuses it unless told
``allow_data_loss``.

The files live in the package (``connvault/schema``, with ``schema/`` at the repo root a link to it) so
that the built layer carries them. Run as ``python -m connvault.migrations [up|down --to N|status]`` or call
``migrate()``, ``rollback()``, ``status()``. The runner connects as the owner (the configured user, without
``SET ROLE``), creates the application role when missing, grants it what it needs, and seeds the provider
catalog once the schema is at its newest version.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import pg8000.exceptions
import pg8000.native

from connvault.db.target import DatabaseTarget, get_target, quote_identifier
from connvault.errors import ConnvaultError, MigrationError

if TYPE_CHECKING:
    from connvault.config import Settings

# Any constant works, as long as every runner of every deployment agrees on it.
ADVISORY_LOCK_KEY = 0x636F6E6E7661  # "connva"
_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+(\.down)?\.sql$")
_DATA_LOSS = re.compile(r"^--\s*data-loss:\s*(\S.*)$", re.MULTILINE)
SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
BASE_VERSION = "0000"
"""``rollback(to=BASE_VERSION)`` reverts every migration: the schema before the first file."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str
    down_sql: str | None = None
    """The reversal, from ``NNNN_name.down.sql`` beside the file. Not part of the checksum: a ``down`` written
    after its migration was applied must not make the applied file look edited."""

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def data_loss(self) -> str | None:
        """Why reverting this migration loses data (its down file's ``-- data-loss:`` line), or None."""
        found = _DATA_LOSS.search(self.down_sql or "")
        return found.group(1).strip() if found else None


@dataclass(frozen=True, slots=True)
class MigrationResult:
    applied: tuple[str, ...]
    seeded_providers: int
    newer_in_database: tuple[str, ...] = ()
    """Versions the database has and this code does not know (only with ``allow_newer_schema``)."""


@dataclass(frozen=True, slots=True)
class RollbackResult:
    reverted: tuple[str, ...]


class MigrationState(StrEnum):
    APPLIED = "applied"
    PENDING = "pending"
    CHANGED = "changed"
    """Applied, but the file now has another checksum: every runner refuses this database until it is fixed."""
    UNKNOWN = "unknown"
    """Recorded in the database, no such file here: a newer release applied it."""


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    version: str
    name: str
    state: MigrationState
    applied_at: datetime | None
    reversible: bool
    data_loss: bool


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    migrations: tuple[MigrationStatus, ...]
    runner_active: bool
    """Another runner holds the migration lock right now: what is shown may be about to change."""

    @property
    def consistent(self) -> bool:
        """Whether ``migrate`` and ``rollback`` would accept this database (pending files are fine)."""
        return all(m.state in (MigrationState.APPLIED, MigrationState.PENDING) for m in self.migrations)


@dataclass(frozen=True, slots=True)
class _Recorded:
    name: str
    checksum: str
    applied_at: datetime


def load_migrations(directory: Path) -> list[Migration]:
    """The migrations in version order, each with its ``.down.sql`` reversal when one is there."""
    migrations = []
    downs: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql (.down.sql)")
        if match.group(2):
            downs[path.name.removesuffix(".down.sql") + ".sql"] = path.read_text(encoding="utf-8")
            continue
        migrations.append(Migration(match.group(1), path.name, path.read_text(encoding="utf-8")))
    orphans = set(downs) - {m.name for m in migrations}
    if orphans:
        raise MigrationError(f"down files without their migration: {', '.join(sorted(orphans))}")
    migrations = [replace(m, down_sql=downs.get(m.name)) for m in migrations]
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    if BASE_VERSION in versions:
        raise MigrationError(f"version {BASE_VERSION} is reserved for the schema before every migration")
    return migrations


def migrate(
    target: DatabaseTarget | None = None,
    *,
    schema_dir: Path | None = None,
    app_role: str | None = None,
    lock_timeout_ms: int = 30_000,
    statement_timeout_ms: int = 300_000,
    seed: bool = True,
    to: str | None = None,
    allow_newer_schema: bool = False,
) -> MigrationResult:
    """Bring the database up to date (or up to version ``to``). A second run is a no-op; two runners at once
    serialise on the lock. The catalog is seeded only when every file is applied: it is written for the newest
    schema.

    ``allow_newer_schema``: a database that is ahead of this code (it holds versions newer than every file
    here, and misses none of the files) is left exactly as it is, and the answer names those versions, instead
    of refusing. The custom resource uses it so that a CloudFormation rollback to the previous release succeeds.
    """
    role = _app_role(app_role)
    migrations = load_migrations(schema_dir or SCHEMA_DIR)
    upto = _version(to, migrations) if to is not None else None
    with _locked(target, lock_timeout_ms, statement_timeout_ms) as connection:
        recorded = _history(connection, migrations)
        unknown = sorted(set(recorded) - {m.version for m in migrations})
        pending = [m for m in migrations if m.version not in recorded and (upto is None or m.version <= upto)]
        if unknown:
            newest_known = migrations[-1].version if migrations else BASE_VERSION
            if allow_newer_schema and not pending and all(v > newest_known for v in unknown):
                return MigrationResult((), 0, tuple(recorded[v].name for v in unknown))
            raise MigrationError(f"the database has migrations this code does not know: {', '.join(unknown)}")
        applied = [_apply(connection, m) for m in pending]
        _grant_app_role(connection, role)
        at_head = len(recorded) + len(pending) == len(migrations)
        seeded = _seed(connection) if seed and at_head else 0
    return MigrationResult(applied=tuple(applied), seeded_providers=seeded)


def rollback(
    target: DatabaseTarget | None = None,
    *,
    to: str,
    schema_dir: Path | None = None,
    app_role: str | None = None,
    allow_data_loss: bool = False,
    lock_timeout_ms: int = 30_000,
    statement_timeout_ms: int = 300_000,
) -> RollbackResult:
    """Revert every applied migration newer than version ``to`` (``BASE_VERSION``: all), latest applied first.

    Everything is checked before anything is reverted: the history's checksums, that the database holds no
    version this code does not know, that each file to revert has a down file, and that none declares data
    loss unless ``allow_data_loss``. Each file is then reverted in its own transaction with its history row.
    """
    role = _app_role(app_role)
    migrations = load_migrations(schema_dir or SCHEMA_DIR)
    floor = _version(to, migrations)
    by_version = {m.version: m for m in migrations}
    with _locked(target, lock_timeout_ms, statement_timeout_ms) as connection:
        recorded = _history(connection, migrations)
        unknown = sorted(set(recorded) - set(by_version))
        if unknown:
            raise MigrationError(f"the database has migrations this code does not know: {', '.join(unknown)}")
        # Latest applied first: files from several version ranges may have been applied out of version order.
        newest_first = sorted(recorded, key=lambda v: (recorded[v].applied_at, v), reverse=True)
        doomed = [by_version[v] for v in newest_first if v > floor]
        irreversible = [m.name for m in doomed if m.down_sql is None]
        if irreversible:
            raise MigrationError(f"no down file for {', '.join(irreversible)}; nothing was reverted")
        lossy = [m.name for m in doomed if m.data_loss]
        if lossy and not allow_data_loss:
            raise MigrationError(
                f"reverting {', '.join(lossy)} destroys data (see each down file's data-loss line); "
                "nothing was reverted; pass allow_data_loss (--allow-data-loss) to go ahead"
            )
        reverted = [_revert(connection, m) for m in doomed]
        _grant_app_role(connection, role)
    return RollbackResult(tuple(reverted))


def status(target: DatabaseTarget | None = None, *, schema_dir: Path | None = None) -> SchemaStatus:
    """Every known file and every recorded version, with its state. Read-only: creates nothing, waits for no
    lock (a runner holding it is reported), so it can be run at any time, also mid-deploy."""
    migrations = load_migrations(schema_dir or SCHEMA_DIR)
    connection = _connect(target)
    try:
        busy = not connection.run("SELECT pg_try_advisory_lock_shared(:key)", key=ADVISORY_LOCK_KEY)[0][0]
        if not busy:
            connection.run("SELECT pg_advisory_unlock_shared(:key)", key=ADVISORY_LOCK_KEY)
        exists = connection.run("SELECT to_regclass('schema_migrations') IS NOT NULL")[0][0]
        recorded = _recorded(connection) if exists else {}
    finally:
        connection.close()
    rows = []
    for m in migrations:
        found = recorded.get(m.version)
        if found is None:
            state = MigrationState.PENDING
        else:
            state = MigrationState.APPLIED if found.checksum == m.checksum else MigrationState.CHANGED
        applied_at = found.applied_at if found else None
        rows.append(MigrationStatus(m.version, m.name, state, applied_at, m.down_sql is not None, bool(m.data_loss)))
    known = {m.version for m in migrations}
    for version in sorted(set(recorded) - known):
        found = recorded[version]
        rows.append(MigrationStatus(version, found.name, MigrationState.UNKNOWN, found.applied_at, False, False))
    return SchemaStatus(tuple(sorted(rows, key=lambda row: row.version)), busy)


def _app_role(app_role: str | None) -> str:
    return app_role or _settings().db_app_role


def _settings() -> Settings:
    from connvault.config import get_settings

    return get_settings()


def _version(value: str, migrations: list[Migration]) -> str:
    """``value`` as a four-digit version that is ``BASE_VERSION`` or names a file here."""
    if not value.isdigit() or len(value) > 4:
        raise MigrationError("a version is a number of at most four digits, e.g. 0030")
    version = value.zfill(4)
    if version != BASE_VERSION and version not in {m.version for m in migrations}:
        raise MigrationError(f"no migration has version {version}")
    return version


def _connect(target: DatabaseTarget | None) -> pg8000.native.Connection:
    try:
        return (target or get_target()).connect()
    except (pg8000.exceptions.InterfaceError, pg8000.exceptions.DatabaseError, OSError) as exc:
        # The type only: a driver message can carry the host, the user or more.
        raise MigrationError(f"could not connect to the database ({type(exc).__name__})") from None


@contextmanager
def _locked(
    target: DatabaseTarget | None, lock_timeout_ms: int, statement_timeout_ms: int
) -> Iterator[pg8000.native.Connection]:
    """A connection holding the migration lock, with the bookkeeping table in place."""
    connection = _connect(target)
    try:
        # pg8000 keeps its connect timeout (seconds) as the timeout of every socket read; building an index on a
        # large table, or waiting for another runner's lock, must instead be bounded by statement_timeout.
        usock = getattr(connection, "_usock", None)
        if usock is not None:
            usock.settimeout(statement_timeout_ms / 1000 + 30)
        connection.run(f"SET lock_timeout = {int(lock_timeout_ms)}")
        connection.run(f"SET statement_timeout = {int(statement_timeout_ms)}")
        # Session-level lock, waiting is fine: a second runner blocks here until the first is done and then
        # finds nothing to do. lock_timeout does not apply to advisory locks, statement_timeout does.
        connection.run("SELECT pg_advisory_lock(:key)", key=ADVISORY_LOCK_KEY)
        try:
            _ensure_bookkeeping(connection)
            yield connection
        finally:
            connection.run("SELECT pg_advisory_unlock(:key)", key=ADVISORY_LOCK_KEY)
    finally:
        connection.close()


def _ensure_bookkeeping(connection: pg8000.native.Connection) -> None:
    """The history table, documented like every other table (the comments are rewritten on each run, unchanged)."""
    connection.run(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now());"
        "COMMENT ON TABLE schema_migrations IS 'The migrations applied to this database, written by "
        "connvault.migrations in the transaction of each file; the application role cannot read it.';"
        "COMMENT ON COLUMN schema_migrations.version IS 'The file''s four-digit version (NNNN of NNNN_name.sql).';"
        "COMMENT ON COLUMN schema_migrations.name IS 'The file''s name when it was applied.';"
        "COMMENT ON COLUMN schema_migrations.checksum IS 'SHA-256 of the file as applied: an edited file is "
        "refused by up and down.';"
        "COMMENT ON COLUMN schema_migrations.applied_at IS 'When the file was applied; down reverts the latest "
        "applied first.'"
    )


def _recorded(connection: pg8000.native.Connection) -> dict[str, _Recorded]:
    rows = connection.run("SELECT version, name, checksum, applied_at FROM schema_migrations")
    return {row[0]: _Recorded(row[1], row[2], row[3]) for row in rows}


def _history(connection: pg8000.native.Connection, migrations: list[Migration]) -> dict[str, _Recorded]:
    """The recorded history, refused when an applied file was edited since."""
    recorded = _recorded(connection)
    for migration in migrations:
        found = recorded.get(migration.version)
        if found is not None and found.checksum != migration.checksum:
            raise MigrationError(
                f"{migration.name} changed after it was applied (as {found.name}); add a new migration instead"
            )
    return recorded


def _apply(connection: pg8000.native.Connection, migration: Migration) -> str:
    _in_transaction(
        connection,
        f"{migration.name} failed",
        migration.sql,
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)",
        v=migration.version,
        n=migration.name,
        c=migration.checksum,
    )
    return migration.name


def _revert(connection: pg8000.native.Connection, migration: Migration) -> str:
    _in_transaction(
        connection,
        f"{migration.name} failed to revert",
        migration.down_sql or "",
        "DELETE FROM schema_migrations WHERE version = :v",
        v=migration.version,
    )
    return migration.name


def _in_transaction(
    connection: pg8000.native.Connection, failure: str, sql: str, bookkeeping: str, **params: str
) -> None:
    """A file (or its reversal) and its history row in one transaction: all of it or none."""
    try:
        connection.run("BEGIN")
        connection.run(sql)
        connection.run(bookkeeping, **params)
        connection.run("COMMIT")
    except Exception as exc:
        connection.run("ROLLBACK")
        raise MigrationError(f"{failure}: {_pg_message(exc)}") from None


def _grant_app_role(connection: pg8000.native.Connection, role: str) -> None:
    """The app role owns nothing and bypasses nothing: RLS binds it. Re-granted on every run (idempotent)."""
    quoted = quote_identifier(role)
    # Roles are cluster-wide while the advisory lock is per database: a runner migrating another database on
    # the same cluster may create the role at the same moment, which is fine.
    connection.run(
        f"DO $$ BEGIN CREATE ROLE {quoted} NOLOGIN NOSUPERUSER NOBYPASSRLS; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    current = connection.run("SELECT current_user")[0][0]
    connection.run(f'GRANT {quoted} TO "{current}"')
    connection.run(f"GRANT USAGE ON SCHEMA public TO {quoted}")
    connection.run(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}")
    connection.run(f"REVOKE ALL ON schema_migrations FROM {quoted}")
    connection.run(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {quoted}")
    if _settings().db_app_iam_login:
        _let_app_role_log_in_with_iam(connection, role)


def _let_app_role_log_in_with_iam(connection: pg8000.native.Connection, role: str) -> None:
    """``DbIamAuth=true``: the serving functions log in as the app role itself with an RDS IAM token, so no
    function but the migrations needs the owner's password. Only where RDS provides ``rds_iam``; a role
    granted it can no longer log in with a password, which the app role never had."""
    if not connection.run("SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam'"):
        return
    quoted = quote_identifier(role)
    connection.run(f"ALTER ROLE {quoted} LOGIN")
    connection.run(f"GRANT rds_iam TO {quoted}")


def _seed(connection: pg8000.native.Connection) -> int:
    # Imported here: the catalog's YAML parser is needed only by the runner, not by every handler.
    from connvault.catalog.seed import seed_catalog

    return seed_catalog(connection)


def _pg_message(exc: Exception) -> str:
    """The server's message (SQLSTATE + text) for a failed migration: schema text only, no data values."""
    details = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    code, message = details.get("C", "?"), details.get("M", type(exc).__name__)
    return f"{code} {message}"[:200]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m connvault.migrations",
        description="Apply, revert or inspect connvault's schema migrations (CONNVAULT_DATABASE_URL or "
        "CONNVAULT_DB_* name the database). Without a command: up.",
    )
    commands = parser.add_subparsers(dest="command")
    up = commands.add_parser("up", help="apply pending migrations (all of them, or up to --to) and seed the catalog")
    up.add_argument("--to", metavar="N", help="stop after version N")
    down = commands.add_parser("down", help="revert applied migrations newer than --to, latest first")
    down.add_argument("--to", metavar="N", required=True, help=f"keep versions up to N ({BASE_VERSION}: revert all)")
    down.add_argument(
        "--allow-data-loss", action="store_true", help="also revert migrations whose down file declares data loss"
    )
    commands.add_parser("status", help="show each migration's state; exit 1 if the history is inconsistent")
    return parser


def _print_status(report: SchemaStatus) -> int:
    if report.runner_active:
        print("a migration runner holds the lock right now; this may be about to change")
    for row in report.migrations:
        applied = row.applied_at.isoformat(timespec="seconds") if row.applied_at else "-"
        down = "no down file" if not row.reversible else ("down loses data" if row.data_loss else "reversible")
        print(f"{row.version}  {row.state.value:<8} {applied:<26} {row.name}  ({down})")
    return 0 if report.consistent else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "status":
            return _print_status(status())
        if args.command == "down":
            reverted = rollback(to=args.to, allow_data_loss=args.allow_data_loss).reverted
            print(f"reverted: {', '.join(reverted) or 'nothing to revert'}")
            return 0
        result = migrate(to=getattr(args, "to", None))
    except ConnvaultError as exc:  # a settings problem too (no database configured), not only the runner's
        print(f"migration failed: {exc.message}", file=sys.stderr)
        return 1
    applied = ", ".join(result.applied) or "nothing to apply"
    print(f"applied: {applied}; catalog providers changed: {result.seeded_providers}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
