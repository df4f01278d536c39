"""The token function's lean route answers exactly as the resolver-based route did (issue 14.1): status, headers and
body, byte for byte, over odd inputs (UUID spellings, ``min_ttl`` and boolean forms, duplicated and unknown
parameters, unknown and foreign ids, every kind of failure), with the same log lines and metrics. The reference is
the route's resolver declaration (``api/token.py``, which the OpenAPI document is built from) behind the handler the
function used before, kept here for that purpose."""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connvault.api import answers, token, token_route
from connvault.api.app import lambda_handler, new_http_app
from connvault.errors import (
    ConfigurationError,
    CredentialsExpired,
    DatabaseBusy,
    DatabaseUnavailable,
    DecryptionFailed,
    NotFound,
    ProviderUnavailable,
    ReauthRequired,
)
from connvault.models import ApiKeyCredentials, BasicCredentials, OAuth2Credentials
from connvault.redacted import Redacted
from connvault.services.tokens import IssuedCredential
from devserver.events import http_event
from devserver.handlers import InvocationContext
from tests.api.conftest import connect_account

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.api.conftest import Api
    from tests.support.database import TestDatabase

ID = "6f1c2a3e-1b2c-4d5e-8f90-123456789abc"
TENANT = "0b5c7a1e-2d3f-4a5b-8c9d-0e1f2a3b4c5d"
ODD_IDS = [
    ID,
    ID.upper(),
    ID.replace("-", ""),
    "{" + ID + "}",
    "urn:uuid:" + ID,
    "URN:UUID:" + ID,
    "{" + ID.replace("-", "") + "}",
    ID[:8] + ID[9:],
    ID + "0",
    ID[:-1],
    ID[:-1] + "g",
    " " + ID,
    "%20" + ID,
    ID.replace("-", "_"),
    "00000000-0000-0000-0000-000000000000",
    "x",
    "a b",
    "a%2Fb",
    "(",
    "..",
    "1" * 200,
]
ODD_MIN_TTL = [
    *("0", "5", " 5", "5 ", "\t5\n", "\xa05", "\u30005", "\x1c5", "+5", "-0", "05", "5.0", "5.00", "5.", ".5"),
    *("5.5", "1_0", "1__0", "_10", "10_", "-1", "86400", "86401", "", "abc", "1e2", "0x10", "\u0663", "\uff15", "5,6"),
    *("5,", "1" * 30, "+5.0", "-5.0", "-0.0", "1_0.0", "0.0_0"),
    # Past Python's 4,300-digit limit for int() from text (a 500 once, not a 400).
    *("0" * 5000, "9" * 5000, "-" + "0" * 5000, "0" * 4999 + "5", "5." + "0" * 5000),
]
ODD_BOOLEANS = [
    *("true", "True", "TRUE", "1", "0", "yes", "YES", "on", "On", "off", "t", "T", "f", "y", "n", "no", ""),
    *("2", " true", "true ", "1.0", "true,false", "none", "null"),
]
ODD_PATHS = [
    f"/connections/{ID}/token/",
    f"/connections/{ID}//token",
    "/connections//token",
    f"/connections/{ID}/tokens",
    f"/Connections/{ID}/token",
    f"/connections/{ID}",
    f"/connections/{ID}/token/x",
]
_PLAIN_RECORD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


@pytest.fixture
def routes(database: TestDatabase, reconfigure: Callable[..., None]) -> tuple[Any, Any]:
    """The token function as it was (the resolver declaration behind the shared HTTP handler), and as it is.
    Without the tenant rate limit: hundreds of requests of one tenant compare answers, not rates (an over-rate
    tenant has its own comparison)."""
    reconfigure(rate_limit_per_second=0)
    app = new_http_app()
    token.register(app)
    return lambda_handler(app), token_route.new_handler()


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """``get_token`` replaced in both routes by one that answers what the test queues (an ``IssuedCredential`` or
    an exception to raise; by default ``NotFound``); both routes must call it with the same arguments (the lean
    route also hands it the rate limiter's count when one falls due, which these tests never reach)."""
    queued: list[Any] = []
    calls: list[tuple[Any, ...]] = []

    def fake(
        tenant_id: UUID, connection_id: UUID, *, min_ttl: int, force_refresh: bool, count: None = None
    ) -> IssuedCredential:
        calls.append((tenant_id, connection_id, min_ttl, force_refresh))
        outcome = queued[0] if queued else NotFound(f"connection {connection_id} not found")
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(token, "get_token", fake)
    monkeypatch.setattr(token_route, "get_token", fake)
    yield queued
    assert calls[0::2] == calls[1::2]


def compare(
    routes: tuple[Any, Any], event: dict[str, Any], caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> dict[str, Any]:
    """Both routes' answers to one event, which must be equal, as must their log lines and metrics."""
    answers, logs, metrics = [], [], []
    capsys.readouterr()
    for handler in routes:
        caplog.clear()
        answers.append(handler(copy.deepcopy(event), InvocationContext()))
        logs.append([(r.levelname, r.getMessage(), sorted(set(r.__dict__) - _PLAIN_RECORD)) for r in caplog.records])
        metrics.append(_metric_names(capsys.readouterr().out))
    assert answers[1] == answers[0]
    assert logs[1] == logs[0]
    assert metrics[1] == metrics[0]
    return answers[1]


def _metric_names(printed: str) -> list[str]:
    documents = [json.loads(line) for line in printed.splitlines() if line.startswith('{"_aws"')]
    return [m["Name"] for d in documents for directive in d["_aws"]["CloudWatchMetrics"] for m in directive["Metrics"]]


def event(path: str = f"/connections/{ID}/token", *, query: Any = None, method: str = "GET", **kw: Any) -> dict:
    return http_event(method, path, query=query, tenant_id=kw.pop("tenant_id", TENANT), **kw)


def test_an_over_rate_tenant_is_answered_alike(routes, script, reconfigure) -> None:
    answers = []
    for handler in routes:
        reconfigure(rate_limit_per_second=0.001, rate_limit_burst=1)  # a limiter of its own for each route
        handler(event(), InvocationContext())
        answers.append(handler(event(), InvocationContext()))
    assert answers[0]["statusCode"] == 429
    assert answers[1] == answers[0]


@pytest.mark.parametrize("raw_id", ODD_IDS)
def test_connection_id_spellings_are_answered_alike(routes, script, caplog, capsys, raw_id: str) -> None:
    compare(routes, event(f"/connections/{raw_id}/token"), caplog, capsys)


def test_only_ids_that_parse_are_remembered(routes, script) -> None:
    """The route keeps what it parsed of a path's id; a hostile tenant's long or odd ids must not fill it."""
    answers.parsed_id.cache_clear()
    for raw_id in ("1" * 5000, "x", "a b", ID[:-1] + "g", "{" + ID + "}", ID):
        routes[1](event(f"/connections/{raw_id}/token"), InvocationContext())
    assert answers.parsed_id.cache_info().currsize == 3  # the tenant, and the two spellings of the id


@pytest.mark.parametrize("value", ODD_MIN_TTL)
def test_min_ttl_forms_are_answered_alike(routes, script, caplog, capsys, value: str) -> None:
    compare(routes, event(query={"min_ttl": value}), caplog, capsys)


@pytest.mark.parametrize("value", ODD_BOOLEANS)
def test_force_refresh_forms_are_answered_alike(routes, script, caplog, capsys, value: str) -> None:
    compare(routes, event(query={"force_refresh": value}), caplog, capsys)


@pytest.mark.parametrize(
    "query",
    [
        "min_ttl=abc&force_refresh=zz",
        "min_ttl=5&min_ttl=6",
        "unknown=1&min_ttl=3",
        "force_refresh=true&min_ttl=60",
        "MIN_TTL=5",
        "min_ttl",
    ],
)
def test_parameter_combinations_are_answered_alike(routes, script, caplog, capsys, query: str) -> None:
    compare(routes, event(f"/connections/{'x' if 'abc' in query else ID}/token", query=query), caplog, capsys)


@pytest.mark.parametrize("path", ODD_PATHS)
def test_paths_the_route_does_not_take_are_answered_alike(routes, script, caplog, capsys, path: str) -> None:
    compare(routes, event(path), caplog, capsys)


@pytest.mark.parametrize("method", ["POST", "get", "HEAD", "DELETE"])
def test_other_methods_are_answered_alike(routes, script, caplog, capsys, method: str) -> None:
    compare(routes, event(method=method), caplog, capsys)


def test_a_stage_prefix_is_stripped_alike(routes, script, caplog, capsys) -> None:
    staged = event()
    staged["requestContext"]["stage"] = "prod"
    staged["rawPath"] = "/prod" + staged["rawPath"]
    compare(routes, staged, caplog, capsys)


@pytest.mark.parametrize(
    "authorizer", [{}, {"tenant_id": "not-a-uuid"}, {"tenant_id": TENANT, "unchecked": "database_unavailable"}]
)
def test_missing_malformed_or_unchecked_tenants_are_answered_alike(routes, script, caplog, capsys, authorizer) -> None:
    unauthorised = http_event("GET", f"/connections/{ID}/token", authorizer=authorizer or None)
    compare(routes, unauthorised, caplog, capsys)


ISSUED_AT = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
OUTCOMES = [
    IssuedCredential(
        UUID(ID), OAuth2Credentials(Redacted("at_one")), "bearer", ISSUED_AT, ("read", "write"), refreshed=True
    ),
    IssuedCredential(UUID(ID), OAuth2Credentials(Redacted("at_two")), None, None, (), min_ttl_met=False),
    IssuedCredential(UUID(ID), OAuth2Credentials(Redacted("at_3")), "mac", ISSUED_AT.replace(microsecond=0), ("é",)),
    IssuedCredential(UUID(ID), OAuth2Credentials(None), None, ISSUED_AT, ()),  # an import stored without one
    IssuedCredential(UUID(ID), ApiKeyCredentials(Redacted("sk_key")), None, None, ()),
    IssuedCredential(UUID(ID), BasicCredentials("ann", Redacted('pw\u2028"<')), None, None, ()),
    NotFound(f"connection {ID} not found"),
    ReauthRequired("connection needs reauthorization", reason="invalid_grant"),
    CredentialsExpired("the credentials expired"),
    ProviderUnavailable("the provider is unavailable", retry_after=2.6, reason="rate_limited"),
    ProviderUnavailable("the provider is unavailable"),
    DatabaseBusy("the database did not answer in time; retry shortly"),
    DecryptionFailed("envelope of credentials on row x failed to open"),
    DatabaseUnavailable("the database is unavailable; retry shortly"),
    ConfigurationError("CONNVAULT_KMS_KEY_ID is not set", field="kms_key_id"),
    RuntimeError("a bug"),
]


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: type(o).__name__)
@pytest.mark.parametrize("query", [None, {"force_refresh": "true", "min_ttl": "600"}])
def test_every_service_outcome_is_answered_alike(routes, script, caplog, capsys, outcome, query) -> None:
    script.append(outcome)
    compare(routes, event(query=query), caplog, capsys)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    min_ttl=st.none() | st.text(alphabet="0123456789+-_. \t\xa0\u3000e,x\u0663", max_size=8),
    force=st.none() | st.sampled_from(ODD_BOOLEANS) | st.text(alphabet="tTrRuUeEfFaAlLsS01yYnNoO ", max_size=5),
    raw_id=st.sampled_from(ODD_IDS) | st.text(alphabet="0123456789abcdefABCDEF-{}:urnid", min_size=30, max_size=46),
)
def test_generated_inputs_are_answered_alike(routes, script, min_ttl, force, raw_id) -> None:
    query = {k: v for k, v in (("min_ttl", min_ttl), ("force_refresh", force)) if v is not None}
    answers = [handler(event(f"/connections/{raw_id}/token", query=query), InvocationContext()) for handler in routes]
    assert answers[1] == answers[0]


def test_real_fetches_are_answered_alike(api: Api, routes, caplog, capsys) -> None:
    """Through the real service and database: a live OAuth connection, an unknown id, another tenant's id."""
    connection_id = connect_account(api)
    mine = str(api.tenant.tenant_id)
    fetched = compare(routes, event(f"/connections/{connection_id}/token", tenant_id=mine), caplog, capsys)
    assert fetched["statusCode"] == 200
    api.secrets.add(json.loads(fetched["body"])["access_token"])
    compare(
        routes, event(f"/connections/{connection_id}/token", query={"min_ttl": "60"}, tenant_id=mine), caplog, capsys
    )
    compare(routes, event(tenant_id=mine), caplog, capsys)
    compare(routes, event(f"/connections/{connection_id}/token", tenant_id=TENANT), caplog, capsys)


def test_a_fetch_that_records_no_metric_prints_no_emf_and_no_warning(api: Api, capsys, recwarn) -> None:
    connection_id = connect_account(api)
    lean = token_route.new_handler()
    fetch = event(f"/connections/{connection_id}/token", tenant_id=str(api.tenant.tenant_id))
    capsys.readouterr()
    recwarn.clear()

    answer = lean(fetch, InvocationContext())

    assert answer["statusCode"] == 200
    api.secrets.add(json.loads(answer["body"])["access_token"])
    assert _metric_names(capsys.readouterr().out) == []
    assert not [w for w in recwarn if "metric" in str(w.message).lower()]
