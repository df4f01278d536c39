"""A webhook sender that dies between the receiver's 2xx and recording it, for ``test_crash``.

It runs the real sender and exits (``os._exit``: no cleanup, like a Lambda killed at its timeout) the moment it
would record a delivery: the receiver has the message, the database still says ``pending`` under its lease.

``python -m tests.webhooks.crash_child``, with the parent's database and a KMS it can reach
(``AWS_ENDPOINT_URL_KMS``) in the environment.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from connvault.db.webhooks import WebhookRepository
from connvault.services.webhook_delivery import deliver_due

CRASH_EXIT = 9


def _die(*_args: object, **_kwargs: object) -> NoReturn:
    os._exit(CRASH_EXIT)


def main() -> int:
    WebhookRepository.record_delivered = _die  # type: ignore[method-assign]
    deliver_due(lambda: 30_000)
    return 1  # not reached when there was anything to send


if __name__ == "__main__":
    sys.exit(main())
