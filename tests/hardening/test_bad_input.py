"""Bad input that used to be a 500 or was stored (issue 13.8): every case is a 4xx with the documented error shape,
writes nothing, and says nothing derived from the input.

The listed cases are examples; the property tests below generate the families they come from (lone surrogates,
NaN / Infinity, numbers past every limit, duplicate keys, malformed content types) for the two routes the fuzzer
broke.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connvault.api.app import request_field_names
from devserver.events import http_event
from tests.api.conftest import Api, connect_account, db_state

if TYPE_CHECKING:
    from tests.support.database import TestDatabase

SECRET = "sk-never-echo-7c1e0b"
HUGE_INTEGER = "9" * 5000

BAD_BODIES = [
    # (route, raw body, content type, expected status)
    ("patch", '{"alias": "x"}', "multipart/form-data", 415),
    ("put", '{"client_id": "x"}', "multipart/form-data", 415),
    ("put", '{"client_id": "x"}', "multipart/form-data; boundary=", 415),
    ("patch", '{"metadata": {"a": "\\ud800"}}', "application/json", 400),
    ("patch", '{"metadata": {"\\ud800": 1}}', "application/json", 400),
    ("patch", '{"metadata": {"a": NaN}}', "application/json", 400),
    ("patch", '{"metadata": {"a": -Infinity}}', "application/json", 400),
    ("patch", '{"metadata": {"a": 1e400}}', "application/json", 400),
    ("patch", '{"metadata": {"a": ' + HUGE_INTEGER + "}}", "application/json", 400),
    ("patch", '{"alias": "a", "alias": "b"}', "application/json", 400),
    ("put", '{"client_id": "x", "client_secret": "\\ud800"}', "application/json", 400),
    ("put", '{"client_id": "x", "client_secret": "' + SECRET + '\\udfff"}', "application/json", 400),
    ("put", json.dumps({"client_id": "x", "client_secret": SECRET}), "application/x-www-form-urlencoded", 415),
    ("put", f"client_id=x&client_secret={SECRET}", "application/x-www-form-urlencoded", 415),
    ("put", json.dumps({"client_id": "x", "client_secret": SECRET}), "text/plain", 415),
    ("put", json.dumps({"client_id": "x", SECRET: 1}), "application/json", 400),
    (
        "put",
        json.dumps({"client_id": "x", "custom_provider": {"authorize_params": {SECRET: 1}}}),
        "application/json",
        400,
    ),
]


def send(api: Api, route: str, connection_id: str, body: str | bytes, content_type: str) -> Any:
    path = f"/connections/{connection_id}" if route == "patch" else "/integrations/demo"
    method = "PATCH" if route == "patch" else "PUT"
    event = http_event(
        method, path, body=body, headers={"content-type": content_type}, tenant_id=str(api.tenant.tenant_id)
    )
    return api.invoke("api", event)


@pytest.fixture
def connection_id(api: Api) -> str:
    return connect_account(api)


@pytest.mark.parametrize(("route", "body", "content_type", "status"), BAD_BODIES)
def test_each_listed_bad_body_is_a_typed_4xx_that_writes_and_echoes_nothing(
    api: Api, db: TestDatabase, connection_id: str, route: str, body: str, content_type: str, status: int
) -> None:
    api.secrets.add(SECRET)
    before = db_state(db)

    answer = send(api, route, connection_id, body, content_type)

    assert answer.status == status, answer.body
    error = answer.json()["error"]
    assert error["code"] == ("unsupported_media_type" if status == 415 else "validation_error")
    assert set(error) <= {"code", "message", "field"}
    assert SECRET not in answer.body
    assert set(error["field"].split(".")) <= {"body", "headers", "content-type", *request_field_names()}, error
    assert db_state(db) == before


@pytest.mark.parametrize(
    ("slug", "field", "value"),
    [("openai", "api_key", "\ud800"), ("openai", "api_key", "key-\udfff"), ("jira-basic", "password", "\ud83d")],
)
def test_a_static_credential_with_a_lone_surrogate_is_refused_not_stored(
    api: Api, db: TestDatabase, slug: str, field: str, value: str
) -> None:
    from connvault.db.uow import UnitOfWork
    from connvault.errors import InvalidInput
    from connvault.redacted import Redacted
    from connvault.services.connections import StaticCredentialsInput, create_static_connection

    before = db_state(db)
    secret = {field: Redacted(value)} | ({"username": "u"} if field == "password" else {})
    data = StaticCredentialsInput(provider=slug, end_user_id="u", **secret)  # type: ignore[arg-type]
    # Through the API the JSON parser refuses it already; the service refuses it whoever calls.
    with pytest.raises(InvalidInput) as refused:
        create_static_connection(UnitOfWork(api.tenant.tenant_id), data)
    assert refused.value.field == field
    assert db_state(db) == before


# -- property tests: the families, generated ----------------------------------------------------------------

LONE_SURROGATES = st.one_of(
    # high surrogates only, or low surrogates only: never a high one followed by a low one, which is a valid pair
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDBFF), min_size=1, max_size=3),
    st.text(alphabet=st.characters(min_codepoint=0xDC00, max_codepoint=0xDFFF), min_size=1, max_size=3),
)
POISON_LITERALS = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", HUGE_INTEGER, "-" + HUGE_INTEGER])
CONTENT_TYPES = st.sampled_from(
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/json-patch+json",
        "application/jsonx",
        "text/json",
        "*/*",
        ";",
    ]
)
FUZZ = settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _escaped(text: str) -> str:
    """JSON string literal text for ``text``, lone surrogates written as ``\\uXXXX`` escapes."""
    return "".join(f"\\u{ord(ch):04x}" for ch in text)


@st.composite
def poisoned_bodies(draw: st.DrawFn) -> str:
    """A JSON object text for the route with one poison placed as a key, a string value or a literal value."""
    surrogate = _escaped(draw(LONE_SURROGATES))
    where = draw(st.sampled_from(["metadata_value", "metadata_key", "alias", "literal", "duplicate"]))
    if where == "metadata_value":
        return '{"metadata": {"k": "a' + surrogate + '"}}'
    if where == "metadata_key":
        return '{"metadata": {"' + surrogate + '": 1}}'
    if where == "alias":
        return '{"alias": "' + surrogate + '"}'
    if where == "literal":
        return '{"metadata": {"k": ' + draw(POISON_LITERALS) + "}}"
    return '{"alias": "a", "metadata": {}, "alias": "b"}'


@FUZZ
@given(body=poisoned_bodies())
def test_poisoned_json_bodies_are_400_and_write_nothing(
    api: Api, db: TestDatabase, connection_id: str, body: str
) -> None:
    before = db_state(db)
    answer = send(api, "patch", connection_id, body, "application/json")
    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == "body"
    assert db_state(db) == before


@FUZZ
@given(
    content_type=CONTENT_TYPES,
    secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=24),
    route=st.sampled_from(["patch", "put"]),
)
def test_bodies_of_any_other_content_type_are_415_and_echo_nothing(
    api: Api, db: TestDatabase, connection_id: str, content_type: str, secret: str, route: str
) -> None:
    before = db_state(db)
    body = json.dumps({"client_id": "x", "client_secret": "sk-" + secret}) if route == "put" else '{"alias": "x"}'
    answer = send(api, route, connection_id, body, content_type)
    assert answer.status == 415, answer.body
    assert secret not in answer.body
    assert db_state(db) == before


@FUZZ
@given(secret=LONE_SURROGATES, prefix=st.text(alphabet="abc", max_size=5))
def test_a_client_secret_with_a_lone_surrogate_is_400_and_writes_nothing(
    api: Api, db: TestDatabase, connection_id: str, secret: str, prefix: str
) -> None:
    before = db_state(db)
    body = '{"client_id": "x", "client_secret": "' + prefix + _escaped(secret) + '"}'
    answer = send(api, "put", connection_id, body, "application/json")
    assert answer.status == 400, answer.body
    assert db_state(db) == before
