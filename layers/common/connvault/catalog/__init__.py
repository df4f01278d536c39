"""The global provider catalog: ``providers.yaml`` (data), ``loader`` (parsing) and ``seed`` (upsert).

Nothing is imported here, so that importing a submodule does not pay for the others (cold start).
"""
