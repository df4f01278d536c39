"""Hostile input never gets a 5xx, and a request refused for what it is writes nothing.

* Every operation of ``docs/openapi.json`` is fuzzed with schemathesis, valid-looking (positive) and
  schema-violating (negative) requests, sent through the real handlers with a tenant the authorizer vouched
  for, some of them at the tenant's real connection ids and provider slug. A snapshot of every row connvault
  keeps is taken around each request that is refused for its input.
* The routes outside the document are fuzzed too: the authorizer (any ``Authorization`` header) and the public
  OAuth callback (any query).
* The request models, the discovery-metadata parser and the URL check take arbitrary input and raise nothing but
  their one validation error. (The envelope, token-response and API-key parsers have theirs in ``tests/unit``.)

``CONNVAULT_FUZZ_EXAMPLES`` sets the examples per operation and mode (``make test-long`` raises it).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets as random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from schemathesis import GenerationMode
from schemathesis.core import NotSet

from connvault.api import schemas
from connvault.errors import InvalidInput
from connvault.oauth.discovery import issuer_of, parse_metadata
from connvault.proxy.headers import UPSTREAM_HEADER
from connvault.validation import require_url
from devserver.events import http_event
from tests.api.conftest import Api, connect_account, job_for, start_connect

if TYPE_CHECKING:
    from collections.abc import Callable

    from schemathesis.generation.case import Case
    from schemathesis.specs.openapi.schemas import APIOperation

    from tests.hardening.conftest import Snapshot
    from tests.support.secrets import SecretRegistry

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json")
OPERATIONS: dict[str, APIOperation] = {
    result.ok().label: result.ok()
    for result in SCHEMA.get_all_operations()
    if result.ok().definition.raw.get("security") != []  # the public callback: fuzzed below with any query
}
EXAMPLES = int(os.environ.get("CONNVAULT_FUZZ_EXAMPLES", "12"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))

REFUSED_FOR_INPUT = frozenset({400, 401, 403, 404, 405, 413, 415, 422})
"""Statuses that refuse the request itself. A 409 may also record what the provider said about the connection
(``needs_reauth``, ``expired``): that is the connection's state changing, not the input being accepted; only a 409
``conflict`` refuses the input."""

SECRET_FIELDS = ("client_secret", "api_key", "password")
STATIC_KEY = "sk-fuzz-" + "f" * 40


@dataclass(frozen=True)
class Targets:
    """What the fuzzed tenant really has, so generated requests also reach rows that exist."""

    tenant_id: str
    connection_ids: tuple[str, ...]

    def path_parameters(self, operation: APIOperation, index: int) -> dict[str, str]:
        fixed = {}
        if "{connection_id}" in operation.path:
            # The proxy calls the connection's provider: only the demo one's API is on loopback.
            proxied = "/proxy/" in operation.path
            fixed["connection_id"] = self.connection_ids[0 if proxied else index % len(self.connection_ids)]
        if "{provider}" in operation.path:
            fixed["provider"] = "demo"
        return fixed


@pytest.fixture
def targets(api: Api, secrets: SecretRegistry) -> Targets:
    secrets.add(STATIC_KEY)
    oauth_id = connect_account(api)
    static = api.call("POST", "/connections", body={"provider": "openai", "end_user_id": "fuzz", "api_key": STATIC_KEY})
    assert static.status == 201, static.body
    decision = api.authorize(f"Bearer {api.tenant.api_key.reveal()}")
    assert decision["isAuthorized"]
    return Targets(decision["context"]["tenant_id"], (oauth_id, static.json()["id"]))


def request_strategy(operation: APIOperation, mode: GenerationMode, targets: Targets) -> st.SearchStrategy[Case]:
    generated = operation.as_strategy(generation_mode=mode)
    fixed = [targets.path_parameters(operation, index) for index in range(len(targets.connection_ids))]
    if not fixed[0]:
        return generated
    at_real_rows = [operation.as_strategy(generation_mode=mode, path_parameters=params) for params in fixed]
    return st.one_of(generated, *at_real_rows)


def event_of(case: Case, tenant_id: str) -> dict[str, Any]:
    """The API Gateway event for a generated request; the tenant comes from the authorizer, never the request."""
    headers = {name: value for name, value in (case.headers or {}).items() if name.lower() != "authorization"}
    body = None if isinstance(case.body, NotSet) else case.body
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body)
    query = urlencode(case.query or {}, doseq=True)
    return http_event(case.method, case.formatted_path, query=query, body=body, headers=headers, tenant_id=tenant_id)


def keep_on_loopback(case: Case) -> None:
    """A custom provider's discovery URL is fetched when the integration is saved; generated ones are dropped
    (discovery is tested against a local server in ``tests/custom_providers``)."""
    custom = case.body.get("custom_provider") if isinstance(case.body, dict) else None
    if isinstance(custom, dict) and custom.get("discovery_url") is not None:
        custom["discovery_url"] = None


def register_secret_fields(body: object, secrets: SecretRegistry) -> None:
    """Generated values of secret fields are secrets too, when long and varied enough not to recur by chance."""
    if not isinstance(body, dict):
        return
    for name in SECRET_FIELDS:
        value = body.get(name)
        if isinstance(value, str) and len(value) >= 20 and len(set(value)) >= 10:
            secrets.add(value)


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_generated_request_gets_a_5xx_and_a_refused_one_writes_nothing(
    api: Api,
    targets: Targets,
    snapshot: Callable[..., Snapshot],
    loopback_only: None,
    secrets: SecretRegistry,
    label: str,
    mode: GenerationMode,
) -> None:
    operation = OPERATIONS[label]

    @FUZZ
    @given(case=request_strategy(operation, mode, targets))
    def send(case: Case) -> None:
        keep_on_loopback(case)
        register_secret_fields(case.body, secrets)
        job = job_for(case.method, case.formatted_path)
        before = snapshot()

        answer = api.invoke(job, event_of(case, targets.tenant_id))

        assert answer.status < 500, f"{case.method} {case.formatted_path}: {answer.status} {answer.body}"
        if answer.headers.get(UPSTREAM_HEADER):
            return  # the provider's own answer, relayed by the proxy: not a refusal of the input by connvault
        if answer.status >= 400:
            error = schemas.ErrorResponse.model_validate_json(answer.body).error
            if answer.status in REFUSED_FOR_INPUT or error.code == "conflict":
                assert snapshot() == before, f"{case.method} {case.formatted_path}: {answer.status} wrote rows"

    send()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# What the fuzzing found once, kept as plain examples: each was a 500 (and the deep metadata a stored row that
# every later read of it failed on).
FOUND = {
    "metadata_nul_value": ("PATCH", "/connections/{id}", {"metadata": {"a": "\x00"}}, "metadata"),
    "metadata_nul_key": ("PATCH", "/connections/{id}", {"metadata": {"\x00": None}}, "metadata"),
    "metadata_too_deep": ("PATCH", "/connections/{id}", f'{{"metadata": {{"a": {nested(40)}}}}}', "metadata"),
    "new_metadata_nul": (
        "POST",
        "/connections",
        {"provider": "openai", "end_user_id": "u", "api_key": STATIC_KEY, "metadata": {"a": "\x00"}},
        "metadata",
    ),
    "body_not_utf8": ("PUT", "/integrations/demo", b"\x80", "body"),
    "body_nested_past_the_parser": ("PATCH", "/connections/{id}", f'{{"metadata": {nested(5000)}}}', "body"),
    "return_url_nul": (
        "PUT",
        "/integrations/demo",
        {"client_id": "x", "allowed_return_urls": ["https://app.example.com/\x00"]},
        "allowed_return_urls",
    ),
    "custom_provider_url_nul": (
        "PUT",
        "/integrations/acme",
        {"client_id": "x", "custom_provider": {"authorization_url": "https://a.example", "token_url": "https://t\x00"}},
        "custom_provider.token_url",
    ),
}


@pytest.mark.parametrize("name", sorted(FOUND))
def test_input_the_fuzzer_once_broke_is_a_400_naming_the_field_and_writes_nothing(
    api: Api, targets: Targets, snapshot: Callable[..., Snapshot], name: str
) -> None:
    method, path, body, field = FOUND[name]
    before = snapshot()
    event = http_event(method, path.format(id=targets.connection_ids[1]), body=body, tenant_id=targets.tenant_id)

    answer = api.invoke("api", event)

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == field
    assert snapshot() == before


@pytest.mark.parametrize("parameter", ["provider", "end_user_id"])
def test_a_list_filter_postgresql_cannot_hold_is_a_400(api: Api, parameter: str) -> None:
    answer = api.call("GET", "/connections", query={parameter: "a\x00"})

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == parameter


@pytest.mark.parametrize(
    "moment",
    ["9999-12-31T23:59:59-00:01", "0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z"],
)
def test_a_time_no_layer_can_hold_is_a_400(api: Api, moment: str) -> None:
    """Past year 9999 or before year 1 once in UTC (the driver's conversion overflowed: a 500), or at the very edge."""
    answer = api.call("GET", "/connections", query={"unused_since": moment})

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == "query.unused_since"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/connections", {"provider": "secret-value-zqx", "end_user_id": "u", "api_key": "y"}),
        ("POST", "/connect-sessions", {"provider": "secret-value-zqx", "end_user_id": "u"}),
        ("GET", "/integrations/secret-value-zqx", None),
        ("POST", "/integrations/secret-value-zqx/refresh-metadata", None),
    ],
)
def test_an_unknown_provider_is_refused_without_repeating_its_slug(
    api: Api, method: str, path: str, body: dict[str, Any] | None
) -> None:
    answer = api.call(method, path, body=body)

    assert 400 <= answer.status < 500, answer.body
    assert "secret-value-zqx" not in answer.body


# -- outside the OpenAPI document ---------------------------------------------------------------------------

KEY_ID = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=16, max_size=16)
AUTHORIZATION = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.builds("Bearer {}".format, st.text(max_size=200)),
    st.builds("Bearer cv_{}_{}".format, KEY_ID, st.text(max_size=80)),
    st.builds("bearer cv_{}_{}".format, KEY_ID, st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", max_size=60)),
)


def test_the_authorizer_denies_any_header_that_is_not_a_key_and_never_raises(api: Api) -> None:
    @FUZZ
    @given(authorization=AUTHORIZATION)
    def present(authorization: str | None) -> None:
        assert api.authorize(authorization) == {"isAuthorized": False}

    present()


CALLBACK_PARAMETER = st.sampled_from(["state", "code", "error", "iss", "error_description"]) | st.text(max_size=10)


def test_the_public_callback_answers_any_query_without_a_5xx_or_a_write(
    api: Api, snapshot: Callable[..., Snapshot]
) -> None:
    # Given a connect session waiting for its callback (whose state the generated queries do not know)
    assert start_connect(api).status == 201
    before = snapshot()

    @FUZZ
    @given(pairs=st.lists(st.tuples(CALLBACK_PARAMETER, st.text(max_size=600)), max_size=6))
    def land(pairs: list[tuple[str, str]]) -> None:
        answer = api.callback(urlencode(pairs))
        assert answer.status in (302, 400), answer.status

    land()
    assert snapshot() == before


PAGE_FIELD = st.sampled_from(["page_token", "step", "provider", "api_key", "username", "password"]) | st.text(
    max_size=10
)
PAGE_STEP = st.sampled_from(["choose", "credentials", "list"]) | st.text(max_size=12)


def test_the_public_connect_page_answers_any_query_or_form_with_a_page_and_no_write(
    api: Api, snapshot: Callable[..., Snapshot]
) -> None:
    # Given a connect link waiting to be opened (whose token the generated requests do not know)
    started = api.call("POST", "/connect-sessions", body={"providers": ["demo"], "end_user_id": "u1"})
    assert started.status == 201, started.body
    api.secrets.add(started.json()["connect_url"].split("token=", 1)[1])
    before = snapshot()

    def page(event: dict[str, Any]) -> None:
        raw = api.invoke_raw("connect_page", event)
        assert raw["statusCode"] in (200, 400, 404, 410), raw["statusCode"]
        assert raw["headers"]["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in raw["headers"]["Content-Security-Policy"]

    @FUZZ
    @given(query=st.lists(st.tuples(st.sampled_from(["token"]) | st.text(max_size=8), st.text(max_size=600))))
    def open_page(query: list[tuple[str, str]]) -> None:
        page(http_event("GET", "/connect", query=urlencode(query)))

    @FUZZ
    @given(
        pairs=st.lists(st.tuples(PAGE_FIELD, st.text(max_size=300)), max_size=8),
        step=PAGE_STEP,
        raw=st.binary(max_size=200),
        content_type=st.sampled_from(["application/x-www-form-urlencoded", "multipart/form-data", "text/plain", ""]),
    )
    def post_page(pairs: list[tuple[str, str]], step: str, raw: bytes, content_type: str) -> None:
        body: str | bytes = urlencode([("step", step), *pairs]) if raw[:1] != b"\x00" else raw
        page(http_event("POST", "/connect", body=body, headers={"content-type": content_type}))

    open_page()
    post_page()
    assert snapshot() == before


# -- parsers and models -------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=6),
    max_leaves=25,
)
REQUEST_MODELS = [
    schemas.ConnectSessionRequest,
    schemas.CreateConnectionRequest,
    schemas.ImportedConnectionRequest,
    schemas.ImportConnectionsRequest,
    schemas.ClientCredentialsConnectionRequest,
    schemas.JwtBearerConnectionRequest,
    schemas.CustomProviderRequest,
    schemas.IntegrationRequest,
    schemas.UpdateConnectionRequest,
]


def fields_of(model: type[schemas.Strict]) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(model.model_fields)) | st.text(max_size=12)


@pytest.mark.parametrize("model", REQUEST_MODELS, ids=lambda model: model.__name__)
def test_a_request_model_given_any_json_raises_nothing_but_a_validation_error(model: type[schemas.Strict]) -> None:
    @settings(max_examples=150, deadline=None, database=None)
    @given(document=JSON | st.dictionaries(fields_of(model), JSON, max_size=8))
    def validate(document: object) -> None:
        with contextlib.suppress(ValidationError):
            model.model_validate(document)

    validate()


@pytest.mark.parametrize("model", REQUEST_MODELS, ids=lambda model: model.__name__)
def test_a_request_model_given_any_bytes_raises_nothing_but_a_validation_error(model: type[schemas.Strict]) -> None:
    @settings(max_examples=150, deadline=None, database=None)
    @given(raw=st.binary(max_size=400) | JSON.map(lambda value: json.dumps(value).encode()))
    def validate(raw: bytes) -> None:
        with contextlib.suppress(ValidationError):
            model.model_validate_json(raw)

    validate()


def test_a_secret_field_never_shows_in_a_models_repr_or_validation_error() -> None:
    secret = f"cs-{random.token_urlsafe(24)}"
    request = schemas.IntegrationRequest(client_id="app", client_secret=secret)
    with pytest.raises(ValidationError) as refused:
        schemas.CreateConnectionRequest.model_validate({"provider": "Bad Slug!", "end_user_id": "", "api_key": secret})

    assert secret not in repr(request)
    assert secret not in str(request)
    assert secret not in str(refused.value)


def refusal(call: Callable[[], object]) -> InvalidInput | None:
    """The ``InvalidInput`` that ``call`` raised, or None if it accepted its input; anything else propagates."""
    try:
        call()
    except InvalidInput as refused:
        return refused
    return None


METADATA_MEMBERS = st.sampled_from(
    [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "revocation_endpoint",
        "token_endpoint_auth_methods_supported",
        "code_challenge_methods_supported",
        "authorization_response_iss_parameter_supported",
    ]
)
ISSUER = "https://login.example.com"
URLISH = st.sampled_from([ISSUER, f"{ISSUER}/token", "http://127.0.0.1:9/x", "ftp://x", "https://", ""]) | st.text(
    max_size=60
)


@settings(max_examples=300, deadline=None, database=None)
@given(document=st.dictionaries(METADATA_MEMBERS | st.text(max_size=10), URLISH | JSON, max_size=8))
def test_discovery_metadata_of_any_shape_is_accepted_or_refused_as_invalid_input(document: dict[str, Any]) -> None:
    refused = refusal(lambda: parse_metadata(document, (ISSUER,)))
    assert refused is None or refused.field


@settings(max_examples=300, deadline=None, database=None)
@given(url=URLISH | st.text(max_size=300))
def test_url_checks_accept_or_refuse_any_text_as_invalid_input(url: str) -> None:
    issuer_of(url)
    refused = refusal(lambda: require_url(url, "return_url"))
    assert refused is None or refused.field == "return_url"
