"""From the bodies of ``POST /connections``, ``POST /connections/import`` and a device ``POST /connect-sessions``
to the services that make each kind of connection: static credentials (``services/connections``), imported
grants, client credentials and service accounts (``services/grants``), bulk imports (``services/imports``),
device sessions (``services/device``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

from pydantic import SecretStr, TypeAdapter, ValidationError

from connvault.api.schemas import (
    ClientCredentialsConnectionRequest,
    ConnectSessionRequest,
    CreateConnectionRequest,
    ImportedConnectionRequest,
    ImportedGrant,
    JwtBearerConnectionRequest,
)
from connvault.errors import InvalidInput
from connvault.redacted import Redacted
from connvault.services import connections, device, grants
from connvault.services.imports import InvalidItem

if TYPE_CHECKING:
    from collections.abc import Sequence

    from connvault.db.uow import UnitOfWork
    from connvault.models import Connection

_ITEM = TypeAdapter(ImportedGrant)
_ITEM_FIELDS = frozenset(ImportedGrant.model_fields)


def create(
    uow: UnitOfWork,
    body: CreateConnectionRequest
    | ImportedConnectionRequest
    | ClientCredentialsConnectionRequest
    | JwtBearerConnectionRequest,
) -> Connection:
    if isinstance(body, CreateConnectionRequest):
        return connections.create_static_connection(uow, _static(body))
    return grants.create_connection(uow, grant_input(body))


def grant_input(
    body: ImportedConnectionRequest | ClientCredentialsConnectionRequest | JwtBearerConnectionRequest,
) -> grants.NewGrantInput:
    target = grants.Target(body.provider, body.end_user_id, body.alias, body.metadata, body.connection_config)
    if isinstance(body, ImportedConnectionRequest):
        return _imported(body, target, verify=body.verify)
    if isinstance(body, ClientCredentialsConnectionRequest):
        return grants.ClientCredentialsInput(
            target=target,
            client_id=body.client_id,
            client_secret=secret(body.client_secret),
            private_key=secret(body.private_key),
            key_id=body.key_id,
            auth_method=body.token_endpoint_auth_method,
            scopes=tuple(body.scopes),
            audience=body.audience,
            resource=body.resource,
            token_url=body.token_url,
        )
    key_file = body.service_account_key
    return grants.ServiceAccountInput(
        target=target,
        service_account_key=None
        if key_file is None
        else Redacted(
            {**key_file.model_dump(exclude={"private_key"}), "private_key": key_file.private_key.get_secret_value()}
        ),
        issuer=body.issuer,
        private_key=secret(body.private_key),
        key_id=body.key_id,
        subject=body.subject,
        audience=body.audience,
        scopes=tuple(body.scopes),
        token_url=body.token_url,
    )


def device_request(body: ConnectSessionRequest) -> device.DeviceRequest:
    """A device session: what the redirect flow needs (a return URL, a confirmation) has no place in it."""
    if body.provider is None:
        raise InvalidInput("a device session names one provider", field="providers")
    if body.return_url is not None:
        raise InvalidInput("a device session has no return_url: the end user never comes back", field="return_url")
    if body.require_confirmation:
        raise InvalidInput("a device session cannot require confirmation", field="require_confirmation")
    scopes = None if body.scopes is None else tuple(body.scopes)
    return device.DeviceRequest(body.provider, body.end_user_id, body.alias, scopes)


def import_items(raw_items: Sequence[Any]) -> list[grants.ImportedGrantInput | InvalidItem]:
    """Each item read on its own: a malformed one (a JSON value that is no object too) becomes an ``InvalidItem``
    naming its field or the rule it breaks (never its value), and the others go ahead."""
    parsed: list[grants.ImportedGrantInput | InvalidItem] = []
    for raw in raw_items:
        try:
            item = _ITEM.validate_python(raw)
        except ValidationError as exc:
            parsed.append(_invalid_item(exc))
            continue
        target = grants.Target(item.provider, item.end_user_id, item.alias, item.metadata, item.connection_config)
        parsed.append(_imported(item, target))
    return parsed


def _invalid_item(exc: ValidationError) -> InvalidItem:
    problem = exc.errors(include_input=False, include_url=False)[0]
    location = problem.get("loc", ())
    name = str(location[0]) if location and location[0] in _ITEM_FIELDS else None
    what = problem.get("type", "invalid")
    return InvalidItem(field=name, message=f"{name or 'the item'} is not valid ({what})")


def _imported(body: ImportedGrant, target: grants.Target, *, verify: bool = True) -> grants.ImportedGrantInput:
    return grants.ImportedGrantInput(
        target=target,
        refresh_token=Redacted(body.refresh_token.get_secret_value()),
        access_token=secret(body.access_token),
        expires_at=body.expires_at,
        scopes=None if body.scopes is None else tuple(body.scopes),
        token_type=body.token_type,
        verify=verify,
    )


def _static(body: CreateConnectionRequest) -> connections.StaticCredentialsInput:
    return connections.StaticCredentialsInput(
        provider=body.provider,
        end_user_id=body.end_user_id,
        alias=body.alias,
        api_key=secret(body.api_key),
        username=body.username,
        password=secret(body.password),
        metadata=body.metadata,
        provider_account_id=secret(body.provider_account_id),
        connection_config=body.connection_config,
        kind=body.kind,
    )


@overload
def secret(value: SecretStr) -> Redacted[str]: ...
@overload
def secret(value: SecretStr | None) -> Redacted[str] | None: ...
def secret(value: SecretStr | None) -> Redacted[str] | None:
    """A request's secret field as the services take it (None stays None)."""
    return None if value is None else Redacted(value.get_secret_value())
