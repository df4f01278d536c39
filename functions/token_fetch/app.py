"""Token fetch, ``GET /connections/{id}/token``: the hot path, in a function of its own."""

from connvault.api import token
from connvault.api.app import lambda_handler, new_http_app

app = new_http_app()
token.register(app)
handler = lambda_handler(app)
