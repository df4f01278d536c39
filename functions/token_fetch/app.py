"""Token fetch, ``GET /connections/{id}/token``: the hot path, in a function of its own, without the resolver.

Its imports run with frame-stack room of their own (``connvault.frame_room``): a cold start costs the same at any
depth Lambda's bootstrap starts it."""

from connvault.frame_room import import_with_room

handler = import_with_room("connvault.api.token_route").new_handler()
