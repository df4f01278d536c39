"""Settings.from_env: defaults, types, and errors that name the variable but never its value."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from connvault.config import Settings, get_settings
from connvault.errors import ConfigurationError


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """Tests that change the environment leave a cleared cache behind, so nobody reads their values."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_an_empty_environment_gives_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_the_settings_repr_shows_no_value() -> None:
    """A database URL may carry a password; a repr is what a traceback or a debugger prints."""
    settings = Settings.from_env({"CONNVAULT_DATABASE_URL": "postgresql://connvault:s3cr3t-pw@db.internal/vault"})
    assert "s3cr3t-pw" not in repr(settings)
    assert "db.internal" not in repr(settings)


def test_values_are_parsed_into_their_declared_types() -> None:
    settings = Settings.from_env(
        {
            "CONNVAULT_DB_PORT": "6543",
            "CONNVAULT_DB_CONNECT_TIMEOUT_SECONDS": "2.5",
            "CONNVAULT_DB_SSL": "true",
            "CONNVAULT_KMS_KEY_ID": "alias/connvault",
            "CONNVAULT_REFRESH_JITTER_SECONDS": "0",
        }
    )

    assert settings.db_port == 6543
    assert settings.db_connect_timeout_seconds == 2.5
    assert settings.db_ssl is True
    assert settings.kms_key_id == "alias/connvault"
    assert settings.refresh_jitter_seconds == 0.0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), (" yes ", True), ("on", True), ("0", False), ("False", False), ("no", False)],
)
def test_booleans_accept_the_usual_spellings(raw: str, expected: bool) -> None:
    assert Settings.from_env({"CONNVAULT_DB_SSL": raw}).db_ssl is expected


def test_an_empty_value_means_the_default() -> None:
    assert Settings.from_env({"CONNVAULT_DB_PORT": "", "CONNVAULT_KMS_KEY_ID": ""}) == Settings()


@pytest.mark.parametrize(
    ("name", "raw", "field"),
    [
        ("CONNVAULT_DB_PORT", "five-four-three-two", "db_port"),
        ("CONNVAULT_DB_SSL", "maybe-secretvalue", "db_ssl"),
        ("CONNVAULT_HTTP_TIMEOUT_SECONDS", "ten-secretvalue", "http_timeout_seconds"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_variable_but_not_the_value(name: str, raw: str, field: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env({name: raw})

    assert name in str(error.value)
    assert raw not in str(error.value)
    assert error.value.field == field


def test_the_lambda_region_is_used_unless_connvault_sets_its_own() -> None:
    assert Settings.from_env({"AWS_REGION": "eu-west-1"}).region == "eu-west-1"
    assert Settings.from_env({"AWS_DEFAULT_REGION": "eu-west-2"}).region == "eu-west-2"
    assert Settings.from_env({"AWS_REGION": "eu-west-1", "CONNVAULT_REGION": "ap-south-1"}).region == "ap-south-1"


def test_unknown_variables_are_ignored() -> None:
    assert Settings.from_env({"CONNVAULT_NO_SUCH_SETTING": "x", "PATH": "/bin"}) == Settings()


def test_settings_cannot_be_changed_after_they_are_read() -> None:
    settings = Settings()

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.db_port = 1  # type: ignore[misc]


@pytest.mark.usefixtures("fresh_settings")
def test_get_settings_is_read_once_and_again_after_its_cache_is_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNVAULT_REFRESH_BATCH_SIZE", "7")
    first = get_settings()
    monkeypatch.setenv("CONNVAULT_REFRESH_BATCH_SIZE", "9")
    cached = get_settings()
    get_settings.cache_clear()

    assert first is cached
    assert first.refresh_batch_size == 7
    assert get_settings().refresh_batch_size == 9


@pytest.mark.parametrize(
    ("lease", "http_timeout", "statement_timeout_ms"),
    [("20", "10", "10000"), ("3", "5", "100"), ("10", "9.5", "500"), ("1", "0.5", "1000")],
)
def test_a_refresh_lease_that_a_provider_call_and_its_store_could_outlast_is_refused(
    lease: str, http_timeout: str, statement_timeout_ms: str
) -> None:
    # A lease that runs out mid-call lets a second caller present the refresh token the provider just rotated.
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env(
            {
                "CONNVAULT_REFRESH_LEASE_SECONDS": lease,
                "CONNVAULT_HTTP_TIMEOUT_SECONDS": http_timeout,
                "CONNVAULT_DB_STATEMENT_TIMEOUT_MS": statement_timeout_ms,
            }
        )

    assert error.value.field == "refresh_lease_seconds"


def test_the_default_lease_outlasts_a_provider_call_and_its_store() -> None:
    settings = Settings()

    assert settings.refresh_lease_seconds > settings.http_timeout_seconds + settings.db_statement_timeout_ms / 1000
    assert (
        Settings.from_env(
            {
                "CONNVAULT_REFRESH_LEASE_SECONDS": "3",
                "CONNVAULT_HTTP_TIMEOUT_SECONDS": "0.5",
                "CONNVAULT_DB_STATEMENT_TIMEOUT_MS": "2000",
            }
        ).refresh_lease_seconds
        == 3
    )


def test_what_is_built_from_settings_defaults_as_the_settings_do() -> None:
    # Each default is declared once, in Settings (issue 15.4): a policy built without settings is the one built
    # from none configured.
    from connvault.services.refresh import RefreshPolicy
    from connvault.services.runner import SchedulerConfig
    from connvault.services.webhook_delivery import DeliveryConfig

    for config in (RefreshPolicy, SchedulerConfig, DeliveryConfig):
        assert config() == config.from_settings(Settings()), config.__name__
