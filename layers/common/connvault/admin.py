"""Operator commands for tenants, their API keys and migrations: ``python -m connvault.admin <command> ...``.

Run with the deployment's ``CONNVAULT_*`` environment. None of these commands but ``import`` seals anything,
so they make no KMS call; ``import`` streams a file of grants into a tenant (``connvault/grant_file.py``). An
API key is printed once, on stdout alone, so that ``KEY=$(python -m connvault.admin create-api-key ...)``
captures it and nothing else does; notes for the operator go to stderr.

Exit status: 0 on success (for ``import``: every line of the file was answered), 1 when connvault refuses (the
error's message, which names ids and fields only) or an import stopped part-way (run it again to resume), 2 for
a malformed command line (argparse's own convention).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from connvault.db.uow import UnitOfWork
from connvault.errors import ConnvaultError, DatabaseUnavailable, NotFound
from connvault.services import tenants

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TextIO

type Command = Callable[[argparse.Namespace, TextIO, TextIO], None]


def create_tenant(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    tenant = tenants.create_tenant(args.name)
    print(tenant.id, file=out)


def create_api_key(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    issued = tenants.create_api_key(UnitOfWork(args.tenant_id))
    print(issued.plaintext.reveal(), file=out)
    print(f"key id {issued.record.key_id}: store the key now, it cannot be shown again", file=err)


def revoke_api_key(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    record = tenants.revoke_api_key(UnitOfWork(args.tenant_id), args.key_id)
    print(f"revoked key {record.key_id} (at {record.revoked_at.isoformat() if record.revoked_at else '?'})", file=out)


def delete_tenant(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    if not args.yes:
        raise _Refused("delete-tenant deletes the tenant and everything it owns, for good; add --yes to confirm")
    if not tenants.delete_tenant(UnitOfWork(args.tenant_id)):
        raise NotFound(f"tenant {args.tenant_id} not found")
    print(f"deleted tenant {args.tenant_id}", file=out)


def import_grants(args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    from connvault import grant_file
    from connvault.api.new_connections import import_items

    try:
        progress = grant_file.import_file(
            args.file,
            args.tenant,
            parse=import_items,
            verify=not args.no_verify,
            batch_size=args.batch_size,
            retries=args.retries,
            restart=args.restart,
            err=err,
        )
    except grant_file.ProgressMismatch as exc:
        raise _Refused(str(exc)) from None
    except OSError as exc:  # the file cannot be read, or its progress or errors file cannot be written
        raise _Refused(f"cannot read {args.file.name} or write beside it ({type(exc).__name__})") from None
    except BaseException:
        print("\nstopped; run the same command again to resume after the last finished batch", file=err)
        raise
    print(grant_file.summary(progress, args.file), file=out)


class _Refused(Exception):
    """The command line asks for something that needs confirming first."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m connvault.admin", description="Manage connvault tenants.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(run=run)
        return sub

    command("create-tenant", create_tenant, "Create a tenant; prints its id.").add_argument("name")
    command("create-api-key", create_api_key, "Mint an API key; prints it once.").add_argument(
        "tenant_id", type=UUID, metavar="TENANT_ID"
    )
    revoke = command("revoke-api-key", revoke_api_key, "Revoke an API key by its key id.")
    revoke.add_argument("tenant_id", type=UUID, metavar="TENANT_ID")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the 16 characters after 'cv_'")
    delete = command("delete-tenant", delete_tenant, "Delete a tenant and all it owns (crypto-shredding).")
    delete.add_argument("tenant_id", type=UUID, metavar="TENANT_ID")
    delete.add_argument("--yes", action="store_true", help="confirm the deletion")
    grants = command(
        "import", import_grants, "Import a JSONL file of OAuth grants into a tenant; resumable, idempotent."
    )
    grants.add_argument("file", type=Path, metavar="FILE.jsonl")
    grants.add_argument("--tenant", type=UUID, required=True, metavar="TENANT_ID")
    grants.add_argument("--no-verify", action="store_true", help="store each grant as given, without a refresh")
    grants.add_argument("--batch-size", type=int, default=1000, help="grants per call (at most 1000)")
    grants.add_argument(
        "--retries",
        type=int,
        default=3,
        help="rounds settling none of the items sent again before they fail; at most this many more calls per item",
    )
    grants.add_argument("--restart", action="store_true", help="ignore FILE.progress and start from the top")
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        args.run(args, out, err)
    except DatabaseUnavailable as exc:
        print(f"error: database error ({exc})", file=err)
        return 1
    except (ConnvaultError, _Refused) as exc:
        print(f"error: {exc}", file=err)
        return 1
    except Exception as exc:
        # Anything else is a fault of ours; a library's message can quote statement parameters, so its type only.
        print(f"error: unexpected error ({type(exc).__name__})", file=err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
