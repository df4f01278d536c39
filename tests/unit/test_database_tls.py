"""TLS to the database: asked for only when configured, one context per process, and verifying the server when a
CA bundle is given (``CONNVAULT_DB_SSL_CA_FILE``)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from connvault.config import Settings
from connvault.db.target import database_target
from connvault.errors import ConfigurationError
from tests.support.keys import certificate_chain


def _kwargs(**settings: object) -> dict[str, object]:
    return database_target(Settings(db_host="db.internal", db_user="connvault_app", **settings)).pg8000_kwargs()


def test_without_tls_no_tls_is_asked_for() -> None:
    """pg8000's default asks every server for TLS, building a context with the system CA store each time."""
    assert _kwargs()["ssl_context"] is False
    url = "postgresql://postgres@/postgres?unix_sock=/tmp/.s.PGSQL.5432"
    assert database_target(Settings(database_url=url)).pg8000_kwargs()["ssl_context"] is False


def test_tls_without_a_bundle_encrypts_with_one_context_per_process() -> None:
    context = _kwargs(db_ssl=True)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_NONE
    assert _kwargs(db_ssl=True)["ssl_context"] is context
    assert _kwargs(db_iam_auth=True, region="us-east-1")["ssl_context"] is context  # IAM logins are TLS-only
    assert _kwargs(db_ssl=True, db_ssl_ca_file="")["ssl_context"] is context  # an empty template parameter


def test_tls_with_a_bundle_verifies_the_server_and_its_host_name(tmp_path: Path) -> None:
    bundle, _, _ = certificate_chain(tmp_path, "db.internal")
    context = _kwargs(db_ssl=True, db_ssl_ca_file=str(bundle))["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "connvault test CA"),),)]


def test_an_unreadable_bundle_is_the_operators_to_fix_and_names_the_setting_only(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate")
    for path in (tmp_path / "missing.pem", tmp_path / "junk.pem"):
        with pytest.raises(ConfigurationError) as refused:
            _kwargs(db_ssl=True, db_ssl_ca_file=str(path))
        assert refused.value.field == "db_ssl_ca_file"
        assert str(tmp_path) not in str(refused.value)
