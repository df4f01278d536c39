"""The providers' redirect target, ``GET /oauth/callback``: public, so it trusts nothing but the state.

Its query holds a code and a state, so the route never logs it and every answer tells browsers not to store
it or pass it on as a Referer.
"""

from html import escape
from http import HTTPStatus

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types

from connvault.api import pages
from connvault.api.app import callback_url
from connvault.observability import MetricName, logger, metrics
from connvault.redacted import Redacted
from connvault.services import connect_links
from connvault.services.connect import CallbackParams, CallbackResult, complete_connect

CALLBACK_PATH = "/oauth/callback"
"""The one public route: API Gateway calls no authorizer for it (the OpenAPI document says so)."""
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}
PAGE_HEADERS = {
    **PRIVATE,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
}
"""The callback's own pages (a session without a return URL): no script, no form, never framed, as the connect
pages; an outside probe found them sent without a policy."""
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; text-align: center">
<h1>{title}</h1><p>{text}</p></body></html>
"""


def register(app: APIGatewayHttpResolver) -> None:
    @app.get(
        CALLBACK_PATH,
        summary="The providers' redirect target (public: no API key)",
        description=(
            "Registered at every provider as the redirect URI. Completes the connect session its `state` names and "
            "redirects the browser to the session's return URL with `connection_id` or `error`, or shows a page."
        ),
        tags=["connect"],
        responses={302: {"description": "Back to the return URL"}, 400: {"description": "A page saying why not"}},
    )
    def oauth_callback() -> Response[str]:
        query = app.current_event.query_string_parameters or {}
        params = CallbackParams(
            state=Redacted(query["state"]) if "state" in query else None,
            code=Redacted(query["code"]) if "code" in query else None,
            error=query.get("error"),
            iss=query.get("iss"),
        )
        return render(complete_connect(params, callback_url=callback_url(app)))


def render(result: CallbackResult) -> Response[str]:
    if result.confirmation is not None:
        metrics.add_metric(name=MetricName.CONNECT_PARKED, unit="Count", value=1)
        logger.info("connect awaiting confirmation", extra={"connect_session_id": str(result.confirmation.session_id)})
    elif result.connection_id is not None:
        metrics.add_metric(name=MetricName.CONNECT_COMPLETED, unit="Count", value=1)
        logger.info("connect completed", extra={"connection_id": str(result.connection_id)})
    else:
        metrics.add_metric(name=MetricName.CONNECT_FAILED, unit="Count", value=1)
        logger.info("connect failed", extra={"error_code": result.error})
    if result.connect_link_id is not None:  # started from the connect page: its result page, in its look
        return pages.render(connect_links.finish_oauth(result))
    redirect = result.redirect_url
    if redirect is not None:
        return Response(status_code=HTTPStatus.FOUND.value, headers={**PRIVATE, "Location": redirect}, body="")
    if result.connection_id is not None:
        title, text, status = "Connected", "Your account is connected. You can close this window.", HTTPStatus.OK
    else:
        title, text, status = (
            "Connection failed",
            f"The account could not be connected ({escape(result.error or 'unknown_error')}). Please start again.",
            HTTPStatus.BAD_REQUEST,
        )
    return Response(
        status_code=status.value,
        content_type=content_types.TEXT_HTML,
        headers=PAGE_HEADERS,
        body=PAGE.format(title=title, text=text),
    )
