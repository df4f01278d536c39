"""A process that dies in the middle of a refresh, for ``test_crash_mid_refresh``.

It takes the connection's refresh lease and calls the provider, exactly as token fetch does, and exits
(``os._exit``: no cleanup, no ``finally``, like a Lambda killed by its timeout) the moment it would store what
the provider answered. The provider has then answered, and, if it rotates, made the stored refresh token dead.

``python -m tests.hardening.crash_child <tenant id> <connection id>``, with the parent's database and a KMS it
can reach (``AWS_ENDPOINT_URL_KMS``) in the environment.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn
from uuid import UUID

from connvault.db.refresh_statements import RefreshStatements
from connvault.services.tokens import get_token

CRASH_EXIT = 9


def _die(*_args: object, **_kwargs: object) -> NoReturn:
    os._exit(CRASH_EXIT)


def main(tenant_id: str, connection_id: str) -> int:
    RefreshStatements.store = _die  # type: ignore[method-assign]
    get_token(UUID(tenant_id), UUID(connection_id), force_refresh=True)
    return 1  # not reached: the process dies when the provider's answer is in


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
