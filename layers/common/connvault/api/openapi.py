"""The OpenAPI document of the whole HTTP API, built from the routes themselves.

The management, token, callback, proxy and connect-page routes live in five functions; the document joins them so
a tenant sees one API, and the template is checked against it (every operation routed, every route documented,
the public ones marked ``security: []``).
``python -m connvault.api.openapi`` prints it (``make openapi`` writes ``docs/openapi.json``).
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from connvault import __version__
from connvault.api import accounts, callback, management, proxy, token, webhooks
from connvault.api.app import new_http_app
from connvault.api.connect_page import new_page_app
from connvault.api.schemas import ImportedGrant

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver


REFERENCED_ONLY = (ImportedGrant,)
"""Models the routes validate item by item and the document names by reference only (``$ref``), so that one
bad item of a bulk call does not refuse the whole call."""


@lru_cache(maxsize=1)
def openapi_document() -> str:
    app = new_http_app()
    management.register(app)
    accounts.register(app)
    webhooks.register(app)
    token.register(app)
    callback.register(app)
    proxy.register(app)
    register_document_route(app)
    document = json.loads(
        app.get_openapi_json_schema(
            title="connvault",
            version=__version__,
            description=(
                "Credential vault for third-party OAuth2 and API-key connections. Every route takes "
                "`Authorization: Bearer <tenant API key>` but GET /oauth/callback, the providers' redirect target, "
                "and the hosted connect page at /connect, whose link and page tokens are its credentials."
            ),
        )
    )
    for model in REFERENCED_ONLY:
        document["components"]["schemas"][model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    document["components"]["securitySchemes"] = {"tenantApiKey": {"type": "http", "scheme": "bearer"}}
    document["security"] = [{"tenantApiKey": []}]
    document["paths"][callback.CALLBACK_PATH]["get"]["security"] = []  # public: the providers' redirect target
    page = json.loads(new_page_app().get_openapi_json_schema(title="connect page", version=__version__))
    for path, operations in page["paths"].items():
        document["paths"][path] = {method: {**operation, "security": []} for method, operation in operations.items()}
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def register_document_route(app: APIGatewayHttpResolver) -> None:
    @app.get("/openapi.json", summary="This document", tags=["meta"])
    def get_openapi() -> dict[str, Any]:
        document: dict[str, Any] = json.loads(openapi_document())
        return document


if __name__ == "__main__":
    sys.stdout.write(openapi_document())
