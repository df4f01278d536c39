"""Tenant events as Standard Webhooks: what an event, an endpoint and a delivery are, and how one is signed."""
