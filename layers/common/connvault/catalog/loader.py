"""Parse ``providers.yaml`` into validated, immutable ``CatalogEntry`` objects.

The checks mirror the ``providers`` table's CHECK constraints and add the ones the database cannot
express (https only, no reserved authorize parameters, no OAuth fields on API-key entries), so a bad
entry fails in a unit test with the slug and field named, not as a constraint violation mid-migration.
Messages name entries and fields, never values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml

from connvault.catalog.forms import FormProblem, check_config_keys, parse_credential_check, parse_credential_form
from connvault.connection_config import OAUTH_TEMPLATED_FIELDS, PLACEHOLDER, TemplateError, check_template, parse_keys
from connvault.errors import InvalidInput
from connvault.models import (
    PROVIDER_SLUG,
    ApiAuth,
    AuthType,
    ConfigKey,
    ConfigSource,
    CredentialCheck,
    CredentialForm,
    RevocationScope,
    ScopeParameter,
    TokenEndpointAuthMethod,
    TokenResponseShape,
)
from connvault.proxy.credentials import parse_api_auth

CATALOG_PATH = Path(__file__).resolve().parent / "providers.yaml"

# The same rules as the providers table's CHECK constraints.
SLUG_PATTERN = re.compile(PROVIDER_SLUG)
SCOPE_SEPARATORS = frozenset({" ", ",", "+"})
MAX_REFRESH_MARGIN_SECONDS = 86_400
MAX_DISPLAY_NAME_LENGTH = 200
MAX_URL_LENGTH = 2048

# Where a token response names the account: dotted paths (id_token.<claim> reads the id token's claims).
ACCOUNT_ID_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,3}$")
MAX_ACCOUNT_ID_FIELDS = 4

# The OAuth client sets these itself on every authorize URL; an entry overriding one would break the flow.
RESERVED_AUTHORIZE_PARAMS = frozenset(
    {"client_id", "redirect_uri", "response_type", "state", "scope", "code_challenge", "code_challenge_method"}
)
# ... and these on every token request.
RESERVED_TOKEN_PARAMS = frozenset(
    {"grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_secret", "refresh_token"}
)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One global provider as the catalog declares it; ``seed_catalog`` writes it to ``providers``."""

    slug: str
    display_name: str
    auth_type: AuthType
    docs_url: str
    authorization_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    revocation_scope: RevocationScope = RevocationScope.TOKEN
    default_scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    scope_parameter: ScopeParameter = ScopeParameter.SCOPE
    pkce: bool = True
    token_endpoint_auth_method: TokenEndpointAuthMethod = TokenEndpointAuthMethod.CLIENT_SECRET_BASIC
    rotates_refresh_tokens: bool = False
    refresh_margin_seconds: int = 300
    authorize_params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    token_response_shape: TokenResponseShape = TokenResponseShape.STANDARD
    issuer: str | None = None
    require_iss: bool = False
    discovery_url: str | None = None
    max_concurrent_refreshes: int | None = None
    account_id_fields: tuple[str, ...] = ()
    credential_form: CredentialForm | None = None
    credential_check: CredentialCheck | None = None
    connection_config: tuple[ConfigKey, ...] = ()
    api_base_url: str | None = None
    token_params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    api_auth: ApiAuth | None = None

    device_authorization_url: str | None = None


class _Problem(Exception):
    """What is wrong with one field's value; turned into ``InvalidInput`` naming the entry and field."""


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Problem("must be a non-empty string")
    return value


def _slug(value: object) -> str:
    if not isinstance(value, str) or not SLUG_PATTERN.match(value):
        raise _Problem(f"must match {SLUG_PATTERN.pattern}")
    return value


def _display_name(value: object) -> str:
    text = _text(value)
    if len(text) > MAX_DISPLAY_NAME_LENGTH:
        raise _Problem(f"must be at most {MAX_DISPLAY_NAME_LENGTH} characters")
    return text


def _https_url(value: object) -> str:
    text = _text(value)
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname or parts.fragment or len(text) > MAX_URL_LENGTH:
        raise _Problem("must be an absolute https URL without a fragment")
    if any(char.isspace() for char in text):
        raise _Problem("must not contain whitespace")
    return text


def _url_template(value: object) -> str:
    """An https URL, or a template whose placeholders the entry's connection_config must declare (checked
    with the whole entry, in ``_check_templates``)."""
    text = _text(value)
    if PLACEHOLDER.match(text):
        if len(text) > MAX_URL_LENGTH or any(char.isspace() for char in text):
            raise _Problem("must be a URL template of at most 2048 characters without whitespace")
        return text
    return _https_url(text)


def _config_keys(value: object) -> tuple[ConfigKey, ...]:
    try:
        return parse_keys(value)
    except ValueError as exc:
        raise _Problem(str(exc)) from None


def _api_auth(value: object) -> ApiAuth | None:
    try:
        return parse_api_auth(value)
    except ValueError as exc:
        raise _Problem(str(exc)) from None


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Problem("must be true or false")
    return value


def _integer(low: int, high: int | None) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _Problem(f"must be an integer of at least {low}")
        if high is not None and value > high:
            raise _Problem(f"must be at most {high}")
        return value

    return parse


def _choice(enum: type[StrEnum]) -> Callable[[object], Any]:
    allowed = ", ".join(member.value for member in enum)

    def parse(value: object) -> Any:
        if isinstance(value, str):
            try:
                return enum(value)
            except ValueError:
                pass
        raise _Problem(f"must be one of: {allowed}")

    return parse


def _separator(value: object) -> str:
    if value not in SCOPE_SEPARATORS:
        raise _Problem("must be a space, a comma or a plus sign")
    return str(value)


def _scopes(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Problem("must be a list of scopes")
    scopes = tuple(_text(scope) for scope in value)
    if any(char.isspace() for scope in scopes for char in scope):
        raise _Problem("must not contain whitespace inside a scope")
    if len(set(scopes)) != len(scopes):
        raise _Problem("must not repeat a scope")
    return scopes


def _account_id_fields(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_ACCOUNT_ID_FIELDS:
        raise _Problem(f"must be a list of at most {MAX_ACCOUNT_ID_FIELDS} paths")
    if not all(isinstance(path, str) and ACCOUNT_ID_PATH.match(path) for path in value):
        raise _Problem("must hold dotted paths such as team.id or id_token.sub")
    return tuple(value)


def _parameters(reserved: frozenset[str]) -> Callable[[object], Mapping[str, str]]:
    def parse(value: object) -> Mapping[str, str]:
        if not isinstance(value, dict):
            raise _Problem("must be a mapping of parameter names to strings")
        if not all(isinstance(key, str) and key and isinstance(item, str) for key, item in value.items()):
            raise _Problem("must map non-empty names to strings (quote values such as true or 1)")
        if reserved & value.keys():
            raise _Problem("must not set a parameter the OAuth client sets itself")
        return MappingProxyType(dict(value))

    return parse


def _optional(parse: Callable[[object], Any]) -> Callable[[object], Any]:
    return lambda value: None if value is None else parse(value)


_FIELDS: dict[str, Callable[[object], Any]] = {
    "slug": _slug,
    "display_name": _display_name,
    "auth_type": _choice(AuthType),
    "docs_url": _https_url,
    "authorization_url": _url_template,
    "token_url": _url_template,
    "revocation_url": _optional(_url_template),
    "revocation_scope": _choice(RevocationScope),
    "default_scopes": _scopes,
    "scope_separator": _separator,
    "scope_parameter": _choice(ScopeParameter),
    "pkce": _boolean,
    "token_endpoint_auth_method": _choice(TokenEndpointAuthMethod),
    "rotates_refresh_tokens": _boolean,
    "refresh_margin_seconds": _integer(0, MAX_REFRESH_MARGIN_SECONDS),
    "authorize_params": _parameters(RESERVED_AUTHORIZE_PARAMS),
    "token_response_shape": _choice(TokenResponseShape),
    "issuer": _optional(_url_template),
    "require_iss": _boolean,
    "discovery_url": _optional(_url_template),
    "max_concurrent_refreshes": _optional(_integer(1, None)),
    "account_id_fields": _account_id_fields,
    "connection_config": _config_keys,
    "api_base_url": _optional(_url_template),
    "token_params": _parameters(RESERVED_TOKEN_PARAMS),
    "api_auth": _api_auth,
    "device_authorization_url": _optional(_https_url),
}
_REQUIRED = ("slug", "display_name", "auth_type", "docs_url")
# Fields every kind of provider may carry (besides the required ones).
_ANY_AUTH_TYPE = frozenset({"connection_config", "api_base_url", "api_auth"})
# Stated explicitly on every OAuth entry: a silent default for these would be a wrong guess about the provider.
_REQUIRED_FOR_OAUTH2 = (
    "authorization_url",
    "token_url",
    "pkce",
    "token_endpoint_auth_method",
    "rotates_refresh_tokens",
)
_OAUTH2_ONLY = frozenset(_FIELDS) - set(_REQUIRED) - _ANY_AUTH_TYPE
# Parsed after the rest, since their rules depend on the auth type (see catalog/forms.py).
_CONNECT_PAGE_FIELDS = frozenset({"credential_form", "credential_check"})


def _invalid(entry: str, field_name: str, problem: str) -> InvalidInput:
    return InvalidInput(
        f"provider catalog entry {entry}: {field_name} {problem}", field=f"catalog.{entry}.{field_name}"
    )


def _parse_entry(raw: object, position: int) -> CatalogEntry:
    if not isinstance(raw, dict):
        raise _invalid(f"#{position}", "entry", "must be a mapping")
    slug = raw.get("slug")
    # Name the entry by its slug when that is usable, else by its 1-based position in the file.
    entry = slug if isinstance(slug, str) and SLUG_PATTERN.match(slug) else f"#{position}"
    unknown = sorted(str(key) for key in raw.keys() - _FIELDS.keys() - _CONNECT_PAGE_FIELDS)
    if unknown:
        raise _invalid(entry, unknown[0], "is not a catalog field")
    values: dict[str, Any] = {}
    for name, parse in _FIELDS.items():
        if name in raw:
            try:
                values[name] = parse(raw[name])
            except _Problem as problem:
                raise _invalid(entry, name, str(problem)) from None
    is_oauth2 = values.get("auth_type") is AuthType.OAUTH2
    for name in _REQUIRED + (_REQUIRED_FOR_OAUTH2 if is_oauth2 else ()):
        if values.get(name) is None:
            raise _invalid(entry, name, "is required")
    if not is_oauth2:
        stray = sorted(_OAUTH2_ONLY & values.keys())
        if stray:
            raise _invalid(entry, stray[0], "applies to oauth2 providers only")
        values["pkce"] = False  # no OAuth flow, no PKCE (the default, like a Provider's, is for OAuth entries)
    if values.get("require_iss") and values.get("issuer") is None:
        raise _invalid(entry, "require_iss", "needs an issuer")
    separator = values.get("scope_separator", " ")
    if any(separator in scope for scope in values.get("default_scopes", ())):
        raise _invalid(entry, "default_scopes", "must not contain the scope separator inside a scope")
    try:
        if "credential_form" in raw:
            values["credential_form"] = parse_credential_form(raw["credential_form"], values["auth_type"])
        if "credential_check" in raw:
            form = values.get("credential_form")
            if form is None:
                raise FormProblem("credential_check: needs a credential_form")
            config_keys = check_config_keys(values.get("connection_config", ()))
            values["credential_check"] = parse_credential_check(raw["credential_check"], form, config_keys=config_keys)
    except FormProblem as problem:
        member, _, text = str(problem).partition(": ")
        raise _invalid(entry, member, text) from None
    _check_templates(entry, values)
    return CatalogEntry(**values)


def _check_templates(entry: str, values: Mapping[str, Any]) -> None:
    """Placeholders stand only where their kind allows, the OAuth endpoints use only keys the tenant gives
    (there is no token response yet when they are needed), and every declared key is used somewhere."""
    keys: tuple[ConfigKey, ...] = values.get("connection_config", ())
    if values.get("auth_type") is not AuthType.OAUTH2 and any(k.source is not ConfigSource.TENANT for k in keys):
        raise _invalid(entry, "connection_config", "takes values from a token response on oauth2 providers only")
    used: set[str] = set()
    for name in (*OAUTH_TEMPLATED_FIELDS, "api_base_url"):
        template = values.get(name)
        if template is None:
            continue
        sources = frozenset(ConfigSource) if name == "api_base_url" else frozenset({ConfigSource.TENANT})
        try:
            check_template(template, keys, sources=sources)
        except TemplateError as exc:
            raise _invalid(entry, name, str(exc)) from None
        used.update(PLACEHOLDER.findall(template))
    unused = sorted({key.name for key in keys} - used)
    if unused:
        raise _invalid(entry, "connection_config", f"declares {unused[0]}, which no URL uses")


def parse_catalog(document: object) -> tuple[CatalogEntry, ...]:
    """Validate an already-parsed YAML document (``{"providers": [...]}``) into entries, in file order."""
    if not isinstance(document, dict) or set(document) != {"providers"}:
        raise InvalidInput("the provider catalog must be a mapping with one key, providers", field="catalog")
    raw_entries = document["providers"]
    if not isinstance(raw_entries, list) or not raw_entries:
        raise InvalidInput("the provider catalog's providers must be a non-empty list", field="catalog")
    entries = tuple(_parse_entry(raw, position) for position, raw in enumerate(raw_entries, start=1))
    seen: set[str] = set()
    for catalog_entry in entries:
        if catalog_entry.slug in seen:
            raise _invalid(catalog_entry.slug, "slug", "appears more than once")
        seen.add(catalog_entry.slug)
    return entries


@lru_cache(maxsize=4)
def load_catalog(path: Path = CATALOG_PATH) -> tuple[CatalogEntry, ...]:
    """The catalog file, parsed and validated once per process (``load_catalog.cache_clear()`` resets it).

    A tuple rather than a list: the result is cached and shared, so callers must not be able to change it.
    """
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" near line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(f"the provider catalog is not valid YAML{where}", field="catalog") from None
    return parse_catalog(document)
