"""Routes for provider-side accounts: under ``/connections/{connection_id}/accounts``, and ``/accounts`` to find
them by id across the tenant's connections."""

from http import HTTPStatus
from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from connvault.api.app import json_response, tenant_id
from connvault.api.management import ERRORS
from connvault.api.new_connections import secret
from connvault.api.schemas import AccountListResponse, AccountRequest, AccountResponse, UpdateAccountRequest
from connvault.db.uow import UnitOfWork
from connvault.redacted import Redacted
from connvault.services import accounts

AccountId = Annotated[str | None, Query(min_length=1, max_length=255)]
Cursor = Annotated[str | None, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=200)]


def _input(body: AccountRequest | UpdateAccountRequest) -> accounts.AccountInput:
    return accounts.AccountInput(
        external_id=secret(body.external_id),
        baas_id=secret(body.baas_id),
        display_name=body.display_name,
        metadata=body.metadata,
    )


def register(app: APIGatewayHttpResolver) -> None:
    def uow() -> UnitOfWork:
        return UnitOfWork(tenant_id(app))

    @app.get(
        "/connections/<connection_id>/accounts",
        summary="List the provider-side accounts under a connection (keyset pagination)",
        tags=["accounts"],
        responses=ERRORS,
    )
    def list_accounts(connection_id: UUID, cursor: Cursor = None, limit: Limit = 50) -> AccountListResponse:
        return AccountListResponse.of(accounts.list_accounts(uow(), connection_id, cursor=cursor, limit=limit))

    @app.post(
        "/connections/<connection_id>/accounts",
        summary="Add a provider-side account under a connection",
        description="Its ids are sealed like secrets and found again by exact match (`GET /accounts`). One live "
        "account per `external_id` under a connection (409 `conflict`).",
        tags=["accounts"],
        responses=ERRORS,
    )
    def create_account(connection_id: UUID, body: AccountRequest) -> Response[AccountResponse]:
        created = accounts.create_account(uow(), connection_id, _input(body))
        return json_response(HTTPStatus.CREATED, AccountResponse.of(created))

    @app.get(
        "/connections/<connection_id>/accounts/<account_id>",
        summary="Read an account",
        tags=["accounts"],
        responses=ERRORS,
    )
    def get_account(connection_id: UUID, account_id: UUID) -> AccountResponse:
        return AccountResponse.of(accounts.get_account(uow(), connection_id, account_id))

    @app.patch(
        "/connections/<connection_id>/accounts/<account_id>",
        summary="Change an account's ids, display name or metadata",
        tags=["accounts"],
        responses=ERRORS,
    )
    def patch_account(connection_id: UUID, account_id: UUID, body: UpdateAccountRequest) -> AccountResponse:
        return AccountResponse.of(accounts.update_account(uow(), connection_id, account_id, _input(body)))

    @app.delete(
        "/connections/<connection_id>/accounts/<account_id>",
        summary="Delete an account",
        description="Hidden from every read at once; purged for good by the scheduled function after the "
        "retention period (`CONNVAULT_ACCOUNT_RETENTION_DAYS`).",
        tags=["accounts"],
        responses=ERRORS,
    )
    def delete_account(connection_id: UUID, account_id: UUID) -> Response[None]:
        accounts.delete_account(uow(), connection_id, account_id)
        return json_response(HTTPStatus.NO_CONTENT, None)

    @app.get(
        "/accounts",
        summary="Find the tenant's accounts by external_id or baas_id (exact match)",
        description="Give exactly one of the two. A blind-index lookup: no other account's ids are decrypted.",
        tags=["accounts"],
        responses=ERRORS,
    )
    def search_accounts(
        external_id: AccountId = None, baas_id: AccountId = None, cursor: Cursor = None, limit: Limit = 50
    ) -> AccountListResponse:
        query = accounts.AccountSearch(
            external_id=None if external_id is None else Redacted(external_id),
            baas_id=None if baas_id is None else Redacted(baas_id),
            cursor=cursor,
            limit=limit,
        )
        return AccountListResponse.of(accounts.search_accounts(uow(), query))
