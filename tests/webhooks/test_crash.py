"""Crashes around the outbox. A state change that rolls back writes no event (none invented); one that commits
is delivered by whatever sender runs next, even if the process that made the change never does anything else;
and a sender killed after the receiver answered but before recording it leaves a lease that runs out, so the
next run sends the same message again (a duplicate with the same ``webhook-id``, never a gap).

The sender crash is a real one: a child process (``crash_child.py``) on the same database, with the session's
moto KMS through a moto server on a loopback port.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text

from connvault.clock import utcnow
from connvault.db.uow import UnitOfWork
from tests.api.conftest import Api, connect_account
from tests.hardening.test_crash_mid_refresh import kms_endpoint  # noqa: F401 - fixture, shared as it is
from tests.support.factories import owner
from tests.webhooks.conftest import register, send, verified
from tests.webhooks.crash_child import CRASH_EXIT

if TYPE_CHECKING:
    from devserver.webhook_receiver import WebhookReceiver
    from tests.support.database import TestDatabase

ROOT = Path(__file__).resolve().parents[2]


def test_a_state_change_that_rolls_back_writes_no_event(api: Api, db: TestDatabase, receiver: WebhookReceiver) -> None:
    connection_id = connect_account(api)
    register(api, receiver.url)

    with UnitOfWork(api.tenant.tenant_id) as uow:
        uow.session.execute(
            text("UPDATE connections SET status = 'needs_reauth', refresh_failures = 1 WHERE id = :i"),
            {"i": connection_id},
        )
        # no commit: the unit of work rolls back, as a process dying before its commit does

    with owner(db) as sql:
        assert sql.run("SELECT count(*) FROM webhook_events")[0][0] == 0
    assert send().claimed == 0


def test_a_sender_killed_after_the_receiver_answered_sends_the_same_message_again(
    api: Api,
    db: TestDatabase,
    receiver: WebhookReceiver,
    kms_endpoint: str,  # noqa: F811
) -> None:
    # Given a committed event (the process that made it never sends anything)
    _endpoint_id, secret = register(api, receiver.url, ["connection.created"])
    connect_account(api)

    # When a sender in another process delivers it and dies before recording the delivery
    child = subprocess.run(
        [sys.executable, "-m", "tests.webhooks.crash_child"],
        cwd=ROOT,
        env={
            **os.environ,
            "AWS_ENDPOINT_URL_KMS": kms_endpoint,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "common"), str(ROOT)]),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == CRASH_EXIT, child.stderr[-2000:]
    (first,) = receiver.wait_for(1)
    with owner(db) as sql:
        assert sql.run("SELECT status, lease_owner IS NOT NULL FROM webhook_deliveries") == [["pending", True]]

    # Then nothing is sent while its lease lasts, and the next run after it sends the same message again
    assert send().claimed == 0
    again = send(at=utcnow() + timedelta(minutes=5))
    assert again.delivered == 1
    _, second = receiver.wait_for(2)
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert verified(second, secret) == verified(first, secret)
