"""``python -m devserver`` (``make run``): the whole service on 127.0.0.1, from a fresh clone.

Embedded PostgreSQL (migrated, catalog seeded), moto KMS, the demo OAuth provider, and the local HTTP API that
calls the deployment's own handlers. Prints the demo tenant's API key and the curl lines to connect an account,
then "ready". SIGINT (Ctrl-C) and SIGTERM stop everything, PostgreSQL included, and exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devserver.gateway import Gateway
    from devserver.local_stack import Demo
    from devserver.webhook_receiver import WebhookReceiver

REPO = Path(__file__).resolve().parents[1]
LAYER = REPO / "layers" / "common"
"""The shared layer's code, which the Lambda runtime puts on ``sys.path`` as ``/opt/python``."""


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = _parse_arguments(argv)
    stop = _stop_on_signals()
    if str(LAYER) not in sys.path:
        sys.path.insert(0, str(LAYER))
    _log_to_stdout()
    # Noise for a local run: pgserver's runtime-dir fallback, and Powertools' note on every invocation that
    # recorded no metric (metrics are disabled here: there is no CloudWatch to send them to).
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    from devserver.gateway import Gateway
    from devserver.handlers import load_handler
    from devserver.local_stack import DataDirInUse, local_stack
    from devserver.schedule import LocalSchedule

    try:
        gateway = Gateway(("127.0.0.1", args.port))
    except OSError as error:
        print(f"devserver: cannot listen on 127.0.0.1:{args.port} ({error.strerror}); pass --port", file=sys.stderr)
        return 1
    try:
        with local_stack(args.data_dir, gateway_url=gateway.base_url, provider_port=args.provider_port) as demo:
            # Import every function now, as a warm Lambda would have: the first request is then as fast as the
            # next, and a function that cannot be imported stops the start instead of a request.
            for job in {route.job for route in gateway.routes.routes} | {gateway.routes.authorizer_job}:
                load_handler(job)
            serving = threading.Thread(target=gateway.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            serving.start()
            with (
                _webhook_receiver(args.webhook_port) as receiver,
                LocalSchedule("webhook_delivery", every_seconds=1.0),
                LocalSchedule("device_poller", every_seconds=1.0),
            ):
                print(_banner(gateway, demo, receiver.url), flush=True)
                print(
                    f"ready in {time.perf_counter() - started:.1f} s on {gateway.base_url} (Ctrl-C stops)", flush=True
                )
                stop.wait()
                print("stopping", flush=True)
                gateway.shutdown()
                serving.join()
    except DataDirInUse as error:
        print(f"devserver: {error}", file=sys.stderr)
        return 1
    finally:
        gateway.server_close()
    print("stopped", flush=True)
    return 0


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devserver", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000, help="the API's port on 127.0.0.1 (0: any free port)")
    parser.add_argument(
        "--provider-port", type=int, default=3001, help="the demo provider's port (a free one if it is taken)"
    )
    parser.add_argument(
        "--webhook-port", type=int, default=3002, help="the local webhook receiver's port (a free one if it is taken)"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=REPO / ".local" / "devserver", help="where the PostgreSQL cluster lives"
    )
    return parser.parse_args(argv)


def _stop_on_signals() -> threading.Event:
    """An event SIGINT and SIGTERM set: the main thread waits on it, then shuts everything down in order."""
    stop = threading.Event()

    def request_stop(_signal: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop


def _log_to_stdout() -> None:
    """The gateway's request lines on stdout, next to the functions' own (Powertools) log lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    devserver_logger = logging.getLogger("devserver")
    devserver_logger.addHandler(handler)
    devserver_logger.setLevel(logging.INFO)
    devserver_logger.propagate = False


def _webhook_receiver(port: int) -> WebhookReceiver:
    """A receiver that prints each delivery it gets, on ``port`` or a free one when that is taken."""
    from devserver.webhook_receiver import WebhookReceiver

    try:
        return WebhookReceiver(port=port, echo=True)
    except OSError:
        return WebhookReceiver(port=0, echo=True)


def _banner(gateway: Gateway, demo: Demo, webhook_url: str) -> str:
    api = gateway.base_url
    auth = '-H "Authorization: Bearer $CONNVAULT_API_KEY"'
    hook = shlex.quote(
        f'{{"url": "{webhook_url}", "event_types": ["connection.created", "connection.needs_reauth", '
        '"connection.deleted"]}'
    )
    session = shlex.quote(f'{{"provider": "demo", "end_user_id": "me", "return_url": "{demo.return_url}"}}')
    link = shlex.quote(
        f'{{"providers": ["demo", "demo-apikey"], "end_user_id": "me", "return_url": "{demo.return_url}"}}'
    )
    return f"""
connvault devserver
  API             {api}
  demo provider   {demo.provider_url}  (a fake OAuth server that approves every authorization at once)
  database        {_shown(demo.pgdata)}  (emptied on every start: KMS is in memory, old data could not be opened)
  demo tenant     {demo.tenant_id}  (a new one on every start)

Its API key (local demo key):
  export CONNVAULT_API_KEY={demo.api_key.reveal()}

Connect an account in a browser, on the hosted connect page (one link, single use, valid 30 minutes):
  {demo.connect_url.reveal()}
It offers the demo OAuth provider and "Demo API" (an API-key provider; a key it accepts: {demo.demo_api_key}).
A new link:
  curl -s -X POST {auth} -H 'Content-Type: application/json' \\
    -d {link} {api}/connect-sessions

The provider catalog:
  curl -s {auth} {api}/providers

Or without the page, straight to the demo provider:
  curl -s -X POST {auth} -H 'Content-Type: application/json' \\
    -d {session} {api}/connect-sessions
Open the authorize_url it returns in a browser; you come back to {demo.return_url} with a connection id. Then:
  curl -s {auth} {api}/connections/<connection_id>/token

Or from a device without a browser (RFC 8628): add "flow": "device" to the session (and drop return_url); open
the verification_uri_complete it returns to approve, and follow the session (the poller advances it too):
  curl -s {auth} {api}/connect-sessions/<id>

Webhooks: a local receiver at {webhook_url} prints every delivery here (the sender runs every second).
Point a webhook at it (the answer holds its whsec_ signing secret, shown once):
  curl -s -X POST {auth} -H 'Content-Type: application/json' \\
    -d {hook} {api}/webhooks

The demo provider names its user (demo-user-1): find the connection by it, and add a provider-side account:
  curl -s {auth} '{api}/connections?provider_account_id=demo-user-1'
  curl -s -X POST {auth} -H 'Content-Type: application/json' \\
    -d '{{"external_id": "acct-1", "display_name": "Checking"}}' {api}/connections/<connection_id>/accounts
  curl -s {auth} '{api}/accounts?external_id=acct-1'

Call the demo provider's API through the proxy (the token never leaves connvault):
  curl -s {auth} {api}/connections/<connection_id>/proxy/me
  curl -si {auth} '{api}/connections/<connection_id>/proxy/items?page=2&per_page=10'
Make the provider refuse its access tokens; the next proxied call gets a 401, refreshes once and retries:
  curl -s -X POST {demo.provider_url}/demo/expire-access-tokens
  curl -s {demo.provider_url}/demo/stats
"""


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
