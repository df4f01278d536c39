"""``GET /oauth/callback``: where providers send the end user back. Public; the state is its only credential."""

from connvault.api import callback
from connvault.api.app import lambda_handler, new_http_app

app = new_http_app()
callback.register(app)
handler = lambda_handler(app)
