"""Persistence: the engine, typed rows, the unit of work and one repository per table."""
