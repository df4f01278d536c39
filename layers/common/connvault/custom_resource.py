"""The CloudFormation custom resource protocol: one answer per request, always, and before the deadline.

CloudFormation waits for a JSON document PUT to the request's pre-signed ``ResponseURL``. A handler that
raises, times out or never answers leaves the stack waiting for up to an hour, so ``respond`` catches every
failure of the work it runs and turns it into ``FAILED``, and a watchdog thread answers ``FAILED`` on its own
when the Lambda is about to be stopped mid-work. Whichever answer comes first is the only one sent.

The ``ResponseURL`` is a bearer credential (its signature lets anyone answer for the stack), so it is held as
``Redacted`` and never logged. A ``FAILED`` reason is built from our own error codes and messages only: the
text of a driver or HTTP exception can carry hosts, values or credentials, so such errors show up by type.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import urllib3

from connvault.errors import ConnvaultError, InvalidInput
from connvault.observability import logger
from connvault.redacted import Redacted

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# A reason is one line in the stack's events, and the whole response must fit in 4 KB: cut it here.
MAX_REASON_LENGTH = 256
# Answer FAILED this long before the Lambda's own timeout: enough for the PUT and its retries below.
DEADLINE_MARGIN_MS = 30_000
_PUT_TIMEOUT = urllib3.Timeout(connect=3.0, read=5.0)
_PUT_RETRIES = urllib3.Retry(
    total=2, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504), allowed_methods=["PUT"]
)


class RequestType(StrEnum):
    CREATE = "Create"
    UPDATE = "Update"
    DELETE = "Delete"


class Status(StrEnum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class CustomResourceRequest:
    """The fields of a CloudFormation custom resource event that the answer needs.

    ``ResourceProperties`` are not among them: the one property that matters, ``SchemaHash``, only has to
    change for CloudFormation to send an Update; the work itself always brings the database up to date.
    """

    request_type: str
    response_url: Redacted[str]
    stack_id: str
    request_id: str
    logical_resource_id: str
    physical_resource_id: str | None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> CustomResourceRequest:
        """Raises ``InvalidInput`` naming the first missing field; without them there is nobody to answer."""
        for name in ("RequestType", "ResponseURL", "StackId", "RequestId", "LogicalResourceId"):
            if not isinstance(event.get(name), str) or not event[name]:
                raise InvalidInput(f"the custom resource event has no {name}", field=name)
        return cls(
            request_type=event["RequestType"],
            response_url=Redacted(event["ResponseURL"]),
            stack_id=event["StackId"],
            request_id=event["RequestId"],
            logical_resource_id=event["LogicalResourceId"],
            physical_resource_id=event.get("PhysicalResourceId") or None,
        )

    @property
    def stable_physical_id(self) -> str:
        """The id CloudFormation already knows, or on Create one derived from the stack and resource names.

        It must not change on Update: a new id there tells CloudFormation the resource was replaced, and it
        would then send a Delete for the old one.
        """
        if self.physical_resource_id:
            return self.physical_resource_id
        # arn:aws:cloudformation:<region>:<account>:stack/<stack-name>/<uuid>
        _, _, stack_name = self.stack_id.rpartition(":stack/")
        return f"{stack_name.split('/')[0] or self.stack_id}-{self.logical_resource_id}"


@dataclass(frozen=True, slots=True)
class CustomResourceResponse:
    status: Status
    physical_resource_id: str
    reason: str = ""
    data: Mapping[str, str] = field(default_factory=dict)

    def body(self, request: CustomResourceRequest) -> bytes:
        document: dict[str, Any] = {
            "Status": self.status.value,
            # Built from our own error codes and messages only (see _run); cut here, once, for every answer.
            "Reason": self.reason[:MAX_REASON_LENGTH],
            "PhysicalResourceId": self.physical_resource_id,
            "StackId": request.stack_id,
            "RequestId": request.request_id,
            "LogicalResourceId": request.logical_resource_id,
            "NoEcho": False,
            "Data": dict(self.data),
        }
        return json.dumps(document).encode()


class _Answer:
    """Sends at most one response per request, whichever thread (work or watchdog) gets there first.

    The lock is held for the whole PUT, so a second caller waits for the first one's send to finish: the
    handler must not return (and have Lambda freeze the process) while the watchdog is still mid-request.
    """

    def __init__(self, request: CustomResourceRequest, http: urllib3.PoolManager) -> None:
        self._request = request
        self._http = http
        self._lock = threading.Lock()
        self._sent = False

    def send(self, response: CustomResourceResponse) -> bool:
        with self._lock:
            if self._sent:
                return False
            self._sent = True
            _put(self._request, response, self._http)
            return True


def _put(request: CustomResourceRequest, response: CustomResourceResponse, http: urllib3.PoolManager) -> None:
    body = response.body(request)
    try:
        answer = http.request(
            "PUT",
            request.response_url.reveal(),
            body=body,
            # The pre-signed S3 URL is signed for an empty Content-Type, as CloudFormation documents: a
            # value there (application/json, say) breaks the signature and the answer is refused.
            headers={"Content-Type": "", "Content-Length": str(len(body))},
            timeout=_PUT_TIMEOUT,
            retries=_PUT_RETRIES,
            redirect=False,
        )
    except urllib3.exceptions.HTTPError as exc:
        # The URL is in the exception text; the type is enough to know the answer never arrived.
        logger.error("custom resource answer not delivered", extra={"error_type": type(exc).__name__})
        return
    if answer.status >= 300:
        logger.error("custom resource answer refused", extra={"http_status": answer.status})
        return
    logger.info(
        "custom resource answered",
        extra={"status": response.status.value, "physical_resource_id": response.physical_resource_id},
    )


def respond(event: Mapping[str, Any], context: LambdaContext, work: Callable[[], Mapping[str, str]]) -> None:
    """Run ``work`` for Create and Update and answer CloudFormation; answer Delete without running anything.

    Delete succeeds untouched because the resource stands for the schema of a database that outlives the
    stack's interest in it: dropping or rolling back data on a stack deletion (or on the Delete that follows
    a failed Create) is never what the operator meant. ``work`` returns the response's ``Data``.

    Never raises: Lambda would retry a failed asynchronous invocation and run the work twice.
    """
    try:
        request = CustomResourceRequest.from_event(event)
    except InvalidInput as exc:
        logger.error("not a CloudFormation custom resource event", extra={"field": exc.field})
        return
    logger.append_keys(
        request_type=request.request_type,
        logical_resource_id=request.logical_resource_id,
        cfn_request_id=request.request_id,
    )
    physical_id = request.stable_physical_id
    answer = _Answer(request, urllib3.PoolManager())
    timeout_response = CustomResourceResponse(
        Status.FAILED,
        physical_id,
        f"timeout: {request.request_type} did not finish {DEADLINE_MARGIN_MS // 1000} s before the function's "
        f"deadline; see CloudWatch log stream {context.log_stream_name}",
    )
    delay = max(0.0, (context.get_remaining_time_in_millis() - DEADLINE_MARGIN_MS) / 1000)
    watchdog = threading.Timer(delay, _answer_timeout, args=(answer, timeout_response))
    watchdog.daemon = True
    watchdog.start()
    try:
        response = _run(request, context, work, physical_id)
    finally:
        watchdog.cancel()
    if not answer.send(response):
        logger.warning("custom resource finished after the watchdog answered FAILED", extra={"status": response.status})


def _answer_timeout(answer: _Answer, response: CustomResourceResponse) -> None:
    logger.error("custom resource deadline reached; answering FAILED")
    answer.send(response)


def _run(
    request: CustomResourceRequest,
    context: LambdaContext,
    work: Callable[[], Mapping[str, str]],
    physical_id: str,
) -> CustomResourceResponse:
    try:
        if request.request_type == RequestType.DELETE:
            return CustomResourceResponse(Status.SUCCESS, physical_id, "nothing to delete")
        if request.request_type not in (RequestType.CREATE, RequestType.UPDATE):
            raise InvalidInput("RequestType must be Create, Update or Delete", field="RequestType")
        data = work()
    except ConnvaultError as exc:
        logger.error("custom resource failed", extra={"code": exc.code, "reason": exc.message})
        return CustomResourceResponse(Status.FAILED, physical_id, f"{exc.code}: {exc.message}")
    except Exception as exc:  # CloudFormation must hear back whatever went wrong; the text stays out of logs.
        logger.error("custom resource failed unexpectedly", extra={"error_type": type(exc).__name__})
        reason = f"internal_error: {type(exc).__name__}; see CloudWatch log stream {context.log_stream_name}"
        return CustomResourceResponse(Status.FAILED, physical_id, reason)
    return CustomResourceResponse(Status.SUCCESS, physical_id, data=data)
