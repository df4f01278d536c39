"""OAuth 2 against third-party providers: PKCE values, one HTTP client driven by catalog data, and the
parsing and classification of whatever the provider answers."""
