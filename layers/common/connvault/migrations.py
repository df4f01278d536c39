"""Forward-only SQL migrations from ``schema/``, applied in order under an advisory lock.

Each file runs in its own transaction together with its row in ``schema_migrations``, so a file is applied
wholly or not at all. A file whose checksum differs from the one recorded when it was applied stops the
runner: migrations are history, and editing history silently is how two databases drift apart.

The files live in the package (``connvault/schema``, with ``schema/`` at the repo root a link to it) so
that the built layer carries them. Run as ``python -m connvault.migrations`` or call ``migrate()``.
The runner connects as the owner (the configured user, without ``SET ROLE``), creates the application
role when missing, grants it what it needs, and seeds the provider catalog.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pg8000.exceptions
import pg8000.native

from connvault.db.target import DatabaseTarget, get_target, quote_identifier
from connvault.errors import MigrationError

# Any constant works, as long as every runner of every deployment agrees on it.
ADVISORY_LOCK_KEY = 0x636F6E6E7661  # "connva"
_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+(\.down)?\.sql$")
SCHEMA_DIR = Path(__file__).resolve().parent / "schema"


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


@dataclass(frozen=True, slots=True)
class MigrationResult:
    applied: tuple[str, ...]
    seeded_providers: int


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
    return migrations


def migrate(
    target: DatabaseTarget | None = None,
    *,
    schema_dir: Path | None = None,
    app_role: str | None = None,
    lock_timeout_ms: int = 30_000,
    statement_timeout_ms: int = 300_000,
    seed: bool = True,
) -> MigrationResult:
    """Bring the database up to date. A second run is a no-op; two runners at once serialise on the lock."""
    from connvault.config import get_settings

    target = target or get_target()
    role = app_role or get_settings().db_app_role
    migrations = load_migrations(schema_dir or SCHEMA_DIR)
    try:
        connection = target.connect()
    except (pg8000.exceptions.InterfaceError, pg8000.exceptions.DatabaseError, OSError) as exc:
        # The type only: a driver message can carry the host, the user or more.
        raise MigrationError(f"could not connect to the database ({type(exc).__name__})") from None
    try:
        connection.run(f"SET lock_timeout = {int(lock_timeout_ms)}")
        connection.run(f"SET statement_timeout = {int(statement_timeout_ms)}")
        # Session-level lock, waiting is fine: a second runner blocks here until the first is done and then
        # finds nothing to do. lock_timeout does not apply to advisory locks, statement_timeout does.
        connection.run("SELECT pg_advisory_lock(:key)", key=ADVISORY_LOCK_KEY)
        try:
            _ensure_bookkeeping(connection)
            applied = _apply_pending(connection, migrations)
            _grant_app_role(connection, role)
            seeded = _seed(connection) if seed else 0
        finally:
            connection.run("SELECT pg_advisory_unlock(:key)", key=ADVISORY_LOCK_KEY)
    finally:
        connection.close()
    return MigrationResult(applied=tuple(applied), seeded_providers=seeded)


def _ensure_bookkeeping(connection: pg8000.native.Connection) -> None:
    connection.run(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )


def _apply_pending(connection: pg8000.native.Connection, migrations: list[Migration]) -> list[str]:
    recorded = {
        row[0]: (row[1], row[2]) for row in connection.run("SELECT version, name, checksum FROM schema_migrations")
    }
    applied = []
    for migration in migrations:
        if migration.version in recorded:
            name, checksum = recorded[migration.version]
            if checksum != migration.checksum:
                raise MigrationError(
                    f"{migration.name} changed after it was applied (as {name}); add a new migration instead"
                )
            continue
        try:
            connection.run("BEGIN")
            connection.run(migration.sql)
            connection.run(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)",
                v=migration.version,
                n=migration.name,
                c=migration.checksum,
            )
            connection.run("COMMIT")
        except Exception as exc:
            connection.run("ROLLBACK")
            reason = _pg_message(exc)
            raise MigrationError(f"{migration.name} failed: {reason}") from None
        applied.append(migration.name)
    unknown = set(recorded) - {m.version for m in migrations}
    if unknown:
        raise MigrationError(f"the database has migrations this code does not know: {', '.join(sorted(unknown))}")
    return applied


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


def _seed(connection: pg8000.native.Connection) -> int:
    # Imported here: the catalog's YAML parser is needed only by the runner, not by every handler.
    from connvault.catalog.seed import seed_catalog

    return seed_catalog(connection)


def _pg_message(exc: Exception) -> str:
    """The server's message (SQLSTATE + text) for a failed migration: schema text only, no data values."""
    details = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    code, message = details.get("C", "?"), details.get("M", type(exc).__name__)
    return f"{code} {message}"[:200]


def main(argv: list[str] | None = None) -> int:
    try:
        result = migrate()
    except MigrationError as exc:
        print(f"migration failed: {exc}", file=sys.stderr)
        return 1
    applied = ", ".join(result.applied) or "nothing to apply"
    print(f"applied: {applied}; catalog providers changed: {result.seeded_providers}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
