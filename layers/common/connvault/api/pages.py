"""The connect page's HTML: one small server-rendered document per view of ``services/connect_links.py``.

No script at all, and a Content-Security-Policy that would refuse one: ``default-src 'none'``, the one stylesheet
allowed by its hash, logos as ``data:`` images, forms posting only to this API (and, from the list of
integrations, to the OAuth providers' consent screens the redirect leads to), and framing only by the origins the
tenant listed. Every value is HTML-escaped where it is written; nothing the end user typed into a secret field
is ever written back. Answers are never cached and send no Referer.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from connvault.catalog.logos import logo_data_uri
from connvault.config import get_settings
from connvault.models import AuthType
from connvault.services.connect_links import (
    ChoiceView,
    CredentialsView,
    OutcomeView,
    PageContext,
    RedirectView,
    UnusableView,
    View,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from connvault.models import Provider
    from connvault.redacted import Redacted

PAGE_PATH = "/connect"
COOKIE = "cv_connect"

STYLE = """
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#57606a;--bg:#f6f8fa;--card:#fff;--line:#d0d7de;
--accent:#0b57d0;--accent-fg:#fff;--bad:#b42318;--bad-bg:#fef3f2;--good:#1a7f37}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9aa4ae;--bg:#0d1117;--card:#161b22;
--line:#30363d;--accent:#4c8dff;--accent-fg:#0d1117;--bad:#ff8b80;--bad-bg:#2d1414;--good:#56d364}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:28rem;margin:0 auto;padding:2rem 1rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:1.5rem}
.tenant{margin:0 0 .25rem;color:var(--muted);font-size:.875rem;font-weight:600;letter-spacing:.02em}
h1{margin:0 0 .5rem;font-size:1.375rem;line-height:1.3}
p{margin:.5rem 0}
ul{list-style:none;margin:1rem 0 0;padding:0}
li+li{margin-top:.5rem}
.choice{display:flex;align-items:center;gap:.75rem;width:100%;padding:.75rem;border:1px solid var(--line);
border-radius:10px;background:transparent;color:inherit;font:inherit;text-align:left;cursor:pointer}
.choice:hover{border-color:var(--accent)}
.choice img,.heading img{width:2.25rem;height:2.25rem;flex:none;border-radius:8px}
.choice .name{flex:1;font-weight:600}
.choice .kind{color:var(--muted);font-size:.875rem}
.heading{display:flex;align-items:center;gap:.75rem;margin-bottom:.5rem}
.heading h1{margin:0}
label{display:block;font-weight:600;margin:1rem 0 .25rem}
input{width:100%;padding:.625rem .75rem;border:1px solid var(--line);border-radius:8px;background:transparent;
color:inherit;font:inherit}
input[aria-invalid=true]{border-color:var(--bad)}
.hint{margin:.25rem 0 0;color:var(--muted);font-size:.875rem}
.primary{display:inline-block;width:100%;margin-top:1.25rem;padding:.7rem 1rem;border:0;border-radius:8px;
background:var(--accent);color:var(--accent-fg);font:inherit;font-weight:600;text-align:center;text-decoration:none;
cursor:pointer}
.secondary{display:inline-block;width:100%;margin-top:.5rem;padding:.6rem 1rem;border:1px solid var(--line);
border-radius:8px;background:transparent;color:inherit;font:inherit;text-align:center;text-decoration:none;
cursor:pointer}
.problem{margin:1rem 0 0;padding:.75rem;border-radius:8px;background:var(--bad-bg);color:var(--bad)}
.ok{color:var(--good)}
.foot{margin-top:1.25rem;font-size:.875rem;color:var(--muted);text-align:center}
a{color:var(--accent)}
:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
"""
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()

PROBLEMS = {
    "unknown_provider": "That integration is not offered by this link. Choose one of these instead.",
    "provider_not_ready": "That integration cannot be reached right now. Try again in a moment, or choose another.",
    "invalid_field": "Check the highlighted field: it is empty or not in the expected format.",
    "credentials_refused": "The provider refused these credentials. Check them and try again.",
    "provider_unavailable": "The provider could not check these credentials right now. Try again in a moment.",
    "too_many_checks": "Too many attempts on this page: it checks no more credentials. Ask for a new link.",
    "quota_exceeded": "This service cannot take new connections right now. Nothing was saved: try again later.",
}
FAILURES = {
    "access_denied": "You declined the request at the provider, so nothing was connected.",
    "expired_state": "The sign-in took too long and expired.",
    "invalid_state": "This sign-in was already used or is not valid.",
    "provider_unavailable": "The provider did not answer. Try again in a moment.",
    "integration_missing": "This integration is not set up any more.",
    "issuer_mismatch": "The answer did not come from the expected provider, so it was refused.",
    "server_error": "Something went wrong on our side while saving the connection.",
    "quota_exceeded": "This service cannot take new connections right now, so nothing was connected.",
}
UNUSABLE = {
    "unknown_link": ("This link is not valid", "Check that you opened the whole link, or ask for a new one."),
    "expired_link": ("This link has expired", "Connect links work for a limited time. Ask for a new one."),
    "used_link": (
        "This link was already used",
        "For your security a connect link works once. Ask for a new one if you still need to connect.",
    ),
}


def connect_page_url(app: APIGatewayHttpResolver) -> str:
    """Where the connect page lives: next to the configured callback URL, or on this API's own domain."""
    configured = get_settings().callback_url
    if configured:
        parts = urlsplit(configured)
        return f"{parts.scheme}://{parts.netloc}{PAGE_PATH}"
    return f"https://{app.current_event.request_context.domain_name}{PAGE_PATH}"


def render(view: View) -> Response[str]:
    """The HTTP answer for a view: its page, or the redirect to a provider."""
    if isinstance(view, RedirectView):
        return Response(
            status_code=HTTPStatus.SEE_OTHER.value,
            headers={**_private(), "Location": view.location.reveal()},
            body="",
        )
    if isinstance(view, ChoiceView):
        origins = sorted({_origin(p.authorization_url) for p in view.providers if p.authorization_url})
        status = HTTPStatus.BAD_REQUEST if view.problem else HTTPStatus.OK
        return _page(status, view.context, _choice_page(view), form_targets=origins, token=view.page_token)
    if isinstance(view, CredentialsView):
        status = HTTPStatus.BAD_REQUEST if view.problem else HTTPStatus.OK
        return _page(status, view.context, _credentials_page(view), token=view.page_token)
    if isinstance(view, OutcomeView):
        status = HTTPStatus.OK if view.connection_id else HTTPStatus.BAD_REQUEST
        return _page(status, view.context, _outcome_page(view), token=view.retry_token, forget=not view.retry_token)
    status = HTTPStatus.NOT_FOUND if view.reason == "unknown_link" else HTTPStatus.GONE
    return _page(status, view.context, _unusable_page(view), forget=True)


def error_page(status: HTTPStatus, title: str, text: str) -> Response[str]:
    """A page for what went wrong outside any view (an unreadable request, our own failure)."""
    return _page(status, None, _document(title, None, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>"))


# -- pages ----------------------------------------------------------------------------------------------------


def _choice_page(view: ChoiceView) -> str:
    context = view.context
    items = []
    for provider in view.providers:
        oauth = provider.auth_type is AuthType.OAUTH2
        kind = "Sign in" if oauth else ("API key" if provider.auth_type is AuthType.API_KEY else "Username")
        # Consent screens refuse to be framed: an OAuth choice leaves an embedding frame for the whole tab.
        target = ' formtarget="_top"' if oauth else ""
        items.append(
            f'<li><button class="choice" type="submit" name="provider" value="{escape(provider.slug)}"{target}>'
            f'{_logo(provider)}<span class="name">{escape(provider.display_name)}</span>'
            f'<span class="kind">{kind}</span></button></li>'
        )
    problem = _problem(PROBLEMS.get(view.problem or "")) if view.problem else ""
    body = (
        f"<h1>Connect an account</h1><p>Choose the service to connect to {escape(context.tenant_name)}.</p>"
        f"{problem}"
        f'<form method="post" action="{PAGE_PATH}">{_hidden(view.page_token, "choose")}'
        f'<ul aria-label="Integrations">{"".join(items)}</ul></form>'
        f"{_cancel(context)}"
    )
    return _document("Connect an account", context, body)


def _credentials_page(view: CredentialsView) -> str:
    provider, form, context = view.provider, view.form, view.context
    fields = []
    for form_field in form.fields:
        name = form_field.name
        ident = f"field-{name}"
        described = [f"hint-{name}"] if form_field.hint else []
        invalid = view.problem_field == name
        if invalid:
            described.append("problem")
        attributes = [
            f'id="{ident}"',
            f'name="{escape(name)}"',
            f'type="{"password" if form_field.secret else "text"}"',
            "required",
            f'maxlength="{form_field.max_length}"',
            'autocomplete="off"',
            'autocapitalize="off"',
            'spellcheck="false"',
        ]
        if form_field.pattern:
            attributes.append(f'pattern="{escape(form_field.pattern)}"')
        if described:
            attributes.append(f'aria-describedby="{" ".join(described)}"')
        if invalid:
            attributes.append('aria-invalid="true"')
        # A secret is never written back into the page, not even after a mistake.
        if not form_field.secret and name in view.kept:
            attributes.append(f'value="{escape(view.kept[name])}"')
        hint = f'<p class="hint" id="hint-{name}">{escape(form_field.hint)}</p>' if form_field.hint else ""
        fields.append(f'<label for="{ident}">{escape(form_field.label)}</label><input {" ".join(attributes)}>{hint}')
    problem = _problem(PROBLEMS.get(view.problem or "")) if view.problem else ""
    help_link = ""
    if form.help_url:
        help_link = (
            f'<p class="hint"><a href="{escape(form.help_url)}" target="_blank" rel="noopener noreferrer">'
            f"Where do I find this at {escape(provider.display_name)}?</a></p>"
        )
    another = ""
    if view.can_choose_another:
        another = (
            f'<form method="post" action="{PAGE_PATH}">{_hidden(view.page_token, "list")}'
            '<button class="secondary" type="submit">Choose another service</button></form>'
        )
    body = (
        f'<div class="heading">{_logo(provider)}<h1>Connect {escape(provider.display_name)}</h1></div>'
        f"<p>{escape(context.tenant_name)} will use these credentials to reach your "
        f"{escape(provider.display_name)} account. They are stored encrypted.</p>"
        f"{problem}{help_link}"
        f'<form method="post" action="{PAGE_PATH}" autocomplete="off">{_hidden(view.page_token, "credentials")}'
        f'<input type="hidden" name="provider" value="{escape(provider.slug)}">'
        f'{"".join(fields)}<button class="primary" type="submit">Connect</button></form>'
        f"{another}{_cancel(context)}"
    )
    return _document(f"Connect {provider.display_name}", context, body)


def _outcome_page(view: OutcomeView) -> str:
    context = view.context
    name = escape(context.tenant_name)
    if view.connection_id is not None:
        what = escape(view.provider_name) + " account" if view.provider_name else "account"
        back = context.return_to(connection_id=view.connection_id)
        onward = (
            f'<a class="primary" href="{escape(back)}">Return to {name}</a>'
            if back
            else "<p>You can close this window.</p>"
        )
        body = f'<h1 class="ok">Connected</h1><p>Your {what} is now connected to {name}.</p>{onward}'
        return _document("Connected", context, body)
    code = view.error or "unknown_error"
    text = FAILURES.get(code, "The provider refused the connection.")
    retry = ""
    if view.retry_token is not None:
        retry = (
            f'<form method="post" action="{PAGE_PATH}">{_hidden(view.retry_token, "list")}'
            '<button class="primary" type="submit">Try again</button></form>'
        )
    back = context.return_to(error=code)
    leave = f'<a class="secondary" href="{escape(back)}">Return to {name}</a>' if back else ""
    body = (
        f"<h1>Could not connect</h1><p>{escape(text)}</p>"
        f'<p class="hint">Error code: <code>{escape(code)}</code></p>{retry}{leave}'
    )
    return _document("Could not connect", context, body)


def _unusable_page(view: UnusableView) -> str:
    title, text = UNUSABLE.get(view.reason, UNUSABLE["unknown_link"])
    leave = ""
    if view.context is not None:
        back = view.context.return_to(error=view.reason)
        if back:
            leave = f'<a class="secondary" href="{escape(back)}">Return to {escape(view.context.tenant_name)}</a>'
    return _document(title, view.context, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>{leave}")


# -- pieces ---------------------------------------------------------------------------------------------------


def _document(title: str, context: PageContext | None, body: str) -> str:
    tenant = f'<p class="tenant">{escape(context.tenant_name)}</p>' if context else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f'<body><main><div class="card">{tenant}{body}</div></main></body></html>'
    )


def _hidden(page_token: Redacted[str], step: str) -> str:
    return (
        f'<input type="hidden" name="page_token" value="{escape(page_token.reveal())}">'
        f'<input type="hidden" name="step" value="{step}">'
    )


def _logo(provider: Provider) -> str:
    return f'<img src="{logo_data_uri(provider.slug, provider.display_name)}" alt="" width="36" height="36">'


def _problem(text: str | None) -> str:
    return f'<p class="problem" id="problem" role="alert">{escape(text or "Something is not right.")}</p>'


def _cancel(context: PageContext) -> str:
    back = context.return_to(error="cancelled")
    if not back:
        return ""
    return f'<p class="foot"><a href="{escape(back)}">Cancel and return to {escape(context.tenant_name)}</a></p>'


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _page(
    status: HTTPStatus,
    context: PageContext | None,
    html: str,
    *,
    form_targets: list[str] | None = None,
    token: Redacted[str] | None = None,
    forget: bool = False,
) -> Response[str]:
    ancestors = " ".join(context.frame_ancestors) if context and context.frame_ancestors else "'none'"
    policy = "; ".join(
        [
            "default-src 'none'",
            f"style-src '{STYLE_HASH}'",
            "img-src data:",
            "form-action 'self'" + "".join(f" {origin}" for origin in form_targets or ()),
            f"frame-ancestors {ancestors}",
            "base-uri 'none'",
        ]
    )
    headers = {**_private(), "Content-Security-Policy": policy}
    if ancestors == "'none'":
        headers["X-Frame-Options"] = "DENY"
    cookies = []
    if token is not None:
        cookies.append(_cookie(token.reveal(), get_settings().connect_link_ttl_seconds))
    elif forget:
        cookies.append(_cookie("", 0))
    return Response(
        status_code=status.value,
        content_type=f"{content_types.TEXT_HTML}; charset=utf-8",
        body=html,
        headers=headers,
        cookies=cookies,
    )


def _cookie(value: str, max_age: int) -> Cookie:
    """The page token, so the browser that opened a link can reload it; never sent anywhere but the page."""
    secure = urlsplit(get_settings().callback_url or "https://api").scheme == "https"
    return Cookie(
        name=COOKIE,
        value=value,
        path=PAGE_PATH,
        secure=secure,
        http_only=True,
        max_age=max_age,
        same_site=SameSite.LAX_MODE,
    )


def _private() -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
