"""HTTP API Lambda REQUEST authorizer: ``connvault.api.authorizer``, imported with frame-stack room of its own
(``connvault.frame_room``) so a cold start costs the same at any depth Lambda's bootstrap starts it."""

from connvault.frame_room import import_with_room

handler = import_with_room("connvault.api.authorizer").handler
