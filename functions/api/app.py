"""Management API: connect sessions, providers, integrations, connections, accounts, webhooks, and the OpenAPI document.

One function for these routes: they share imports and a warm connection pool, none is latency-critical, and
the handler stays a resolver call. The token route has its own function (``token_fetch``).
"""

from connvault.api import accounts, management, webhooks
from connvault.api.app import lambda_handler, new_http_app
from connvault.api.openapi import register_document_route

app = new_http_app()
management.register(app)
accounts.register(app)
webhooks.register(app)
register_document_route(app)
handler = lambda_handler(app)
