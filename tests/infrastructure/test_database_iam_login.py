"""DbIamAuth=true: the serving functions log in as the app role with an RDS IAM token and read no secret; the
migrations (as the owner) let the app role log in through ``rds_iam`` where RDS provides it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from connvault.config import Settings, get_settings
from connvault.db.target import database_target
from connvault.migrations import migrate
from tests.support.database import TestDatabase
from tests.support.fresh_database import fresh_database

HOST = "connvault.cluster-abc.eu-west-1.rds.amazonaws.com"


def iam_settings(**overrides: object) -> Settings:
    env = {
        "CONNVAULT_DB_HOST": HOST,
        "CONNVAULT_DB_PORT": "5432",
        "CONNVAULT_DB_NAME": "connvault",
        "CONNVAULT_DB_IAM_AUTH": "true",
        # Set, and never read: with IAM login no function but the migrations may read the secret
        "CONNVAULT_DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:unreadable",
        "AWS_REGION": "eu-west-1",
        **{f"CONNVAULT_{k.upper()}": str(v) for k, v in overrides.items()},
    }
    return Settings.from_env(env)


def test_iam_login_uses_a_signed_token_for_the_app_role_over_tls_and_no_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_secret(*_: object, **__: object) -> None:
        raise AssertionError("the secret was read")

    monkeypatch.setattr("connvault.db.target._read_secret", no_secret)

    target = database_target(iam_settings())

    assert target.user == "connvault_app"
    assert target.ssl is True
    assert target.host == HOST
    token = target.password.reveal() if target.password else ""
    # rds:connect presigned for this host, port and user, signed with the function's credentials (SigV4)
    assert token.startswith(f"{HOST}:5432/?")
    query = parse_qs(urlsplit(f"https://{token}").query)
    assert query["Action"] == ["connect"]
    assert query["DBUser"] == ["connvault_app"]
    assert "X-Amz-Signature" in query
    assert token not in repr(target)


def test_a_configured_user_overrides_the_app_role() -> None:
    assert database_target(iam_settings(db_user="reporting")).user == "reporting"


def test_migrations_let_the_app_role_log_in_through_rds_iam_only_when_asked(
    database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    role = "connvault_iam_app"  # roles are cluster-wide: one of its own, dropped at the end
    with fresh_database(database, "connvault_iam") as fresh:
        # RDS's rds_iam role, as RDS has it
        fresh.query("CREATE ROLE rds_iam NOLOGIN")
        try:
            migrate(fresh.target, app_role=role)
            assert fresh.query(f"SELECT rolcanlogin FROM pg_roles WHERE rolname = '{role}'") == [[False]]

            monkeypatch.setenv("CONNVAULT_DB_APP_IAM_LOGIN", "true")
            get_settings.cache_clear()
            migrate(fresh.target, app_role=role)

            assert fresh.query(f"SELECT rolcanlogin FROM pg_roles WHERE rolname = '{role}'") == [[True]]
            assert fresh.query(f"SELECT pg_has_role('{role}', 'rds_iam', 'MEMBER')") == [[True]]
        finally:
            monkeypatch.delenv("CONNVAULT_DB_APP_IAM_LOGIN", raising=False)
            get_settings.cache_clear()
            fresh.query(f"DROP OWNED BY {role}")
            fresh.query(f"DROP ROLE {role}")
            fresh.query("DROP ROLE rds_iam")
