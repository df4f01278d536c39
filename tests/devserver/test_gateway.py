"""The gateway in process, in front of stub functions: routing, the authorizer's place, response mapping, logs.

The stubs stand in for the functions (``functions/*``), not for HTTP: requests go over a real socket.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from devserver.gateway import Gateway, RouteTable
from devserver.template import load_template
from tests.infrastructure.cfn import Template

TENANT = str(uuid.uuid4())
GOOD_KEY = "Bearer cv_good_key_for_tests"


class StubFunctions:
    """Answers as the functions would; records what each was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, dict[str, Any] | Exception] = {}

    def __call__(self, job: str, event: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((job, event))
        if job == "authorizer":
            allowed = event["headers"].get("authorization") == GOOD_KEY
            return {"isAuthorized": True, "context": {"tenant_id": TENANT}} if allowed else {"isAuthorized": False}
        answer = self.answers.get(
            job, {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}
        )
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def jobs(self) -> list[str]:
        return [job for job, _ in self.calls]


@pytest.fixture
def functions() -> StubFunctions:
    return StubFunctions()


@pytest.fixture
def gateway(functions: StubFunctions) -> Iterator[Gateway]:
    server = Gateway(("127.0.0.1", 0), invoke=functions)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def request(gateway: Gateway, method: str, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
    return urllib3.request(method, gateway.base_url + path, redirect=False, timeout=5, **kwargs)


def test_the_route_table_is_the_templates_http_api() -> None:
    template = Template(load_template())
    expected = {
        (route.method, route.path): (
            Path(template.functions[route.function]["Properties"]["CodeUri"]).name,
            route.authorizer != "NONE",
        )
        for route in template.routes()
    }
    table = RouteTable.from_template()
    assert {(r.method, r.path): (r.job, r.authorized) for r in table.routes} == expected
    assert table.authorizer_job == "authorizer"


def test_routes_match_by_method_and_segments_with_parameters() -> None:
    table = RouteTable.from_template()
    token = table.find("GET", "/connections/c%2D1/token")
    assert token is not None
    assert (token[0].job, token[0].key, token[1]) == (
        "token_fetch",
        "GET /connections/{connection_id}/token",
        {"connection_id": "c-1"},
    )
    one = table.find("GET", "/connections/c1")
    assert one is not None
    assert (one[0].job, one[1]) == ("api", {"connection_id": "c1"})
    assert table.find("POST", "/connections/c1/token") is None
    assert table.find("GET", "/connections//token") is None
    assert table.find("GET", "/nowhere") is None


def test_a_greedy_parameter_takes_the_rest_of_the_path_for_any_method() -> None:
    table = RouteTable.from_template()
    for method in ("GET", "POST", "DELETE", "PATCH"):
        found = table.find(method, "/connections/c1/proxy/v1/users/me")
        assert found is not None
        assert (found[0].job, found[0].key, found[1]) == (
            "proxy",
            "ANY /connections/{connection_id}/proxy/{path+}",
            {"connection_id": "c1", "path": "v1/users/me"},
        )
    assert table.find("GET", "/connections/c1/proxy/") is None
    assert table.find("GET", "/connections/c1/proxy") is None
    token = table.find("GET", "/connections/c1/token")
    assert token is not None and token[0].job == "token_fetch"


def test_no_authorization_header_is_a_401_without_calling_the_authorizer(gateway, functions) -> None:
    answer = request(gateway, "GET", "/connections")
    assert (answer.status, answer.json()) == (401, {"message": "Unauthorized"})
    assert functions.calls == []


def test_a_denied_key_is_a_403_and_the_route_is_not_called(gateway, functions) -> None:
    answer = request(gateway, "GET", "/connections", headers={"Authorization": "Bearer cv_wrong"})
    assert (answer.status, answer.json()) == (403, {"message": "Forbidden"})
    assert functions.jobs == ["authorizer"]


def test_an_allowed_request_reaches_its_function_as_an_api_gateway_v2_event(gateway, functions) -> None:
    answer = request(
        gateway, "PATCH", "/connections/c1?x=1&y=2", headers={"Authorization": GOOD_KEY}, json={"alias": "a"}
    )
    assert answer.status == 200
    assert functions.jobs == ["authorizer", "api"]
    event = functions.calls[1][1]
    assert event["routeKey"] == "PATCH /connections/{connection_id}"
    assert event["rawPath"] == "/connections/c1"
    assert event["rawQueryString"] == "x=1&y=2"
    assert event["pathParameters"] == {"connection_id": "c1"}
    assert event["requestContext"]["authorizer"] == {"lambda": {"tenant_id": TENANT}}
    assert event["requestContext"]["domainName"] == gateway.authority
    assert json.loads(event["body"]) == {"alias": "a"}
    assert event["isBase64Encoded"] is False


def test_binary_request_bodies_arrive_base64_encoded(gateway, functions) -> None:
    payload = bytes(range(256))
    request(
        gateway,
        "POST",
        "/connections",
        headers={"Authorization": GOOD_KEY, "Content-Type": "application/octet-stream"},
        body=payload,
    )
    event = functions.calls[1][1]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_the_oauth_callback_skips_the_authorizer(gateway, functions) -> None:
    functions.answers["oauth_callback"] = {"statusCode": 302, "headers": {"Location": "http://127.0.0.1/x"}, "body": ""}
    answer = request(gateway, "GET", "/oauth/callback?code=c0de-value&state=st4te-value")
    assert (answer.status, answer.headers["Location"]) == (302, "http://127.0.0.1/x")
    assert functions.jobs == ["oauth_callback"]


def test_a_repeated_query_parameter_reaches_the_function_joined_with_commas_as_api_gateway_joins_it(
    gateway, functions
) -> None:
    # HTTP APIs (payload 2.0) join repeated values with commas; a dict built from the pairs kept the last one, so
    # the callback saw state=S where a deployment's sees state=S,S.
    request(gateway, "GET", "/oauth/callback?state=S&state=S&code=c")
    event = functions.calls[0][1]
    assert event["queryStringParameters"] == {"state": "S,S", "code": "c"}
    assert event["rawQueryString"] == "state=S&state=S&code=c"


def test_responses_map_status_headers_cookies_and_base64_bodies(gateway, functions) -> None:
    functions.answers["api"] = {
        "statusCode": 201,
        "headers": {"Content-Type": "application/octet-stream", "X-Thing": "1", "Content-Length": "999"},
        "cookies": ["a=1; Path=/", "b=2; HttpOnly"],
        "body": base64.b64encode(b"\x00\xffbytes").decode(),
        "isBase64Encoded": True,
    }
    answer = request(gateway, "GET", "/providers", headers={"Authorization": GOOD_KEY})
    assert answer.status == 201
    assert answer.data == b"\x00\xffbytes"
    assert answer.headers["X-Thing"] == "1"
    assert answer.headers["Content-Length"] == "7"
    assert answer.headers.getlist("Set-Cookie") == ["a=1; Path=/", "b=2; HttpOnly"]


def test_a_failing_function_is_a_500_that_names_nothing(gateway, functions) -> None:
    functions.answers["api"] = RuntimeError("postgres://user:secret@host")
    answer = request(gateway, "GET", "/providers", headers={"Authorization": GOOD_KEY})
    assert (answer.status, answer.json()) == (500, {"message": "Internal Server Error"})


def test_an_unknown_route_is_a_404(gateway, functions) -> None:
    answer = request(gateway, "GET", "/nowhere", headers={"Authorization": GOOD_KEY})
    assert (answer.status, answer.json()) == (404, {"message": "Not Found"})
    assert functions.calls == []


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "CONNECT", "BREW"])
def test_a_method_no_route_takes_is_api_gateways_404_not_a_501_page(gateway, functions, method: str) -> None:
    answer = request(gateway, method, "/connections", headers={"Authorization": GOOD_KEY})
    assert (answer.status, answer.headers["Content-Type"], answer.json()) == (
        404,
        "application/json",
        {"message": "Not Found"},
    )
    assert functions.calls == []


def test_request_logs_name_method_path_status_and_never_the_query(gateway, functions, caplog) -> None:
    caplog.set_level(logging.INFO, logger="devserver.gateway")
    request(gateway, "GET", "/oauth/callback?code=c0de-value&state=st4te-value")
    lines = [record.getMessage() for record in caplog.records if record.name == "devserver.gateway"]
    assert len(lines) == 1
    method, path, status, duration, unit = lines[0].split()
    assert (method, path, status, unit) == ("GET", "/oauth/callback", "200", "ms")
    assert float(duration) >= 0
    assert "c0de" not in caplog.text and "st4te" not in caplog.text


def test_the_demo_done_page_shows_the_connection_and_how_to_fetch_its_token(gateway, functions) -> None:
    connection_id = uuid.uuid4()
    page = request(gateway, "GET", f"/demo/done?connection_id={connection_id}")
    assert page.status == 200
    assert page.headers["Cache-Control"] == "no-store"
    text = page.data.decode()
    assert f"{gateway.base_url}/connections/{connection_id}/token" in text
    assert "$CONNVAULT_API_KEY" in text
    assert functions.calls == []


def test_the_demo_done_page_shows_an_error_escaped(gateway) -> None:
    page = request(gateway, "GET", "/demo/done?error=%3Cscript%3Ebad")
    assert page.status == 200
    assert "&lt;script&gt;bad" in page.data.decode()
    assert "<script>" not in page.data.decode()
