"""The HTTP edge: the Powertools resolver, error mapping, the pydantic contract and the routes."""
