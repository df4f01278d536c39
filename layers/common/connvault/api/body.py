"""What a request body may be: JSON, strictly. The resolver's defaults let through what the stores then choke on.

Python's ``json`` accepts ``NaN`` and ``Infinity``, turns ``1e400`` into infinity, keeps the last of duplicate
keys, decodes ``"\\ud800"`` into a lone surrogate that has no UTF-8 form, and raises a bare ``ValueError`` (not
a decode error) on an integer of more than 4,300 digits. Each of those later became a 500 (jsonb refuses NaN and
surrogates, a secret with a surrogate cannot be sealed) or, for duplicate keys, an ambiguity an attacker picks.
Here each is a 400 ``validation_error`` on ``body`` whose message names the rule, never the input. The grant file
(``grant_file.py``) decodes its lines here too, so that a line and a request body are read alike.
"""

from __future__ import annotations

import json
import math
from functools import partial
from typing import Any

from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType

from connvault.errors import InvalidInput
from connvault.validation import is_unicode_document

JSON_MEDIA_TYPE = "application/json"


def strict_json(text: str, *, subject: str = "the request body") -> Any:
    """Decode a request body; raises ``InvalidInput`` (field ``body``) for anything but plain, finite JSON.
    ``subject`` is what the messages call the text (a grant file's line is no request body)."""
    try:
        value = json.loads(
            text,
            object_pairs_hook=partial(_object, subject),
            parse_constant=partial(_constant, subject),
            parse_float=partial(_finite, subject),
        )
    except RecursionError:
        raise InvalidInput(f"{subject} nests too deeply", field="body") from None
    except json.JSONDecodeError:
        raise  # the resolver reports it as ``body``
    except ValueError:  # an integer literal past Python's digit limit
        raise InvalidInput(f"{subject} holds a number too large", field="body") from None
    if not is_unicode_document(value):
        raise InvalidInput(f"{subject} holds a lone UTF-16 surrogate", field="body")
    return value


def _object(subject: str, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise InvalidInput(f"{subject} repeats a key in one object", field="body")
    return document


def _constant(subject: str, _name: str) -> Any:
    raise InvalidInput(f"{subject} holds NaN or Infinity, which JSON does not have", field="body")


def _finite(subject: str, literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise InvalidInput(f"{subject} holds a number too large", field="body")
    return number


_UTF_8 = frozenset({"utf-8", "utf8"})


class JsonOnlyValidation(OpenAPIRequestValidationMiddleware):
    """The resolver's request validation, for JSON bodies only.

    The parent also reads form and multipart bodies: their field names are the client's own text (which then
    reached error messages, secrets included), and a multipart type without a boundary raised a bare
    ``ValueError`` (a 500). The API takes JSON; anything else is 415 before any parsing.
    """

    def _get_body(self, app: Any) -> dict[str, Any]:
        """JSON, whatever the media type's case (``Application/JSON`` is ``application/json``: RFC 9110 §8.3.1),
        which the parent compares exactly; no content type at all counts as JSON, parameters without a type
        (``;``) do not. JSON is UTF-8 (RFC 8259 §8.1): a body that names another charset is refused rather than
        read as UTF-8 anyway."""
        content_type = (app.current_event.headers.get("content-type") or "").strip()
        media_type, *parameters = content_type.split(";")
        if content_type and media_type.strip().lower() != JSON_MEDIA_TYPE:
            raise RequestUnsupportedContentType("Unsupported content type", errors=[])
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in _UTF_8:
                raise RequestUnsupportedContentType("Unsupported content type", errors=[])
        return self._parse_json_data(app)
