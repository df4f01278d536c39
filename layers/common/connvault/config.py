"""Settings: one frozen, typed object built from the environment, once per process.

``get_settings()`` is cached and never called at import time; tests set the environment and call
``get_settings.cache_clear()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from connvault.errors import ConfigurationError

PREFIX = "CONNVAULT_"
MAX_PENDING_SECONDS = 365 * 86_400
"""The longest a webhook delivery may stay pending: a year."""


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    """Everything connvault reads from its environment.

    The database is given either as one URL (local and tests) or as host/port/name/user plus the
    ARN of a Secrets Manager secret holding the password (deployments).

    No ``repr``: a database URL may carry a password, and a repr is what ends up in a traceback or a debugger's
    output (building it also cost ~1 ms of every cold start, for 68 fields).
    """

    database_url: str | None = None
    db_host: str | None = None
    db_port: int = 5432
    db_name: str = "postgres"
    db_user: str | None = None
    db_secret_arn: str | None = None
    db_app_role: str = "connvault_app"
    db_connect_timeout_seconds: float = 5.0
    db_statement_timeout_ms: int = 10_000
    db_lock_timeout_ms: int = 5_000
    db_pool_size: int = 2
    db_max_overflow: int = 16
    db_ssl: bool = False
    db_ssl_ca_file: str | None = None
    """A PEM bundle (the RDS CA bundle shipped with the function, say): with it, TLS to the database verifies the
    server's certificate and host name; without it, TLS encrypts but checks neither (RDS's own CAs are not in the
    runtime's trust store)."""
    db_iam_auth: bool = False
    """Log in with an RDS IAM token (``generate_db_auth_token``) as ``db_user`` (default: the app role)."""
    db_app_iam_login: bool = False
    """Migrations let the app role log in through RDS IAM authentication (GRANT rds_iam, LOGIN)."""
    kms_key_id: str | None = None
    region: str = "us-east-1"
    data_key_max_age_seconds: int = 300
    data_key_max_uses: int = 100_000
    data_key_cache_size: int = 16_384
    callback_url: str | None = None
    connect_session_ttl_seconds: int = 600
    connect_link_ttl_seconds: int = 1800
    """How long a connect link can be opened, and how long its page then works."""
    discovery_max_age_seconds: int = 86_400
    http_timeout_seconds: float = 10.0
    """The total deadline of one call to a provider (connect, TLS, request, whole answer), not a per-read
    timeout: the refresh lease must outlast it plus the commit."""
    allow_insecure_loopback_urls: bool = False
    """Let tenant URLs name loopback, over plain http too: local development and tests only, never deployed."""
    proxy_deadline_seconds: float = 25.0
    """Everything one proxied request may take (credential, provider calls, retries): under API Gateway's 30 s."""
    proxy_refresh_cooldown_seconds: int = 30
    """A 401 from a provider whose connection was refreshed this recently is passed on, not refreshed again: an
    endpoint that always answers 401 must not turn every proxied call into a refresh."""
    default_refresh_margin_seconds: int = 300
    refresh_lease_seconds: int = 30
    refresh_wait_seconds: float = 8.0
    refresh_horizon_seconds: int = 900
    refresh_batch_size: int = 100
    refresh_concurrency: int = 16
    refresh_per_provider_concurrency: int = 8
    refresh_tenant_share: int = 8
    refresh_max_failures: int = 8
    refresh_backoff_base_seconds: int = 30
    refresh_backoff_cap_seconds: int = 3600
    refresh_deadline_margin_ms: int = 15_000
    refresh_jitter_seconds: float = 0.25
    refresh_park_after_faults: int = 3
    refresh_queue_url: str | None = None
    last_used_coalesce_seconds: int = 60
    device_min_interval_seconds: int = 5
    """The shortest wait between two polls of one device session (RFC 8628's default interval), whatever shorter
    interval the provider declares: the poller is shared by every tenant."""
    webhook_deadline_seconds: float = 5.0
    """Total deadline of one delivery attempt (connect, TLS, request, answer): short, so a slow receiver costs
    its own endpoint's throughput and nobody else's."""
    webhook_retry_window_seconds: int = 86_400
    webhook_backoff_base_seconds: int = 5
    webhook_backoff_cap_seconds: int = 3600
    webhook_per_endpoint_concurrency: int = 4
    webhook_concurrency: int = 16
    webhook_claim_endpoints: int = 64
    webhook_circuit_threshold: int = 5
    webhook_circuit_cooldown_seconds: int = 30
    webhook_circuit_cooldown_cap_seconds: int = 3600
    webhook_secret_overlap_seconds: int = 86_400
    webhook_max_endpoints: int = 20
    webhook_retention_days: int = 30
    """Delivered, failed and expired deliveries, and their events, are kept this long (listable, re-sendable)."""
    webhook_max_pending_seconds: int = 259_200
    """A delivery still pending this long after its event (or its last redeliver request) expires, sent or not:
    behind a disabled endpoint, an open circuit or an earlier delivery of its connection, a backlog would otherwise
    only grow. At least the retry window, so that expiry never cuts retries short."""
    webhook_drain_seconds: float = 0.0
    """How long one delivery run keeps polling the outbox once it is empty (0: return at once)."""
    account_retention_days: int = 30
    """Soft-deleted accounts are purged by the scheduled function once deleted this long ago."""
    quota_connections: int = 100_000
    quota_custom_providers: int = 100
    quota_integrations: int = 200
    quota_api_keys: int = 50
    quota_connect_sessions: int = 10_000
    """Per tenant: what one tenant may hold, so that it cannot use up a deployment shared with others."""
    rate_limit_per_second: float = 100.0
    """Per tenant: requests per second, sustained, across every process (0 turns rate limiting off)."""
    rate_limit_burst: int = 200
    """Per tenant: requests admitted at once above the sustained rate."""
    rate_limit_share_every: int = 20
    """Requests a process admits for a tenant before adding them to the tenant's shared count (one statement)."""

    def __post_init__(self) -> None:
        if self.rate_limit_per_second < 0 or self.rate_limit_burst < 1 or self.rate_limit_share_every < 1:
            raise ConfigurationError(
                f"settings {PREFIX}RATE_LIMIT_PER_SECOND must be 0 (off) or more, {PREFIX}RATE_LIMIT_BURST and "
                f"{PREFIX}RATE_LIMIT_SHARE_EVERY at least 1",
                field="rate_limit_per_second",
            )
        if not 1 <= self.device_min_interval_seconds <= 3600:
            raise ConfigurationError(
                f"setting {PREFIX}DEVICE_MIN_INTERVAL_SECONDS must be between 1 and 3600 (seconds)",
                field="device_min_interval_seconds",
            )
        if not self.webhook_retry_window_seconds <= self.webhook_max_pending_seconds <= MAX_PENDING_SECONDS:
            # Past a year, the cut-off before it falls out of datetime's range and every run of the sender fails.
            raise ConfigurationError(
                f"setting {PREFIX}WEBHOOK_MAX_PENDING_SECONDS must be at least {PREFIX}WEBHOOK_RETRY_WINDOW_SECONDS "
                f"({self.webhook_retry_window_seconds} s with these settings) and at most {MAX_PENDING_SECONDS}",
                field="webhook_max_pending_seconds",
            )
        if self.refresh_lease_seconds <= self.refresh_lease_floor_seconds:
            raise ConfigurationError(
                f"setting {PREFIX}REFRESH_LEASE_SECONDS must exceed one provider call's deadline plus the time to "
                f"store its answer ({self.refresh_lease_floor_seconds:g} s with these settings)",
                field="refresh_lease_seconds",
            )

    @property
    def provider_deadline_seconds(self) -> float:
        """The longest one provider call may take."""
        return self.http_timeout_seconds

    @property
    def store_deadline_seconds(self) -> float:
        """The longest the statement storing a refresh's answer may take (the statement timeout)."""
        return self.db_statement_timeout_ms / 1000

    @property
    def refresh_lease_floor_seconds(self) -> float:
        """What a refresh lease must outlast: the provider call, then the statement that stores its answer.
        A lease that ran out before the store would let a second caller present the refresh token the
        provider has just rotated."""
        return self.provider_deadline_seconds + self.store_deadline_seconds

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        values: dict[str, object] = {}
        for name, field in cls.__dataclass_fields__.items():
            raw = env.get(PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            kind = field.type
            try:
                if kind in ("bool", bool):
                    values[name] = _parse_bool(raw)
                elif kind in ("int", int):
                    values[name] = int(raw)
                elif kind in ("float", float):
                    values[name] = float(raw)
                else:
                    values[name] = raw
            except ValueError:
                raise ConfigurationError(f"setting {PREFIX}{name.upper()} has the wrong type", field=name) from None
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if region and "region" not in values:
            values["region"] = region
        return cls(**values)  # type: ignore[arg-type]


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


DEFAULTS = Settings()
"""The settings with nothing configured: what other objects built from settings take as their own defaults, so
each default is declared once, here."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; cached because the environment does not change under a Lambda."""
    return Settings.from_env(os.environ)
