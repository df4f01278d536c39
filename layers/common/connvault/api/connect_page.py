"""``GET /connect`` and ``POST /connect``: the hosted connect page. Public, like the OAuth callback: the link
and page tokens are its only credentials.

Whatever arrives (no token, a stale one, a body that is not a form, our own failure), the answer is a page that
says what happened, never JSON or a stack trace. The query (the link token) and the form (the page token, the
credentials) are never logged.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from connvault.api.answers import count_database_unavailable, stack_of
from connvault.api.app import callback_url
from connvault.api.pages import COOKIE, PAGE_PATH, error_page, render
from connvault.errors import ConnvaultError, DatabaseUnavailable, KeyServiceUnavailable
from connvault.observability import MetricName, logger, metrics
from connvault.redacted import Redacted
from connvault.services import connect_links

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

MAX_FORM_BYTES = 32 * 1024
MAX_FORM_FIELDS = 16
SECRET_FIELDS = frozenset({"page_token", "api_key", "password"})


class UnreadableForm(Exception):
    """The body is not one url-encoded form of reasonable size with each field once."""


def new_page_app() -> APIGatewayHttpResolver:
    """The resolver of the connect page: its own error handling, all of it pages."""
    app = APIGatewayHttpResolver()

    @app.get(
        PAGE_PATH,
        summary="The hosted connect page a connect_url opens (public: the link token is its credential)",
        tags=["connect"],
        responses={200: {"description": "An HTML page"}, 410: {"description": "A page: the link was used or expired"}},
    )
    def open_link() -> Response[str]:
        event = app.current_event
        query = event.query_string_parameters or {}
        token = query.get("token")
        view = connect_links.open_link(Redacted(token) if token else None, _remembered(event))
        return _answer(view)

    @app.post(
        PAGE_PATH,
        summary="The connect page's forms (public: the page token is its credential)",
        tags=["connect"],
        responses={200: {"description": "An HTML page"}, 400: {"description": "A page: the form was unreadable"}},
    )
    def act() -> Response[str]:
        form = _form(app.current_event)
        token = Redacted(form["page_token"].reveal()) if "page_token" in form else None
        step = form["step"].reveal() if "step" in form else ""
        slug = form["provider"].reveal() if "provider" in form else ""
        if step == "choose":
            view = connect_links.choose_provider(token, slug, callback_url=callback_url(app))
        elif step == "credentials":
            view = connect_links.submit_credentials(token, slug, form)
        else:
            view = connect_links.show_choices(token)
        return _answer(view)

    # Powertools leaves exception_handler unannotated: each handler below is typed, its registration is not.
    @app.exception_handler(UnreadableForm)  # type: ignore[untyped-decorator]
    def _unreadable(_error: UnreadableForm) -> Response[str]:
        metrics.add_metric(name=MetricName.CLIENT_ERROR, unit="Count", value=1)
        return error_page(
            HTTPStatus.BAD_REQUEST, "This page could not read the form", "Go back to the link you were given."
        )

    @app.exception_handler([DatabaseUnavailable, KeyServiceUnavailable])  # type: ignore[untyped-decorator]
    def _unavailable(error: DatabaseUnavailable | KeyServiceUnavailable) -> Response[str]:
        logger.error("connect page unavailable", extra={"error_type": type(error).__name__})
        if isinstance(error, DatabaseUnavailable):
            count_database_unavailable()
        else:
            metrics.add_metric(name=MetricName.SERVER_ERROR, unit="Count", value=1)
        page = error_page(
            HTTPStatus.SERVICE_UNAVAILABLE, "Try again in a moment", "The service is briefly unavailable."
        )
        page.headers["Retry-After"] = "1"
        return page

    @app.not_found
    def _no_route(_error: Exception) -> Response[str]:
        return error_page(HTTPStatus.NOT_FOUND, "Page not found", "Check the link you were given.")

    def _unexpected(error: Exception) -> Response[str]:
        # The type and frames only: a driver's or HTTP library's message can hold values.
        code = error.code if isinstance(error, ConnvaultError) else "internal_error"
        logger.error(
            "connect page failed",
            extra={"error_type": type(error).__name__, "error_code": code, "stack": stack_of(error)},
        )
        metrics.add_metric(name=MetricName.SERVER_ERROR, unit="Count", value=1)
        return error_page(
            HTTPStatus.INTERNAL_SERVER_ERROR, "Something went wrong", "It was not your fault. Try the link again."
        )

    # Registered by a call rather than as a decorator: the handlers above call it, and Powertools'
    # unannotated decorator would leave the name untyped.
    app.exception_handler(Exception)(_unexpected)

    return app


def _answer(view: connect_links.View) -> Response[str]:
    if isinstance(view, connect_links.UnusableView):
        metrics.add_metric(name=MetricName.CONNECT_PAGE_REFUSED, unit="Count", value=1)
        logger.info("connect page refused", extra={"reason": view.reason})
    return render(view)


def _remembered(event: APIGatewayProxyEventV2) -> Redacted[str] | None:
    """The page token the browser kept from opening the link, if it sends one."""
    for cookie in event.cookies:
        name, _, value = cookie.strip().partition("=")
        if name == COOKIE and value:
            return Redacted(value)
    return None


def _form(event: APIGatewayProxyEventV2) -> dict[str, Redacted[str]]:
    """The url-encoded body, every value kept ``Redacted`` (it holds the page token and the credentials)."""
    content_type = (event.headers or {}).get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise UnreadableForm
    try:
        body = event.decoded_body or ""
    except (ValueError, UnicodeDecodeError):
        raise UnreadableForm from None
    if len(body) > MAX_FORM_BYTES:
        raise UnreadableForm
    try:
        pairs = parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise UnreadableForm from None
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise UnreadableForm
    return {name: Redacted(value) for name, value in pairs}
