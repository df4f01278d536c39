"""Token fetch, ``GET /connections/{id}/token``: the hot path, in a function of its own, without the resolver."""

from connvault.api.token_route import new_handler

handler = new_handler()
