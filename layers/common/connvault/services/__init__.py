"""Use cases. Plain functions over a unit of work; nothing here knows about Lambda or HTTP."""
