"""A request body's booleans and integers are JSON booleans and integers, nothing pydantic would coerce into one
(an outside probe stored a grant unverified with ``"verify": "off"``). Walks every request model, so that a field
added later is held to the same rule."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError

import connvault.api.webhook_schemas  # noqa: F401  (its request models join the Strict family)
from connvault.api.schemas import ImportedGrant, Strict

NOT_BOOLEANS: list[Any] = ["true", "off", "n", "yes", 0, 1, 1.0]
NOT_INTEGERS: list[Any] = ["60", True, 60.0, 60.5]


def request_models() -> list[type[BaseModel]]:
    models: list[type[BaseModel]] = []
    pending: list[type[BaseModel]] = [Strict]
    while pending:
        model = pending.pop()
        if model.__name__.endswith("Request") or model is ImportedGrant or model.__name__ == "ServiceAccountKey":
            models.append(model)
        pending.extend(model.__subclasses__())
    return sorted(models, key=lambda model: model.__name__)


def kinds_of(annotation: Any) -> set[type]:
    """The scalar types an annotation admits, through ``Annotated``, ``| None`` and containers."""
    if annotation in (bool, int):
        return {annotation}
    if get_origin(annotation) in (Annotated, Union, types.UnionType, list, dict, tuple, set, frozenset):
        args = get_args(annotation)[:1] if get_origin(annotation) is Annotated else get_args(annotation)
        return set().union(*(kinds_of(arg) for arg in args))
    return set()


CASES = [
    (model, name, value)
    for model in request_models()
    for name, field in model.model_fields.items()
    for kind in sorted(kinds_of(field.annotation), key=str)
    for value in (NOT_BOOLEANS if kind is bool else NOT_INTEGERS)
]


def test_the_walk_finds_the_switches_the_probe_flipped() -> None:
    found = {(model.__name__, name) for model, name, _ in CASES}

    assert {
        ("ImportedConnectionRequest", "verify"),
        ("ImportConnectionsRequest", "verify"),
        ("CustomProviderRequest", "pkce"),
        ("CustomProviderRequest", "require_iss"),
        ("CustomProviderRequest", "refresh_margin_seconds"),
        ("ConnectSessionRequest", "require_confirmation"),
        ("WebhookEndpointRequest", "enabled"),
        ("UpdateWebhookEndpointRequest", "enabled"),
        ("RotateSecretRequest", "overlap_seconds"),
    } <= found


@pytest.mark.parametrize(("model", "name", "value"), CASES, ids=[f"{m.__name__}.{n}={v!r}" for m, n, v in CASES])
def test_a_boolean_or_integer_field_takes_no_other_json_type(model: type[BaseModel], name: str, value: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        model.model_validate({name: value})

    assert any(error["loc"][:1] == (name,) for error in refused.value.errors())
