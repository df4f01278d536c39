"""The OpenAPI document of the whole HTTP API, built from the routes themselves.

The management and token routes live in two functions; the document joins them so a tenant sees one API.
``python -m connvault.api.openapi`` prints it (``make openapi`` writes ``docs/openapi.json``).
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from typing import TYPE_CHECKING

from connvault import __version__
from connvault.api import accounts, management, token, webhooks
from connvault.api.app import new_http_app

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver


@lru_cache(maxsize=1)
def openapi_document() -> str:
    app = new_http_app()
    management.register(app)
    accounts.register(app)
    webhooks.register(app)
    token.register(app)
    register_document_route(app)
    document = json.loads(
        app.get_openapi_json_schema(
            title="connvault",
            version=__version__,
            description=(
                "Credential vault for third-party OAuth2 and API-key connections. Every route takes "
                "`Authorization: Bearer <tenant API key>`; GET /oauth/callback is the providers' redirect target."
            ),
        )
    )
    document["components"]["securitySchemes"] = {"tenantApiKey": {"type": "http", "scheme": "bearer"}}
    document["security"] = [{"tenantApiKey": []}]
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def register_document_route(app: APIGatewayHttpResolver) -> None:
    @app.get("/openapi.json", summary="This document", tags=["meta"], include_in_schema=False)
    def get_openapi() -> dict:
        return json.loads(openapi_document())


if __name__ == "__main__":
    sys.stdout.write(openapi_document())
