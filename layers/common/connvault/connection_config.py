"""Per-connection provider configuration: the values a provider's URLs need for one connection.

Shopify's endpoints live on the shop's own host (``https://{subdomain}.myshopify.com/admin/oauth/authorize``),
Salesforce's API on the org's ``instance_url``. The catalog declares, per provider, which keys its URLs use,
their kind, who supplies each (the tenant, or the provider's token response) and any stricter pattern; this
module checks values against that declaration and fills the placeholders.

The safety argument is by kind, not by a list of bad examples. A ``subdomain`` value is one lowercase LDH label
and may only stand for a whole host label left of the template's fixed labels, so no value can add a dot, a
slash, a port, userinfo or an escape: the host keeps its registrable domain. An ``origin`` value is exactly
``https://host`` with every label LDH and the host equal to, or under, one of the key's declared domains. After
filling, the URL is parsed again and its host compared with the one the template promises (defence in depth:
a loosened check elsewhere still cannot move a URL to another host).

Messages name keys (catalog data), never values: a value is the tenant's input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from connvault.errors import InvalidInput
from connvault.models import ConfigKey, ConfigKind, ConfigSource, Provider

PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]{0,31})\}")
KEY_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
OAUTH_TEMPLATED_FIELDS = ("authorization_url", "token_url", "revocation_url", "issuer", "discovery_url")
"""Provider fields the OAuth flow uses; only tenant-supplied keys may appear in them (they are needed before
there is a token response)."""
MAX_KEYS = 8
MAX_ORIGIN_LENGTH = 255
MAX_PATTERN_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 300

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
"""One DNS label in its lowercase LDH form (RFC 1123). Checked with ``fullmatch``: ``$`` would admit a newline."""
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")
_MAX_HOST_LENGTH = 253


class TemplateError(ValueError):
    """A provider URL template breaks the placement rules (a catalog or installation bug, not tenant input)."""


# -- the declaration -------------------------------------------------------------------------------------


def parse_keys(document: object) -> tuple[ConfigKey, ...]:
    """The keys a catalog entry (or a ``providers.connection_config`` column) declares; ValueError if malformed.

    ``{"subdomain": {"kind": "subdomain", "pattern": "...", "description": "..."},
    "instance_url": {"kind": "origin", "source": "token_response", "domains": ["salesforce.com"]}}``
    """
    if not isinstance(document, Mapping):
        raise ValueError("must be a mapping of key names to their declarations")
    if len(document) > MAX_KEYS:
        raise ValueError(f"must declare at most {MAX_KEYS} keys")
    return tuple(_parse_key(name, spec) for name, spec in document.items())


def _parse_key(name: object, spec: object) -> ConfigKey:
    if not isinstance(name, str) or not KEY_NAME.fullmatch(name):
        raise ValueError(f"key names must match {KEY_NAME.pattern}")
    if not isinstance(spec, Mapping) or not set(spec) <= {"kind", "source", "pattern", "domains", "description"}:
        raise ValueError(f"{name} must be a mapping of kind, source, pattern, domains and description")
    try:
        kind = ConfigKind(str(spec.get("kind")))
        source = ConfigSource(spec.get("source", ConfigSource.TENANT))
    except ValueError:
        raise ValueError(f"{name} has an unknown kind or source") from None
    pattern = spec.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_LENGTH:
            raise ValueError(f"{name}.pattern must be a regular expression of at most {MAX_PATTERN_LENGTH} characters")
        try:
            re.compile(pattern)
        except re.error:
            raise ValueError(f"{name}.pattern is not a regular expression") from None
    domains = spec.get("domains", [])
    if not isinstance(domains, list | tuple) or not all(isinstance(d, str) and _DOMAIN.fullmatch(d) for d in domains):
        raise ValueError(f"{name}.domains must be a list of lowercase domain names")
    if (kind is ConfigKind.ORIGIN) != bool(domains):
        raise ValueError(f"{name}.domains is required for an origin and applies to nothing else")
    description = spec.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
        raise ValueError(f"{name}.description must be text of at most {MAX_DESCRIPTION_LENGTH} characters")
    return ConfigKey(name, kind, source, pattern, tuple(domains), description)


def keys_document(keys: tuple[ConfigKey, ...]) -> dict[str, dict[str, Any]]:
    """The inverse of ``parse_keys``: what the seed writes to ``providers.connection_config``."""
    document: dict[str, dict[str, Any]] = {}
    for key in keys:
        spec: dict[str, Any] = {"kind": key.kind.value, "source": key.source.value}
        if key.pattern is not None:
            spec["pattern"] = key.pattern
        if key.domains:
            spec["domains"] = list(key.domains)
        if key.description:
            spec["description"] = key.description
        document[key.name] = spec
    return document


def check_template(template: str, keys: tuple[ConfigKey, ...], *, sources: frozenset[ConfigSource]) -> None:
    """Raise ``TemplateError`` unless every placeholder of ``template`` is a declared key from ``sources``,
    standing where its kind allows: a ``subdomain`` as a whole host label with at least two fixed labels to
    its right, an ``origin`` as the very start of the URL. A template without placeholders passes."""
    names = PLACEHOLDER.findall(template)
    if not names:
        return
    declared = {key.name: key for key in keys}
    for name in names:
        key = declared.get(name)
        if key is None:
            raise TemplateError(f"uses {{{name}}}, which connection_config does not declare")
        if key.source not in sources:
            raise TemplateError(f"uses {{{name}}}, which is not known when this URL is needed")
    origin = [key for key in keys if key.name == names[0] and key.kind is ConfigKind.ORIGIN]
    if origin:
        if len(names) != 1 or not re.fullmatch(r"\{[a-z][a-z0-9_]*\}(/[^{}]*)?", template):
            raise TemplateError("an origin placeholder must start the URL and be its only placeholder")
        return
    parts = urlsplit(template)
    host = parts.netloc
    if parts.scheme != "https" or "@" in host or ":" in host:
        raise TemplateError("a templated URL must be https, with neither userinfo nor a port")
    if PLACEHOLDER.search(template.replace(host, "", 1)):
        raise TemplateError("placeholders may stand in the host only")
    labels = host.split(".")
    fixed = [label for label in labels if not PLACEHOLDER.fullmatch(label)]
    templated = [label for label in labels if PLACEHOLDER.fullmatch(label)]
    if any(PLACEHOLDER.search(label) for label in fixed):
        raise TemplateError("a placeholder must be a whole host label")
    if any(declared[PLACEHOLDER.fullmatch(label)[1]].kind is not ConfigKind.SUBDOMAIN for label in templated):  # type: ignore[index]
        raise TemplateError("only subdomain keys may stand for a host label")
    last = max(index for index, label in enumerate(labels) if PLACEHOLDER.fullmatch(label))
    if len(labels) - last - 1 < 2 or not all(_LABEL.fullmatch(label) for label in labels[last + 1 :]):
        raise TemplateError("a host placeholder needs a fixed domain of at least two labels to its right")


# -- values ----------------------------------------------------------------------------------------------


def _refused(key: ConfigKey, reason: str) -> InvalidInput:
    return InvalidInput(f"connection_config.{key.name} {reason}", field=f"connection_config.{key.name}")


def check_value(key: ConfigKey, value: object) -> str:
    """``value`` as stored, if acceptable for ``key``; ``InvalidInput`` naming the key otherwise."""
    if not isinstance(value, str) or not value:
        raise _refused(key, "must be a non-empty string")
    if key.kind is ConfigKind.SUBDOMAIN:
        if not _LABEL.fullmatch(value) or value[2:4] == "--":
            raise _refused(key, "must be one DNS label: lowercase letters, digits and inner hyphens, at most 63")
        checked = value
    else:
        checked = _origin(key, value)
    if key.pattern is not None and not re.fullmatch(key.pattern, checked):
        raise _refused(key, "does not have the form this provider uses")
    return checked


def _origin(key: ConfigKey, value: str) -> str:
    """``https://host`` and nothing else, the host LDH labels under one of the key's domains; lowercased."""
    if len(value) > MAX_ORIGIN_LENGTH or not value.isascii() or not value.startswith("https://"):
        raise _refused(key, "must be an https origin")
    host = value[len("https://") :].lower()
    if host.endswith("/"):
        host = host[:-1]  # https://host/ names the same origin
    labels = host.split(".")
    if len(host) > _MAX_HOST_LENGTH or not all(_LABEL.fullmatch(label) and label[2:4] != "--" for label in labels):
        raise _refused(key, "must be an https origin: a host of lowercase letters, digits and hyphens, no more")
    if not any(host == domain or host.endswith("." + domain) for domain in key.domains):
        raise _refused(key, "must be a host of the provider's own domains")
    return "https://" + host


def tenant_config(provider: Provider, supplied: Mapping[str, object] | None) -> dict[str, str]:
    """The tenant's ``connection_config`` for ``provider``, checked: every tenant key present and well formed,
    nothing else. Raises ``InvalidInput`` naming the first key at fault."""
    supplied = supplied or {}
    tenant_keys = {key.name: key for key in provider.connection_config if key.source is ConfigSource.TENANT}
    if not isinstance(supplied, Mapping) or not set(supplied) <= tenant_keys.keys():
        # The stray key is the tenant's own text: named by field, never echoed.
        raise InvalidInput(
            f"connection_config may hold only the keys provider {provider.slug!r} takes from the tenant",
            field="connection_config",
        )
    config: dict[str, str] = {}
    for name, key in tenant_keys.items():
        if name not in supplied:
            raise _refused(key, f"is required by provider {provider.slug!r}")
        config[name] = check_value(key, supplied[name])
    return config


def token_response_config(provider: Provider, fields: Mapping[str, Any]) -> dict[str, str]:
    """The values the provider supplies in its token response (``OAuth2Tokens.extra``), checked like the
    tenant's. Raises ``InvalidInput`` naming the key when one is missing or malformed."""
    config: dict[str, str] = {}
    for key in provider.connection_config:
        if key.source is ConfigSource.TOKEN_RESPONSE:
            if key.name not in fields:
                raise _refused(key, "is missing from the provider's token response")
            config[key.name] = check_value(key, fields[key.name])
    return config


# -- filling ---------------------------------------------------------------------------------------------


def fill(template: str, keys: tuple[ConfigKey, ...], config: Mapping[str, str]) -> str:
    """``template`` with its placeholders replaced by ``config``'s values, each checked again here.

    Raises ``InvalidInput`` naming the key when the connection lacks a value (e.g. the provider gained a
    placeholder after the connection was made), and ``TemplateError`` when the result would not be on the host
    the template promises.
    """
    if "{" not in template:
        return template
    declared = {key.name: key for key in keys}
    check_template(template, keys, sources=frozenset(ConfigSource))

    def value_for(match: re.Match[str]) -> str:
        key = declared[match[1]]
        if key.name not in config:
            raise _refused(key, "is not set on this connection; connect it again")
        return check_value(key, config[key.name])

    filled = PLACEHOLDER.sub(value_for, template)
    expected_host = urlsplit(PLACEHOLDER.sub(value_for, _origin_part(template))).hostname
    parts = urlsplit(filled)
    if parts.hostname != expected_host or parts.username is not None or parts.port is not None:
        raise TemplateError("the filled URL is not on the host its template promises")
    return filled


def _origin_part(template: str) -> str:
    """Scheme and authority of a template: the whole template for an origin placeholder, else up to the path."""
    if template.startswith("{"):
        return template.split("/", 1)[0]
    parts = urlsplit(template)
    return f"{parts.scheme}://{parts.netloc}"


def configured(provider: Provider, config: Mapping[str, str]) -> Provider:
    """``provider`` with the placeholders of its OAuth endpoints (and issuer) filled for one connection."""
    if not provider.connection_config:
        return provider
    filled: dict[str, Any] = {
        name: fill(getattr(provider, name), provider.connection_config, config)
        for name in OAUTH_TEMPLATED_FIELDS
        if getattr(provider, name) is not None
    }
    return replace(provider, **filled)


def for_revocation(provider: Provider, config: Mapping[str, str]) -> Provider:
    """``configured`` for revoking a grant that was made with ``config`` (its tokens go back to the host that issued
    them). A configuration that no longer fits the provider leaves nowhere safe to send a token: the result has no
    revocation endpoint, so nothing is revoked."""
    try:
        return configured(provider, config)
    except (InvalidInput, TemplateError):
        return replace(provider, revocation_url=None)


def api_base_url(provider: Provider, config: Mapping[str, str]) -> str | None:
    """The provider's API base URL for one connection, placeholders filled; None when it declares none."""
    if provider.api_base_url is None:
        return None
    return fill(provider.api_base_url, provider.connection_config, config)
