"""The connect page's credential forms and credential checks, as catalog data: parsed, checked and defaulted here.

The catalog loader parses them from ``providers.yaml``; the provider repository parses them again from the
``providers`` row (jsonb), with the same rules, so a row written any other way cannot smuggle in a field the page
would render unchecked. Problems raise ``FormProblem`` naming the member at fault, never its value.
"""

from __future__ import annotations

import re
import string
from typing import Any
from urllib.parse import urlsplit

from connvault.models import (
    AuthType,
    CheckAuth,
    ConfigKey,
    ConfigKind,
    ConfigSource,
    CredentialCheck,
    CredentialField,
    CredentialForm,
)

CREDENTIAL_FIELDS: dict[AuthType, tuple[str, ...]] = {
    AuthType.API_KEY: ("api_key",),
    AuthType.BASIC: ("username", "password"),
}
SECRET_FIELDS = frozenset({"api_key", "password"})
DEFAULT_LABELS = {"api_key": "API key", "username": "Username", "password": "Password"}
MAX_FIELDS = 6
MAX_LABEL_LENGTH = 80
MAX_HINT_LENGTH = 300
MAX_PATTERN_LENGTH = 300
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "cookie"})
# Patterns are used by Python (re.fullmatch) and by browsers (the input's pattern, a JavaScript regular
# expression in "v" mode). This subset means the same in both: no lookaround, named groups, backreferences,
# flags or unescaped class punctuation that "v" mode refuses.
_PATTERN_FORBIDDEN = re.compile(r"\(\?|\\[1-9kpPbBAZz]|\[[^\]]*(?<!\\)[(){}/|][^\]]*\]")


class FormProblem(Exception):
    """What is wrong, as ``member: problem``; the caller names the provider."""


def parse_credential_form(raw: object, auth_type: AuthType) -> CredentialForm:
    """A form from catalog data: ``{"help_url": ..., "fields": [{"name", "label", "pattern", "hint"}, ...]}``.

    The auth type's credential fields must all be there; other fields are non-secret details for the metadata.
    """
    if auth_type not in CREDENTIAL_FIELDS:
        raise FormProblem("credential_form: applies to api_key and basic providers only")
    if not isinstance(raw, dict) or not raw.keys() <= {"help_url", "fields"}:
        raise FormProblem("credential_form: must be a mapping of help_url and fields")
    help_url = raw.get("help_url")
    if help_url is not None:
        help_url = _https_url(help_url, "credential_form.help_url")
    raw_fields = raw.get("fields")
    if not isinstance(raw_fields, list) or not 1 <= len(raw_fields) <= MAX_FIELDS:
        raise FormProblem(f"credential_form.fields: must be a list of 1 to {MAX_FIELDS} fields")
    fields = tuple(_parse_field(item, f"credential_form.fields[{index}]") for index, item in enumerate(raw_fields))
    names = [field.name for field in fields]
    if len(set(names)) != len(names):
        raise FormProblem("credential_form.fields: a name appears twice")
    required = CREDENTIAL_FIELDS[auth_type]
    if not set(required) <= set(names):
        raise FormProblem(f"credential_form.fields: must include {', '.join(required)}")
    stray = SECRET_FIELDS & set(names) - set(required)
    if stray:
        raise FormProblem(f"credential_form.fields: {sorted(stray)[0]} is not a field of this auth type")
    return CredentialForm(fields, help_url)


def default_form(auth_type: AuthType) -> CredentialForm:
    """The form of a provider whose catalog entry declares none: the auth type's fields, plainly labelled."""
    return CredentialForm(
        tuple(
            CredentialField(name, DEFAULT_LABELS[name], secret=name in SECRET_FIELDS)
            for name in CREDENTIAL_FIELDS[auth_type]
        )
    )


def parse_credential_check(
    raw: object, form: CredentialForm, *, config_keys: frozenset[str] = frozenset(), require_https: bool = True
) -> CredentialCheck:
    """A check from catalog data: ``{"url": ..., "auth": "bearer"|"basic"|"header", "header": ...}``.

    ``{name}`` in the URL must name a non-secret field with a pattern, so what the end user types there is
    constrained before it becomes part of an address, or one of ``config_keys``: the tenant's connection_config
    values the connection is stored with, so the check asks the very host the connection will use.
    ``require_https=False`` is for rows the devserver and the tests write (a provider on 127.0.0.1); the
    catalog file always requires https.
    """
    if not isinstance(raw, dict) or not raw.keys() <= {"url", "auth", "header"} or "url" not in raw:
        raise FormProblem("credential_check: must be a mapping of url, auth and header")
    url = raw["url"]
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise FormProblem("credential_check.url: must be a URL")
    placeholders = _placeholders(url)
    by_name = {field.name: field for field in form.fields}
    for name in placeholders:
        if name in config_keys:
            continue
        field = by_name.get(name)
        if field is None or field.secret or field.pattern is None:
            raise FormProblem(
                "credential_check.url: may only name non-secret form fields that have a pattern, or connection_config"
            )
    example = url.format_map({name: "x" for name in placeholders})
    parts = urlsplit(example)
    if require_https:
        _https_url(example, "credential_check.url")
    elif parts.scheme not in ("https", "http") or not parts.hostname:
        raise FormProblem("credential_check.url: must be an absolute URL")
    if parts.username or parts.password or parts.fragment:
        raise FormProblem("credential_check.url: must not carry credentials or a fragment")
    try:
        auth = CheckAuth(raw.get("auth", CheckAuth.BEARER))
    except ValueError:
        raise FormProblem(f"credential_check.auth: must be one of {', '.join(CheckAuth)}") from None
    header = raw.get("header")
    if auth is CheckAuth.HEADER:
        if not isinstance(header, str) or not _HEADER_NAME.match(header) or header.lower() in _FORBIDDEN_HEADERS:
            raise FormProblem("credential_check.header: must be a header name")
    elif header is not None:
        raise FormProblem("credential_check.header: only with auth header")
    if auth is CheckAuth.BASIC and "username" not in by_name and "api_key" not in by_name:
        raise FormProblem("credential_check.auth: basic needs username and password, or an api_key")
    return CredentialCheck(url, auth, header)


def check_config_keys(keys: tuple[ConfigKey, ...]) -> frozenset[str]:
    """The connection_config keys a check URL may name: the tenant's subdomains (each one whole host label)."""
    return frozenset(key.name for key in keys if key.source is ConfigSource.TENANT and key.kind is ConfigKind.SUBDOMAIN)


def form_record(form: CredentialForm) -> dict[str, Any]:
    """The form as the catalog and the ``providers.credential_form`` column hold it."""
    fields = []
    for field in form.fields:
        item: dict[str, Any] = {"name": field.name, "label": field.label}
        if field.pattern is not None:
            item["pattern"] = field.pattern
        if field.hint is not None:
            item["hint"] = field.hint
        fields.append(item)
    return {"fields": fields, **({"help_url": form.help_url} if form.help_url else {})}


def check_record(check: CredentialCheck) -> dict[str, Any]:
    return {"url": check.url, "auth": check.auth.value, **({"header": check.header} if check.header else {})}


def _parse_field(raw: object, where: str) -> CredentialField:
    if not isinstance(raw, dict) or not raw.keys() <= {"name", "label", "pattern", "hint"}:
        raise FormProblem(f"{where}: must be a mapping of name, label, pattern and hint")
    name = raw.get("name")
    if not isinstance(name, str) or not _FIELD_NAME.match(name):
        raise FormProblem(f"{where}.name: must match {_FIELD_NAME.pattern}")
    label = _text(raw.get("label", DEFAULT_LABELS.get(name)), f"{where}.label", MAX_LABEL_LENGTH)
    hint = raw.get("hint")
    if hint is not None:
        hint = _text(hint, f"{where}.hint", MAX_HINT_LENGTH)
    pattern = raw.get("pattern")
    if pattern is not None:
        pattern = _pattern(pattern, f"{where}.pattern")
    return CredentialField(
        name,
        label,
        secret=name in SECRET_FIELDS,
        pattern=pattern,
        hint=hint,
        max_length=8192 if name in SECRET_FIELDS else 512,
    )


def _pattern(value: object, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_PATTERN_LENGTH:
        raise FormProblem(f"{where}: must be a regular expression of at most {MAX_PATTERN_LENGTH} characters")
    if value.startswith("^") or value.endswith("$") or _PATTERN_FORBIDDEN.search(value):
        raise FormProblem(f"{where}: must be unanchored and use only syntax browsers and Python share")
    try:
        re.compile(value)
    except re.error:
        raise FormProblem(f"{where}: is not a valid regular expression") from None
    return value


def _text(value: object, where: str, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise FormProblem(f"{where}: must be a non-empty string of at most {max_length} characters")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise FormProblem(f"{where}: must not contain control characters")
    return value


def _https_url(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) > 2048 or any(char.isspace() for char in value):
        raise FormProblem(f"{where}: must be an absolute https URL")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.fragment or parts.username or parts.password:
        raise FormProblem(f"{where}: must be an absolute https URL")
    return value


def _placeholders(url: str) -> list[str]:
    try:
        names = [name for _, name, spec, conversion in string.Formatter().parse(url) if name is not None]
        specs = [(spec, conversion) for _, name, spec, conversion in string.Formatter().parse(url) if name]
    except ValueError:
        raise FormProblem("credential_check.url: has an unbalanced brace") from None
    if any(not _FIELD_NAME.match(name) for name in names) or any(spec or conversion for spec, conversion in specs):
        raise FormProblem("credential_check.url: placeholders are {field_name} only")
    return names
