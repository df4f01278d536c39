"""connvault: a credential vault for third-party OAuth2 and API-key connections."""

__version__ = "0.1.0"
