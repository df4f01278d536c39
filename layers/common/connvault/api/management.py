"""Routes of the management API: connect sessions, providers, integrations, connections."""

from http import HTTPStatus
from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from connvault.api import new_connections
from connvault.api.answers import NO_STORE
from connvault.api.app import callback_url, json_response, tenant_id
from connvault.api.new_connections import device_request, secret
from connvault.api.pages import connect_page_url
from connvault.api.schemas import (
    ConfirmConnectSessionRequest,
    ConnectionListResponse,
    ConnectionResponse,
    ConnectSessionRequest,
    ConnectSessionResponse,
    ConnectSettingsRequest,
    ConnectSettingsResponse,
    CustomProviderRequest,
    CustomProviderResponse,
    DeleteConnectionResponse,
    DeviceSessionResponse,
    ImportConnectionsRequest,
    ImportConnectionsResponse,
    Instant,
    IntegrationListResponse,
    IntegrationRequest,
    IntegrationResponse,
    NewConnectionRequest,
    ProviderListResponse,
    ProviderResponse,
    UpdateConnectionRequest,
    error_response,
)
from connvault.clock import utcnow
from connvault.config import get_settings
from connvault.db.uow import UnitOfWork
from connvault.models import PROVIDER_SLUG, ConnectionStatus, ConnectSettings
from connvault.services import (
    connect_confirmation,
    connect_links,
    connect_settings,
    connections,
    custom_providers,
    device,
    imports,
    integrations,
    providers,
)

ProviderSlug = Annotated[str, Path(pattern=PROVIDER_SLUG, description="Provider slug")]

ERRORS: dict[int, OpenAPIResponse] = {
    400: error_response("Invalid request"),
    404: error_response("Not found"),
    409: error_response("Conflict"),
}
DISCOVERY_FAILED = error_response("The custom provider's discovery metadata could not be fetched or used")
CREDENTIALS_REFUSED = error_response("The provider refused the credentials; nothing was stored")
IMPORT_STORE_MARGIN_MS = 3000
"""Time kept, past one provider call, to store what an import call verified before the function times out."""
PROVIDER_DOWN = error_response("The provider did not answer")


def _custom_provider(body: CustomProviderRequest | None) -> custom_providers.CustomProviderInput | None:
    if body is None:
        return None
    return custom_providers.CustomProviderInput(
        display_name=body.display_name,
        discovery_url=body.discovery_url,
        issuer=body.issuer,
        authorization_url=body.authorization_url,
        token_url=body.token_url,
        revocation_url=body.revocation_url,
        revocation_scope=body.revocation_scope,
        device_authorization_url=body.device_authorization_url,
        require_iss=body.require_iss,
        pkce=body.pkce,
        token_endpoint_auth_method=body.token_endpoint_auth_method,
        scope_separator=body.scope_separator,
        authorize_params=dict(body.authorize_params),
        refresh_margin_seconds=body.refresh_margin_seconds,
        api_base_url=body.api_base_url,
    )


def register(app: APIGatewayHttpResolver) -> None:
    def uow() -> UnitOfWork:
        return UnitOfWork(tenant_id(app))

    @app.post(
        "/connect-sessions",
        summary="Start connecting an end user's account",
        description=(
            "Answers a `connect_url`, the hosted connect page to send the end user to: it lists the integrations "
            "the session names, runs the OAuth redirect or shows the provider's API-key form, and returns the end "
            "user to `return_url` with `connection_id` or `error`. A session naming one OAuth provider also "
            "answers that provider's `authorize_url`, for tenants that send the end user there directly. With "
            "`flow: device` (one provider offering RFC 8628) it answers a `user_code` and `verification_uri` to show "
            "on a device without a browser instead; follow it with GET /connect-sessions/{id}."
        ),
        tags=["connect"],
        responses={
            201: {
                "description": "The session: connect_url and authorize_url, or user_code and verification_uri for a "
                "device session (flow device)",
                "content": {"application/json": {"model": ConnectSessionResponse | DeviceSessionResponse}},
            },
            **ERRORS,
            422: CREDENTIALS_REFUSED,
            503: PROVIDER_DOWN,
        },
    )
    def create_connect_session(
        body: ConnectSessionRequest,
    ) -> Response[ConnectSessionResponse | DeviceSessionResponse]:
        if body.flow == "device":
            started_device = device.start_device_session(uow(), device_request(body))
            return json_response(
                HTTPStatus.CREATED, DeviceSessionResponse.of(started_device, utcnow()), headers=NO_STORE
            )
        started = connect_links.start_connect_session(
            uow(),
            connect_links.LinkRequest(
                providers=body.slugs,
                end_user_id=body.end_user_id,
                alias=body.alias,
                return_url=body.return_url,
                scopes=tuple(body.scopes) if body.scopes is not None else None,
                providers_field="provider" if body.provider is not None else "providers",
                require_confirmation=body.require_confirmation,
                connection_config=body.connection_config,
            ),
            callback_url=callback_url(app),
            page_url=connect_page_url(app),
        )
        return json_response(
            HTTPStatus.CREATED, ConnectSessionResponse.of(started), headers={"Cache-Control": "no-store"}
        )

    @app.get(
        "/connect-sessions/<session_id>",
        summary="Where a device connect session stands (polling the provider first when a poll is due)",
        tags=["connect"],
        responses={
            200: {
                "description": "The device session",
                "content": {"application/json": {"model": DeviceSessionResponse}},
            },
            **ERRORS,
            503: PROVIDER_DOWN,
        },
    )
    def get_connect_session(session_id: UUID) -> Response[DeviceSessionResponse]:
        session = device.get_device_session(uow(), session_id)
        return json_response(HTTPStatus.OK, DeviceSessionResponse.of(session, utcnow()), headers=NO_STORE)

    @app.post(
        "/connect-sessions/<session_id>/confirm",
        summary="Confirm the account a session requiring confirmation brought back; the connection exists from now",
        description=(
            "Call it from your backend after checking that the user signed in at your return URL is the one you "
            "started the session for. The code works once, before the session expires; any other code, session or "
            "moment is 404 `not_found`."
        ),
        tags=["connect"],
        responses=ERRORS,
    )
    def confirm_connect_session(session_id: UUID, body: ConfirmConnectSessionRequest) -> Response[ConnectionResponse]:
        connection = connect_confirmation.confirm(uow(), session_id, secret(body.confirmation))
        return json_response(HTTPStatus.CREATED, ConnectionResponse.of(connection))

    @app.get("/connect-settings", summary="Read the connect page's settings", tags=["connect"])
    def get_connect_settings() -> ConnectSettingsResponse:
        return ConnectSettingsResponse.of(connect_settings.read_settings(uow()))

    @app.put(
        "/connect-settings",
        summary="Replace the connect page's settings",
        description="The name end users see, the origins that may embed the page (CSP frame-ancestors), and "
        "return URLs any connect link may use.",
        tags=["connect"],
        responses=ERRORS,
    )
    def put_connect_settings(body: ConnectSettingsRequest) -> ConnectSettingsResponse:
        data = ConnectSettings(
            display_name=body.display_name,
            frame_ancestors=tuple(body.frame_ancestors),
            allowed_return_urls=tuple(body.allowed_return_urls),
        )
        return ConnectSettingsResponse.of(connect_settings.save_settings(uow(), data))

    @app.get("/providers", summary="List the providers this tenant can use", tags=["providers"])
    def list_providers() -> ProviderListResponse:
        return ProviderListResponse(items=[ProviderResponse.of(p) for p in providers.list_providers(uow())])

    @app.get("/integrations", summary="List the tenant's OAuth apps", tags=["integrations"])
    def list_integrations() -> IntegrationListResponse:
        return IntegrationListResponse(items=[IntegrationResponse.of(i) for i in integrations.list_integrations(uow())])

    @app.put(
        "/integrations/<provider>",
        summary="Create or replace the OAuth app for a provider (and define a custom provider)",
        description=(
            "For a catalog provider, send the OAuth app only. For any other slug, send `custom_provider` to define "
            "this tenant's own provider, from a `discovery_url` or from explicit endpoints; the provider is visible "
            "to this tenant only. A catalog slug cannot be taken by a custom provider (409 `conflict`). A "
            "discovery that fails (unreachable, blocked address, not JSON, another issuer, an unusable member) is "
            "422 `discovery_failed`, whose `field` names the request field or the metadata member at fault (e.g. "
            "`issuer`, `token_endpoint`)."
        ),
        tags=["integrations"],
        responses={**ERRORS, 422: DISCOVERY_FAILED},
    )
    def put_integration(provider: ProviderSlug, body: IntegrationRequest) -> IntegrationResponse:
        data = integrations.IntegrationInput(
            client_id=body.client_id,
            client_secret=secret(body.client_secret),
            scopes=tuple(body.scopes),
            allowed_return_urls=tuple(body.allowed_return_urls),
            custom_provider=_custom_provider(body.custom_provider),
        )
        return IntegrationResponse.of(integrations.save_integration(uow(), provider, data))

    @app.post(
        "/integrations/<provider>/refresh-metadata",
        summary="Fetch a custom provider's discovery metadata again now",
        description=(
            "Metadata is otherwise refetched when older than the configured maximum age as a connect session "
            "starts. The issuer must not change."
        ),
        tags=["integrations"],
        responses={**ERRORS, 503: PROVIDER_DOWN},
    )
    def refresh_provider_metadata(provider: ProviderSlug) -> CustomProviderResponse:
        return CustomProviderResponse.of(custom_providers.refresh_metadata(uow(), provider))

    @app.get(
        "/integrations/<provider>",
        summary="Read an OAuth app (never its secret)",
        tags=["integrations"],
        responses=ERRORS,
    )
    def get_integration(provider: ProviderSlug) -> IntegrationResponse:
        return IntegrationResponse.of(integrations.get_integration(uow(), provider))

    @app.delete("/integrations/<provider>", summary="Delete an OAuth app", tags=["integrations"], responses=ERRORS)
    def delete_integration(provider: ProviderSlug) -> Response[None]:
        integrations.delete_integration(uow(), provider)
        return json_response(HTTPStatus.NO_CONTENT, None)

    @app.get("/connections", summary="List connections (keyset pagination)", tags=["connections"], responses=ERRORS)
    def list_connections(
        provider: Annotated[str | None, Query(max_length=63)] = None,
        end_user_id: Annotated[str | None, Query(max_length=255)] = None,
        status: Annotated[ConnectionStatus | None, Query()] = None,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        unused_since: Annotated[
            Instant | None,
            Query(description="Only connections that handed out no credential since this time, or never (idle ones)."),
        ] = None,
        provider_account_id: Annotated[
            str | None,
            Query(min_length=1, max_length=255, description="Exact match, by blind index: nothing else is decrypted."),
        ] = None,
    ) -> ConnectionListResponse:
        query = connections.ConnectionFilter(
            provider, end_user_id, status, cursor, limit, unused_since, provider_account_id
        )
        return ConnectionListResponse.of(connections.list_connections(uow(), query))

    @app.post(
        "/connections",
        summary="Make a connection from credentials you hand over",
        description=(
            "By `kind`: `api_key` or `basic` (or no kind) stores a provider's static credentials as given; "
            "`imported` takes over an OAuth grant made elsewhere (verified by a refresh unless `verify` is false); "
            "`client_credentials` connects a client to an API on its own behalf (RFC 6749 §4.4); `jwt_bearer` "
            "holds a service account's key and buys tokens with signed assertions (RFC 7523). Credentials the "
            "provider refuses at creation are 422 `credentials_refused` with the `field` at fault, and nothing is "
            "stored; a provider that does not answer is 503 `provider_unavailable`."
        ),
        tags=["connections"],
        responses={
            201: {"description": "The connection", "content": {"application/json": {"model": ConnectionResponse}}},
            **ERRORS,
            422: CREDENTIALS_REFUSED,
            503: PROVIDER_DOWN,
        },
    )
    def create_connection(body: NewConnectionRequest) -> Response[ConnectionResponse]:
        return json_response(HTTPStatus.CREATED, ConnectionResponse.of(new_connections.create(uow(), body)))

    @app.post(
        "/connections/import",
        summary="Import up to 1,000 OAuth grants made elsewhere, each answered on its own",
        description=(
            "For migrations. Idempotent per provider, end_user_id and alias: an account that has a connection is "
            "answered `exists` and left unchanged, so a batch can be sent again after any failure. Items the call "
            "had no time for are `deferred`, items whose provider failed `unavailable`: send those again. "
            "`python -m connvault.admin import` streams a JSONL file of any size through the same path."
        ),
        tags=["connections"],
        responses=ERRORS,
    )
    def import_connections(body: ImportConnectionsRequest) -> ImportConnectionsResponse:
        margin_ms = int(get_settings().http_timeout_seconds * 1000) + IMPORT_STORE_MARGIN_MS
        stop = imports.deadline_from(app.lambda_context.get_remaining_time_in_millis, margin_ms)
        items = new_connections.import_items(body.items)
        return ImportConnectionsResponse.of(imports.import_grants(uow(), items, verify=body.verify, stop=stop))

    @app.get(
        "/connections/<connection_id>",
        summary="Read a connection (never its secrets)",
        tags=["connections"],
        responses=ERRORS,
    )
    def get_connection(connection_id: UUID) -> ConnectionResponse:
        return ConnectionResponse.of(connections.get_connection(uow(), connection_id))

    @app.patch(
        "/connections/<connection_id>",
        summary="Change a connection's alias, metadata or provider account id",
        tags=["connections"],
        responses=ERRORS,
    )
    def patch_connection(connection_id: UUID, body: UpdateConnectionRequest) -> ConnectionResponse:
        updated = connections.update_connection(
            uow(),
            connection_id,
            alias=body.alias,
            metadata=body.metadata,
            provider_account_id=secret(body.provider_account_id),
        )
        return ConnectionResponse.of(updated)

    @app.delete(
        "/connections/<connection_id>",
        summary="Revoke at the provider, then delete",
        tags=["connections"],
        responses={**ERRORS, 503: error_response("Refreshed again and again meanwhile; retry")},
    )
    def delete_connection(connection_id: UUID) -> DeleteConnectionResponse:
        return DeleteConnectionResponse.of(connections.delete_connection(uow(), connection_id))
