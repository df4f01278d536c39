"""The proxy, ``/connections/{id}/proxy/{path+}``: a provider API call made with the connection's credential. A
function of its own, so the token route stays lean and each can be sized and limited for its traffic."""

from connvault.api import proxy
from connvault.api.app import lambda_handler, new_http_app

app = new_http_app()
proxy.register(app)
handler = lambda_handler(app)
