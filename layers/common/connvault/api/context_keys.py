"""What the tenant authorizer puts in the context every route reads (``requestContext.authorizer.lambda``).

A module of its own so that reading it costs the token function's cold start no import of the key checks
(``services.auth``)."""

UNCHECKED_CONTEXT_KEY = "unchecked"
"""The key of a request whose API key could not be checked (the database is unavailable). It carries no tenant: the
function behind answers 503 with ``Retry-After`` without running the route."""
