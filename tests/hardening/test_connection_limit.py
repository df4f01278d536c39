"""The database refuses connections: every request function answers 503 with ``Retry-After`` and serves again on
its own once the database takes connections again, with no restart and no cold start.

A PostgreSQL of its own, started for this module with a small ``max_connections``, is driven to that limit by
other clients (too_many_clients, SQLSTATE 53300), then into a smart shutdown (new connections refused with
cannot_connect_now, 57P03) and a restart that ends every session (what a failover does to a client), while the
real handlers run in this process as one warm Lambda instance each, behind the real authorizer.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pg8000.exceptions
import pg8000.native
import pgserver
import pytest
from pgserver._commands import pg_ctl
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from connvault import wiring
from connvault.db.target import DatabaseTarget, database_unavailable, sqlstate
from connvault.db.uow import UnitOfWork
from connvault.migrations import migrate
from connvault.services import tenants
from devserver.events import authorizer_event, http_event
from devserver.handlers import InvocationContext, load_handler
from tests.api.conftest import Answer
from tests.support.secrets import SecretRegistry

LIMIT = 12
"""max_connections of this module's server: small enough to fill in a few milliseconds."""
STORED_KEY = "sk-connection-limit-test-0123456789"
CLIENT_BACKENDS = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"

ROUTES = [
    ("GET", "/connections/{id}/token", "token_fetch"),
    ("GET", "/connections", "api"),
    ("GET", "/connections/{id}", "api"),
]


@dataclass(frozen=True)
class LimitedServer:
    server: pgserver.PostgresServer
    owner: DatabaseTarget
    url: str

    def connect(self) -> pg8000.native.Connection:
        return self.owner.connect()

    def pg_ctl(self, *args: str) -> None:
        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)


@pytest.fixture(scope="module")
def limited() -> Iterator[LimitedServer]:
    workdir = Path(tempfile.mkdtemp(prefix="connvault-limit-"))
    server = pgserver.get_server(str(workdir), cleanup_mode="stop")
    try:
        # Superusers count against max_connections too once nothing is reserved for them: the whole server fills.
        server.psql(f"ALTER SYSTEM SET max_connections = {LIMIT}")
        server.psql("ALTER SYSTEM SET superuser_reserved_connections = 0")
        pg_ctl(["-w", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=30)
        sock = f"{make_url(server.get_uri()).query['host']}/.s.PGSQL.5432"
        owner = DatabaseTarget(user="postgres", password=None, database="postgres", unix_sock=sock)
        migrate(owner)
        yield LimitedServer(server, owner, f"postgresql+pg8000://postgres@/postgres?unix_sock={sock}")
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Gateway:
    """API Gateway in front of the real functions: the authorizer's context goes to the route's function."""

    tenant_id: str
    api_key: str
    connection_id: str
    secrets: SecretRegistry

    def call(self, method: str, path: str, job: str, *, body: Any = None) -> Answer:
        authorizer = load_handler("authorizer")(authorizer_event(f"Bearer {self.api_key}"), InvocationContext())
        assert authorizer["isAuthorized"] is True, authorizer
        event = http_event(method, path.format(id=self.connection_id), body=body, authorizer=authorizer["context"])
        raw = load_handler(job)(event, InvocationContext())
        answer = Answer(raw["statusCode"], raw.get("headers") or {}, raw.get("body") or "")
        self.secrets.check(answer.body if answer.status >= 400 else "", "an error body")
        return answer

    def call_past_the_authorizer(self, job: str) -> Answer:
        """The function alone, as if the authorizer had admitted the request a moment earlier."""
        path = "/connections/{id}/token" if job == "token_fetch" else "/connections"
        event = http_event("GET", path.format(id=self.connection_id), tenant_id=self.tenant_id)
        raw = load_handler(job)(event, InvocationContext())
        return Answer(raw["statusCode"], raw.get("headers") or {}, raw.get("body") or "")

    def every_route(self) -> list[Answer]:
        return [self.call(method, path, job) for method, path, job in ROUTES]


@pytest.fixture
def gateway(
    limited: LimitedServer, kms_key_id: str, monkeypatch: pytest.MonkeyPatch, secrets: SecretRegistry
) -> Iterator[Gateway]:
    """This process pointed at the limited server, with a tenant, its API key and one stored API-key connection."""
    monkeypatch.setenv("CONNVAULT_DATABASE_URL", limited.url)
    monkeypatch.setenv("CONNVAULT_KMS_KEY_ID", kms_key_id)
    wiring.reset()
    tenant = tenants.create_tenant("Busy tenant")
    key = tenants.create_api_key(UnitOfWork(tenant.id)).plaintext.reveal()
    secrets.add(key, STORED_KEY)
    gateway = Gateway(str(tenant.id), key, "", secrets)
    created = gateway.call(
        "POST", "/connections", "api", body={"provider": "openai", "end_user_id": "u1", "api_key": STORED_KEY}
    )
    assert created.status == 201, created.body
    gateway.connection_id = created.json()["id"]
    yield gateway
    monkeypatch.undo()
    wiring.reset()


def try_connect(limited: LimitedServer) -> pg8000.native.Connection | str:
    """A new connection, or the SQLSTATE the server refused it with ("" when pg8000 found the socket closed
    before it read the server's answer)."""
    try:
        return limited.connect()
    except pg8000.exceptions.DatabaseError as refused:
        return sqlstate(refused) or ""
    except pg8000.exceptions.InterfaceError:
        return ""


@contextlib.contextmanager
def every_connection_taken(limited: LimitedServer) -> Iterator[list[pg8000.native.Connection]]:
    """Other clients open connections until the server refuses them (too many clients), and hold them.

    A slot freed a moment later (a backend of a connection just closed still exiting) is taken too: the server
    must refuse three times in a row, a little apart. pg8000 sometimes finds the socket closed before it reads
    the refusal, so the proof that the server is full is its own count of client backends."""
    held: list[pg8000.native.Connection] = []
    try:
        refusals = 0
        while refusals < 3:
            got = try_connect(limited)
            if isinstance(got, str):
                assert got in ("53300", ""), f"refused with {got}"
                refusals += 1
                time.sleep(0.1)
                continue
            refusals = 0
            held.append(got)
            assert len(held) <= LIMIT, "the server took more connections than max_connections"
        assert held, "the server refused every connection"
        assert held[0].run(CLIENT_BACKENDS)[0][0] == LIMIT
        yield held
    finally:
        for connection in held:
            with contextlib.suppress(pg8000.exceptions.Error, OSError):
                connection.close()


def assert_unavailable(answer: Answer) -> None:
    assert answer.status == 503, answer.body
    assert answer.json()["error"]["code"] == "database_unavailable"
    assert answer.headers["Retry-After"] == "1"


def until_served(call: Callable[[], Answer], attempts: int = 3) -> list[Answer]:
    """Call until an answer is a 200 (a client honouring Retry-After); every answer before it must be a 503."""
    answers = [call()]
    while answers[-1].status != 200 and len(answers) < attempts:
        assert_unavailable(answers[-1])
        answers.append(call())
    assert answers[-1].status == 200, answers[-1].body
    return answers


def test_at_the_connection_limit_cold_functions_answer_503_and_every_function_recovers_by_itself(
    limited: LimitedServer, gateway: Gateway
) -> None:
    # Given warm functions (their connections open), when other clients take every connection left
    assert [answer.status for answer in gateway.every_route()] == [200, 200, 200]
    with every_connection_taken(limited):
        # Then the warm functions keep serving from the connections they hold
        assert [answer.status for answer in gateway.every_route()] == [200, 200, 200]

        # and new instances (no connection yet; the slots the old ones freed taken too) are refused by the
        # server: 503 with Retry-After, not a 500, whether the refusal reaches the authorizer (no key check
        # possible) or the function itself
        wiring.reset()
        with every_connection_taken(limited):
            for answer in gateway.every_route():
                assert_unavailable(answer)
            for job in ("api", "token_fetch"):
                assert_unavailable(gateway.call_past_the_authorizer(job))

    # Once the other clients leave, the same instances serve again with no restart
    assert [answer.status for answer in gateway.every_route()] == [200, 200, 200]


def test_a_server_shutting_down_is_a_503_and_a_restart_that_ends_every_session_heals_within_a_retry(
    limited: LimitedServer, gateway: Gateway
) -> None:
    # Given a smart shutdown, which refuses new connections (cannot_connect_now) while a session lingers
    lingering = limited.connect()
    try:
        limited.pg_ctl("stop", "-m", "smart", "-W")
        wait_until_refusing(limited)

        # new instances answer 503 with Retry-After
        wiring.reset()
        for answer in gateway.every_route():
            assert_unavailable(answer)
    finally:
        with contextlib.suppress(pg8000.exceptions.Error, OSError):
            lingering.close()

    # and serve as soon as the server is back
    limited.pg_ctl("-w", "stop", "-m", "fast")
    limited.server.ensure_postgres_running()
    assert [answer.status for answer in gateway.every_route()] == [200, 200, 200]

    # When a restart ends every session of these warm instances (as a failover does), a request that meets a
    # dead connection is at worst a 503 with Retry-After, and the retry is served
    limited.pg_ctl("-w", "restart", "-m", "fast")
    for method, path, job in ROUTES:
        until_served(lambda method=method, path=path, job=job: gateway.call(method, path, job))


def wait_until_refusing(limited: LimitedServer) -> None:
    """Until the shutting-down server refuses a new connection (cannot_connect_now, or a socket pg8000 found
    closed before it could read why)."""
    for _ in range(500):
        got = try_connect(limited)
        if isinstance(got, str):
            assert got in ("57P03", ""), f"refused with {got}"
            return
        got.close()
        time.sleep(0.02)
    raise AssertionError("the server kept accepting connections during its shutdown")


@pytest.mark.parametrize(
    ("code", "unavailable"),
    [
        ("53300", True),  # too_many_connections
        ("57P03", True),  # cannot_connect_now: starting up, shutting down, recovering
        ("57P01", True),  # admin_shutdown: a failover or restart ended the session
        ("57P02", True),  # crash_shutdown
        ("08006", True),  # connection_failure (the whole class 08)
        ("25006", True),  # read_only_sql_transaction: a writer demoted to reader by a failover
        ("57014", False),  # query_canceled (statement timeout): the statement, not the database
        ("23505", False),
        ("42P01", False),
    ],
)
def test_which_server_answers_mean_retry_later(code: str, unavailable: bool) -> None:
    error = pg8000.exceptions.DatabaseError({"S": "FATAL", "C": code, "M": "message"})
    assert database_unavailable(error) is unavailable
    wrapped = DBAPIError("SELECT 1", {}, error)
    assert database_unavailable(wrapped) is unavailable
