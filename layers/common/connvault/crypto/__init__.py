"""Envelope encryption: KMS data keys per tenant, AES-256-GCM payloads, one opaque ``bytea`` each."""
